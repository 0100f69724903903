#include "select/topk.hpp"

#include <algorithm>
#include <functional>
#include <limits>

namespace hisa {

float kth_score(std::span<const float> scores, int64_t k) {
  if (k <= 0 || int64_t(scores.size()) < k) return -std::numeric_limits<float>::infinity();
  // Selecting on a copy of the values (not indices) is the cheapest exact cut-off: O(n), cache-friendly.
  thread_local std::vector<float> scratch;
  scratch.assign(scores.begin(), scores.end());
  std::nth_element(scratch.begin(), scratch.begin() + (k - 1), scratch.end(), std::greater<float>());
  return scratch[size_t(k - 1)];
}

namespace {

// Walks the row in position order and keeps everything above the cut-off plus the lowest-positioned
// scores equal to it, which is exactly the tie rule. Output comes out ascending for free.
template <typename PositionOf>
void collect(std::span<const float> scores, int64_t k, PositionOf position_of, std::vector<int64_t>& out) {
  const int64_t n = int64_t(scores.size());
  if (n <= k) {
    for (int64_t i = 0; i < n; ++i) out.push_back(position_of(i));
    return;
  }
  const float cut = kth_score(scores, k);
  int64_t above = 0;
  for (float s : scores) above += s > cut;
  int64_t equal_left = k - above;
  for (int64_t i = 0; i < n; ++i) {
    float s = scores[size_t(i)];
    if (s > cut || (s == cut && equal_left-- > 0)) out.push_back(position_of(i));
  }
}

}  // namespace

void topk_positions(std::span<const float> scores, std::span<const int64_t> positions, int64_t k,
                    std::vector<int64_t>& out) {
  collect(scores, k, [&](int64_t i) { return positions[size_t(i)]; }, out);
}

void topk_range(std::span<const float> scores, int64_t first_position, int64_t k, std::vector<int64_t>& out) {
  collect(scores, k, [&](int64_t i) { return first_position + i; }, out);
}

}  // namespace hisa
