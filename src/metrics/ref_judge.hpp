#pragma once
// Judging a serving stack's selection (a dump's topk_ref) against the exact selection of the rule it follows
// (metrics/ref_rule.hpp; docs/definitions.md, "Judging topk_ref"): every token on which the two differ gets
// exactly one class.
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "io/dump_model.hpp"
#include "metrics/query_metrics.hpp"
#include "metrics/ref_rule.hpp"
#include "select/blocks.hpp"
#include "select/engine.hpp"
#include "select/query_audit.hpp"

namespace hisa {

enum class RefClass { TieSwap, NearTie, BlockFlip, Unexplained };
std::string_view ref_class_name(RefClass c);  // "tie swap", "near tie", "block flip", "unexplained"

struct RefDifference {
  int64_t position = 0;
  bool in_ref = false;  // held by topk_ref only; else by the rule's selection only
  RefClass cls = RefClass::Unexplained;
  std::optional<float> score;    // I[t,s]; none outside the query's visible range
  int64_t block = -1;            // s / B (hisa, block-sparse)
  std::optional<float> block_J;  // J of that block, when it is eligible
  std::string why;               // what explains it, or why nothing does
};

struct RefJudgement {
  double iou = 1;  // |E ∩ R| / |E ∪ R|: E the rule's selection, R topk_ref's valid positions
  int64_t tie_swaps = 0, near_ties = 0, block_flips = 0, unexplained = 0;
  std::optional<int64_t> cut_position;  // the rule's lowest-ranked token, when it leaves some candidate out
  std::optional<float> cut_score;
  std::optional<int64_t> cut_block;  // its lowest-ranked block chosen by J, when it leaves some block out
  std::optional<float> cut_J;
  std::vector<RefDifference> differences;  // E △ R, ascending positions
};

// What judging one layer needs besides the query: its keys, its rule, the rule's pooled keys (for |J|; not made
// for keys on a GPU, whose queries are judged with engine_ref_scorer) and the tolerance (--ref-tolerance).
struct RefLayer {
  const LayerKeys* keys = nullptr;
  RefRule rule;
  PooledKeys pooled;
  double tolerance = kDefaultRefTolerance;
};
RefLayer make_ref_layer(const LayerKeys& keys, const RefRule& rule, double tolerance);

// What judging one query re-computes: scores of token positions, each summed in one order whatever the
// positions (so that exactly equal scores are seen as equal), and the magnitudes that near ties are measured
// against, of tokens and of the rule's pooled blocks.
struct RefScorer {
  std::function<std::vector<float>(const std::vector<int64_t>& positions)> scores;
  std::function<double(int64_t position)> token_magnitude;
  std::function<double(int64_t block)> block_magnitude;
};
// On the host, from the layer's keys and pooled keys: score_positions and abs_score.
RefScorer host_ref_scorer(const RefLayer& layer, const QueryBatch& b, int64_t i);
// By an engine set to the rule's config, whose block size is block_size (SelectionEngine::score_positions): for
// queries and keys on a GPU. The magnitudes of the tokens it scores, and of all the query's eligible blocks at the
// first block asked for, are fetched in one call each and kept.
// Both keep references to their arguments: layer, engine and b must outlive the scorer.
RefScorer engine_ref_scorer(SelectionEngine& engine, const QueryBatch& b, int64_t i, int64_t block_size);

// Row i of the batch against its topk_ref row. `exact` is an audit of that row under a config that
// audit_covers(rule): the rule's exact selection and block scores J come from it. The differing tokens' scores
// and the cut's are recomputed by `scorer` (host_ref_scorer when none is given; operands on a GPU need one:
// std::invalid_argument).
RefJudgement judge_ref_row(const RefLayer& layer, const QueryBatch& b, int64_t i, const QueryAudit& exact,
                           std::span<const int32_t> ref_row, const RefScorer* scorer = nullptr);

// The judgement's IoU and counts as a query's ref metrics.
void set_ref_metrics(const RefJudgement& j, QueryMetrics& m);

}  // namespace hisa
