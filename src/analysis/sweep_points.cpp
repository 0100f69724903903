#include "analysis/sweep_points.hpp"

#include <algorithm>
#include <numeric>

#include "metrics/query_metrics.hpp"
#include "select/topk.hpp"

namespace hisa {

namespace {

// Sorts the first `count` of `ids` (block offsets) into keep order by J, moving the best ones to the front;
// with a partial selection when only the best few are needed.
void order_by_score(std::span<const float> J, int64_t first_block, std::vector<int64_t>& ids, size_t count) {
  auto before = [&](int64_t x, int64_t y) {
    return ranks_before(J[size_t(x)], first_block + x, J[size_t(y)], first_block + y);
  };
  count = std::min(count, ids.size());
  if (count < ids.size()) std::nth_element(ids.begin(), ids.begin() + ptrdiff_t(count), ids.end(), before);
  std::sort(ids.begin(), ids.begin() + ptrdiff_t(count), before);
}

}  // namespace

void block_entry_m(std::span<const float> J, BlockSpan span, ForcedMode mode, int64_t limit, std::vector<int64_t>& entry) {
  const int64_t n = span.size();
  entry.assign(size_t(n), limit + 1);
  if (n == 1) {
    entry[0] = 1;
    return;
  }
  thread_local std::vector<int64_t> ids;
  ids.clear();
  // The first entry m that ranking decides, and which blocks ranking covers.
  const bool in_budget = mode == ForcedMode::InBudget;
  const int64_t first_ranked_entry = in_budget ? 3 : 1;
  for (int64_t i = in_budget ? 1 : 0; i < (in_budget ? n - 1 : n); ++i) ids.push_back(i);
  const int64_t wanted = std::max<int64_t>(0, limit - first_ranked_entry + 1);  // ranks whose entry <= limit
  order_by_score(J, span.first, ids, size_t(wanted));
  for (int64_t r = 0; r < std::min<int64_t>(wanted, int64_t(ids.size())); ++r) {
    entry[size_t(ids[size_t(r)])] = first_ranked_entry + r;
  }
  // Forced blocks: in-budget they take the first two slots (lower block first); extra, they come free.
  entry.front() = 1;
  entry.back() = in_budget ? 2 : 1;
  for (auto& e : entry) e = std::min(e, limit + 1);
}

void sweep_query(const SweepQuery& q, std::span<const int64_t> blocks, SweepPoint* out) {
  const BlockSpan span = eligible_blocks(q.k_start, q.q_pos, q.block_size);
  const int64_t n = span.size(), visible = q.q_pos - q.k_start + 1;
  const int64_t dsa = int64_t(q.flat.size());
  const int64_t limit = blocks.empty() ? 0 : std::min(blocks.back(), n);
  thread_local std::vector<int64_t> entry, dsa_at, tokens_at;
  block_entry_m(q.J, span, q.forced, limit, entry);
  // DSA tokens and visible tokens that enter at each m = 1..limit, then running sums.
  dsa_at.assign(size_t(limit + 2), 0);
  tokens_at.assign(size_t(limit + 2), 0);
  for (int64_t s : q.flat) ++dsa_at[size_t(entry[size_t(s / q.block_size - span.first)])];
  for (int64_t i = 0; i < n; ++i) {
    const int64_t e = entry[size_t(i)];
    if (e <= limit) tokens_at[size_t(e)] += visible_in_block(span.first + i, q.block_size, q.k_start, q.q_pos).size();
  }
  std::partial_sum(dsa_at.begin(), dsa_at.end(), dsa_at.begin());
  std::partial_sum(tokens_at.begin(), tokens_at.end(), tokens_at.begin());
  for (size_t j = 0; j < blocks.size(); ++j) {
    const int64_t m = blocks[j];
    // m >= n keeps every eligible block: HISA is DSA.
    const int64_t common = m >= n ? dsa : dsa_at[size_t(m)];
    const int64_t kept_tokens = m >= n ? visible : tokens_at[size_t(m)];
    const int64_t hisa = std::min(q.topk, kept_tokens);
    out[j].recall = dsa == 0 ? 1.0 : double(common) / double(dsa);
    out[j].iou = iou_of(common, dsa, hisa);
    out[j].scored_keys = n + kept_tokens;
  }
}

}  // namespace hisa
