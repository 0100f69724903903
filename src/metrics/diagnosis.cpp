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

// The keep order's ranks from the ranks by J among the non-forced blocks (ranks_by_score(a, first, true)): in-budget,
// the forced first and last blocks come first; extra, every block by J alone.
std::vector<int64_t> keep_ranks(const QueryAudit& a, const SelectionConfig& c, const std::vector<int64_t>& score_rank) {
  const int64_t first = a.k_start / c.block_size, n = int64_t(a.block_scores.size());
  if (c.forced == ForcedMode::Extra || n <= 1) return ranks_by_score(a, first, false);
  std::vector<int64_t> rank = score_rank;
  for (auto& r : rank) r += 2;
  rank.front() = 0;
  rank.back() = 1;
  return rank;
}

}  // namespace

std::vector<int64_t> block_keep_ranks(const QueryAudit& a, const SelectionConfig& c) {
  return keep_ranks(a, c, ranks_by_score(a, a.k_start / c.block_size, true));
}

namespace {

// The rule that gives a missed DSA token its cause, with what it needs of the query computed once.
class CauseRule {
 public:
  CauseRule(const QueryAudit& a, const SelectionConfig& c)
      : a_(a), c_(c), first_(a.k_start / c.block_size), score_rank_(ranks_by_score(a, first_, true)),
        keep_rank_(keep_ranks(a, c, score_rank_)), forced_(a.block_scores.size() > 1 ? 2 : 1),
        tolerance_(kNearTieRelative * std::max(std::fabs(double(a.kth_score)), 1e-30)) {}
  int64_t first_block() const { return first_; }
  int64_t keep_rank(size_t bi) const { return keep_rank_[bi]; }
  // bi: the token's block, as an index into the eligible blocks.
  MissCause cause(float score, size_t bi) const {
    if (!std::isinf(a_.kth_score) && std::fabs(double(score) - double(a_.kth_score)) <= tolerance_) return MissCause::NearTie;
    if (c_.forced == ForcedMode::InBudget && score_rank_[bi] >= 0 && score_rank_[bi] >= c_.blocks - forced_ &&
        score_rank_[bi] < c_.blocks) {
      return MissCause::DisplacedByForced;  // kept, had the forced blocks not taken budget
    }
    if (keep_rank_[bi] < c_.blocks + (c_.blocks + 3) / 4) return MissCause::NearCutoff;  // rank in [m, m + ⌈m/4⌉)
    return MissCause::MeanDilution;
  }

 private:
  const QueryAudit& a_;
  const SelectionConfig& c_;
  int64_t first_;
  std::vector<int64_t> score_rank_;  // among non-forced blocks, for displacement
  std::vector<int64_t> keep_rank_;
  int64_t forced_;
  double tolerance_;
};

}  // namespace

std::array<int64_t, kMissCauses> count_miss_causes(const QueryAudit& a, const SelectionConfig& c) {
  std::array<int64_t, kMissCauses> counts{};
  const CauseRule rule(a, c);
  const std::vector<char> held = membership(a.flat, a.hisa);
  for (size_t i = 0; i < a.flat.size(); ++i) {
    if (!held[i]) ++counts[size_t(rule.cause(a.flat_scores[i], size_t(a.flat[i] / c.block_size - rule.first_block())))];
  }
  return counts;
}

std::vector<MissDiagnosis> diagnose_misses(const QueryAudit& a, const SelectionConfig& c) {
  const CauseRule rule(a, c);
  const std::vector<int64_t> dsa_rank = dsa_ranks(a);
  const std::vector<char> held = membership(a.flat, a.hisa);
  // DSA's tokens in rank order (ranks are 1..k, one each), so the misses come out in DSA rank order.
  std::vector<size_t> by_rank(a.flat.size());
  for (size_t i = 0; i < a.flat.size(); ++i) by_rank[size_t(dsa_rank[i] - 1)] = i;
  std::vector<MissDiagnosis> out;
  for (size_t i : by_rank) {
    if (held[i]) continue;
    const int64_t s = a.flat[i];
    MissDiagnosis d;
    d.position = s;
    d.distance = a.q_pos - s;
    d.dsa_rank = dsa_rank[i];
    d.score = a.flat_scores[i];
    d.margin = std::isinf(a.kth_score) ? 0.0f : d.score - a.kth_score;
    d.block = s / c.block_size;
    const size_t bi = size_t(d.block - rule.first_block());
    d.block_score = a.block_scores[bi];
    d.block_rank = rule.keep_rank(bi);
    d.block_best = a.block_best[bi];
    // J / best: 0 where best = 0; 1 where both are the same infinity (overflowed scores), where the quotient
    // would be NaN (0 for opposite infinities); an infinite J over a finite best stays ±inf.
    if (d.block_score == d.block_best && std::isinf(d.block_best)) {
      d.pooled_to_best = 1.0;
    } else {
      const double ratio = d.block_best != 0 ? double(d.block_score) / double(d.block_best) : 0.0;
      d.pooled_to_best = std::isnan(ratio) ? 0.0 : ratio;
    }
    d.cause = rule.cause(d.score, bi);
    out.push_back(d);
  }
  // Pair the misses, best first, with the tokens HISA holds that DSA lacks, best first.
  const std::vector<char> in_dsa = membership(a.hisa, a.flat);
  std::vector<size_t> extras;
  for (size_t j = 0; j < a.hisa.size(); ++j) {
    if (!in_dsa[j]) extras.push_back(j);
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

bool certify_hisa(const QueryAudit& a, const SelectionConfig& c, const BlockBound& bound) {
  const int64_t first = a.k_start / c.block_size;
  std::vector<size_t> pruned;
  for (size_t i = 0; i < a.block_scores.size(); ++i) {
    if (!std::binary_search(a.hisa_blocks.begin(), a.hisa_blocks.end(), first + int64_t(i))) pruned.push_back(i);
  }
  if (pruned.empty()) return true;
  // Fewer than k tokens while blocks were pruned: those blocks' visible tokens would have been chosen.
  if (int64_t(a.hisa.size()) < c.topk) return false;
  const float kth = *std::min_element(a.hisa_scores.begin(), a.hisa_scores.end());
  // A pruned token scoring exactly the k-th score could still win on position, hence the strict test. The order
  // decides only how soon a failing bound is found: the pruned block of highest J, whose bound tends to be the
  // highest, first; then the others in block order.
  const auto highest = std::max_element(pruned.begin(), pruned.end(),
                                        [&](size_t x, size_t y) { return a.block_scores[x] < a.block_scores[y]; });
  if (bound(first + int64_t(*highest)) >= kth) return false;
  for (size_t i : pruned) {
    if (i != *highest && bound(first + int64_t(i)) >= kth) return false;
  }
  return true;
}

}  // namespace hisa
