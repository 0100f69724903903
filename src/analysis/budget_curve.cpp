#include "analysis/budget_curve.hpp"

#include <algorithm>

#include "metrics/diagnosis.hpp"
#include "select/blocks.hpp"

namespace hisa {

std::vector<BudgetPoint> budget_curve(const QueryAudit& a, const SelectionConfig& c) {
  const int64_t first = a.k_start / c.block_size, n = int64_t(a.block_scores.size());
  std::vector<int64_t> dsa_in_block(static_cast<size_t>(n), 0), tokens_in_block(static_cast<size_t>(n));
  for (int64_t s : a.flat) ++dsa_in_block[size_t(s / c.block_size - first)];
  for (int64_t i = 0; i < n; ++i) tokens_in_block[size_t(i)] = visible_in_block(first + i, c.block_size, a.k_start, a.q_pos).size();

  // Keep ranks are a permutation of 0..n-1: block by_rank[r] is the (r+1)-th block kept as m grows.
  const std::vector<int64_t> rank = block_keep_ranks(a, c);
  std::vector<int64_t> by_rank(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) by_rank[size_t(rank[size_t(i)])] = i;

  // With --forced extra the forced blocks are kept at every m, on top of the best m by J.
  std::vector<bool> counted(size_t(n), false);
  int64_t hits = 0, candidates = 0;
  auto keep = [&](int64_t i) {
    if (counted[size_t(i)]) return;
    counted[size_t(i)] = true;
    hits += dsa_in_block[size_t(i)];
    candidates += tokens_in_block[size_t(i)];
  };
  if (c.forced == ForcedMode::Extra) {
    keep(0);
    keep(n - 1);
  }
  const int64_t dsa = int64_t(a.flat.size());
  std::vector<BudgetPoint> curve;
  curve.reserve(size_t(n));
  for (int64_t m = 1; m <= n; ++m) {
    keep(by_rank[size_t(m - 1)]);
    const int64_t held = std::min(c.topk, candidates);  // HISA's top-k inside the kept blocks
    const int64_t united = held + dsa - hits;
    // Same expressions as compute_query_metrics, so a curve entry equals the audit at that m exactly.
    BudgetPoint p;
    p.recall = dsa > 0 ? double(hits) / double(dsa) : 1.0;
    p.iou = united > 0 ? double(hits) / double(united) : 1.0;
    curve.push_back(p);
  }
  return curve;
}

void BudgetCurveAccumulator::add(const std::vector<BudgetPoint>& curve) {
  if (curve.empty()) return;
  ++queries_;
  if (sum_.size() < curve.size()) sum_.resize(curve.size(), BudgetPoint{0, 0});
  if (tail_.size() < curve.size() + 1) tail_.resize(curve.size() + 1, BudgetPoint{0, 0});
  for (size_t i = 0; i < curve.size(); ++i) {
    sum_[i].recall += curve[i].recall;
    sum_[i].iou += curve[i].iou;
  }
  tail_[curve.size()].recall += curve.back().recall;
  tail_[curve.size()].iou += curve.back().iou;
}

std::vector<BudgetPoint> BudgetCurveAccumulator::mean() const {
  std::vector<BudgetPoint> out(sum_.size());
  BudgetPoint owed{0, 0};
  for (size_t i = 0; i < sum_.size(); ++i) {
    owed.recall += tail_[i].recall;
    owed.iou += tail_[i].iou;
    out[i].recall = (sum_[i].recall + owed.recall) / double(queries_);
    out[i].iou = (sum_[i].iou + owed.iou) / double(queries_);
  }
  return out;
}

int64_t smallest_budget_reaching(const std::vector<BudgetPoint>& mean_curve, double target) {
  for (size_t i = 0; i < mean_curve.size(); ++i) {
    if (mean_curve[i].recall >= target) return int64_t(i) + 1;
  }
  return 0;
}

}  // namespace hisa
