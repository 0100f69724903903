#include "select/topk.hpp"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <functional>
#include <limits>

namespace hisa {

float kth_score(std::span<const float> scores, int64_t k) {
  if (k <= 0 || int64_t(scores.size()) < k) return -std::numeric_limits<float>::infinity();
  // Radix select: a histogram of the top 12 key bits finds the bucket holding the k-th best score, and
  // only that bucket's values are sorted out. Two cheap linear passes instead of a selection on a copy.
  constexpr int kBits = 12;
  thread_local std::vector<uint32_t> histogram;
  histogram.assign(size_t(1) << kBits, 0);
  for (float s : scores) ++histogram[order_key(s) >> (32 - kBits)];
  int64_t above = 0;
  uint32_t bucket = (1u << kBits) - 1;
  while (above + int64_t(histogram[bucket]) < k) above += histogram[bucket--];
  thread_local std::vector<float> candidates;
  candidates.clear();
  for (float s : scores) {
    if ((order_key(s) >> (32 - kBits)) == bucket) candidates.push_back(s);
  }
  const int64_t rank = k - above - 1;  // 0-based rank of the cut-off inside the bucket
  std::nth_element(candidates.begin(), candidates.begin() + rank, candidates.end(), std::greater<float>());
  return candidates[size_t(rank)];
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
