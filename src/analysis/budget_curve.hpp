#pragma once
// HISA's recall and IoU against DSA for every budget m at once, from one audit of a query.
//
// Why one audit is enough: the block scores J do not depend on m, and HISA(B, m) keeps exactly the
// eligible blocks whose rank in the keep order (block_keep_ranks, metrics/diagnosis.hpp) is below m,
// plus the two forced blocks with --forced extra. A DSA token is in HISA's selection exactly when its
// block is kept (docs/definitions.md), and HISA holds min(k, visible tokens of the kept blocks) tokens.
// So |H∩D| and |H|, hence recall and IoU, follow for every m from counts over the blocks in keep order.
#include <cstdint>
#include <vector>

#include "select/config.hpp"
#include "select/engine.hpp"

namespace hisa {

struct BudgetPoint {
  double recall = 1, iou = 1;
};

// Entry m-1 is HISA(B, m) against DSA for m = 1 .. the query's eligible blocks; a larger m keeps every
// eligible block, so it scores as the last entry. B, k and the forced mode come from `c`; c.blocks is unused.
std::vector<BudgetPoint> budget_curve(const QueryAudit& a, const SelectionConfig& c);

// Mean curve over queries. Queries with fewer eligible blocks count with their last entry for larger m.
class BudgetCurveAccumulator {
 public:
  void add(const std::vector<BudgetPoint>& curve);
  int64_t queries() const { return queries_; }
  // Entry m-1 is the mean over the queries of HISA(B, m), for m = 1 .. the most eligible blocks seen.
  std::vector<BudgetPoint> mean() const;

 private:
  std::vector<BudgetPoint> sum_;   // sum_[i]: summed entries i of the curves that have one
  std::vector<BudgetPoint> tail_;  // tail_[i]: summed last entries of curves of length i, owed to every entry >= i
  int64_t queries_ = 0;
};

// The smallest m whose mean recall reaches `target`, or 0 when none does.
int64_t smallest_budget_reaching(const std::vector<BudgetPoint>& mean_curve, double target);

}  // namespace hisa
