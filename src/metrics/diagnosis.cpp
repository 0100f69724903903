#include "metrics/diagnosis.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "metrics/query_metrics.hpp"
#include "select/blocks.hpp"
#include "select/topk.hpp"

namespace hisa {

std::string_view miss_cause_name(MissCause c) {
  switch (c) {
    case MissCause::NearTie: return "near_tie";
    case MissCause::DisplacedByForced: return "forced";
    case MissCause::NearCutoff: return "near_cutoff";
    case MissCause::MeanDilution: return "dilution";
  }
  return "?";
}

namespace {

// Ranks of the eligible blocks by J alone (equal J: lower block first).
std::vector<int64_t> ranks_by_score(const QueryAudit& a, int64_t first_block, bool skip_forced) {
  const int64_t n = int64_t(a.block_scores.size());
  std::vector<int64_t> order;
  for (int64_t i = 0; i < n; ++i) {
    if (!skip_forced || (i != 0 && i != n - 1)) order.push_back(i);
  }
  std::sort(order.begin(), order.end(), [&](int64_t x, int64_t y) {
    return ranks_before(a.block_scores[size_t(x)], first_block + x, a.block_scores[size_t(y)], first_block + y);
  });
  std::vector<int64_t> rank(size_t(n), -1);
  for (size_t r = 0; r < order.size(); ++r) rank[size_t(order[r])] = int64_t(r);
  return rank;
}

}  // namespace

std::vector<int64_t> block_keep_ranks(const QueryAudit& a, const SelectionConfig& c) {
  const int64_t first = a.k_start / c.block_size, n = int64_t(a.block_scores.size());
  if (c.forced == ForcedMode::Extra || n <= 1) return ranks_by_score(a, first, false);
  std::vector<int64_t> rank = ranks_by_score(a, first, true);
  for (auto& r : rank) r += 2;
  rank.front() = 0;
  rank.back() = 1;
  return rank;
}

std::vector<MissDiagnosis> diagnose_misses(const QueryAudit& a, const SelectionConfig& c) {
  std::vector<MissDiagnosis> out;
  const int64_t first = a.k_start / c.block_size, n = int64_t(a.block_scores.size());
  const auto keep_rank = block_keep_ranks(a, c);
  const auto score_rank = ranks_by_score(a, first, true);  // among non-forced blocks, for displacement
  const auto dsa_rank = dsa_ranks(a);
  const int64_t forced = n > 1 ? 2 : 1;
  for (size_t i = 0; i < a.flat.size(); ++i) {
    const int64_t s = a.flat[i];
    if (std::binary_search(a.hisa.begin(), a.hisa.end(), s)) continue;
    MissDiagnosis d;
    d.position = s;
    d.distance = a.q_pos - s;
    d.dsa_rank = dsa_rank[i];
    d.score = a.flat_scores[i];
    d.margin = std::isinf(a.kth_score) ? 0.0f : d.score - a.kth_score;
    d.block = s / c.block_size;
    const size_t bi = size_t(d.block - first);
    d.block_score = a.block_scores[bi];
    d.block_rank = keep_rank[bi];
    d.block_best = a.block_best[bi];
    // J / best: 0 where best = 0; 1 where both are the same infinity (overflowed scores), where the quotient
    // would be NaN (0 for opposite infinities); an infinite J over a finite best stays ±inf.
    if (d.block_score == d.block_best && std::isinf(d.block_best)) {
      d.pooled_to_best = 1.0;
    } else {
      const double ratio = d.block_best != 0 ? double(d.block_score) / double(d.block_best) : 0.0;
      d.pooled_to_best = std::isnan(ratio) ? 0.0 : ratio;
    }
    const double tolerance = kNearTieRelative * std::max(std::fabs(double(a.kth_score)), 1e-30);
    if (!std::isinf(a.kth_score) && std::fabs(double(d.score) - double(a.kth_score)) <= tolerance) {
      d.cause = MissCause::NearTie;
    } else if (c.forced == ForcedMode::InBudget && score_rank[bi] >= 0 && score_rank[bi] >= c.blocks - forced &&
               score_rank[bi] < c.blocks) {
      d.cause = MissCause::DisplacedByForced;  // kept, had the forced blocks not taken budget
    } else if (d.block_rank < c.blocks + (c.blocks + 3) / 4) {
      d.cause = MissCause::NearCutoff;  // rank in [m, m + ⌈m/4⌉)
    } else {
      d.cause = MissCause::MeanDilution;
    }
    out.push_back(d);
  }
  std::sort(out.begin(), out.end(), [](const MissDiagnosis& x, const MissDiagnosis& y) { return x.dsa_rank < y.dsa_rank; });
  // Pair the misses, best first, with the tokens HISA holds that DSA lacks, best first.
  std::vector<size_t> extras;
  for (size_t j = 0; j < a.hisa.size(); ++j) {
    if (!std::binary_search(a.flat.begin(), a.flat.end(), a.hisa[j])) extras.push_back(j);
  }
  std::sort(extras.begin(), extras.end(), [&](size_t x, size_t y) {
    return ranks_before(a.hisa_scores[x], a.hisa[x], a.hisa_scores[y], a.hisa[y]);
  });
  for (size_t j = 0; j < std::min(extras.size(), out.size()); ++j) {
    out[j].replaced_by = a.hisa[extras[j]];
    out[j].replaced_score = a.hisa_scores[extras[j]];
  }
  return out;
}

bool certify_hisa(const QueryAudit& a, const SelectionConfig& c) {
  const int64_t first = a.k_start / c.block_size;
  const bool full = int64_t(a.hisa.size()) == c.topk;
  const float kth = full ? *std::min_element(a.hisa_scores.begin(), a.hisa_scores.end()) : -INFINITY;
  for (size_t i = 0; i < a.block_bounds.size(); ++i) {
    if (std::binary_search(a.hisa_blocks.begin(), a.hisa_blocks.end(), first + int64_t(i))) continue;
    // A pruned token scoring exactly the k-th score could still win on position, hence the strict test.
    if (!full || a.block_bounds[i] >= kth) return false;
  }
  return true;
}

}  // namespace hisa
