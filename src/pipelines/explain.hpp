#pragma once
// `hisa explain` as a library call: one query, DSA's and HISA's sets side by side, every miss with its
// block's story and its cause, and its row of scores (render/explain_output.hpp draws it).
#include <optional>
#include <string>
#include <vector>

#include "io/dump_reader.hpp"
#include "metrics/diagnosis.hpp"
#include "metrics/query_metrics.hpp"
#include "metrics/ref_judge.hpp"
#include "metrics/ref_rule.hpp"
#include "select/config.hpp"

namespace hisa {

struct ExplainOptions {
  std::string file, sample;
  int layer = 0;
  int64_t query = 0;             // row of the query in the layer
  std::optional<int64_t> topk;   // default: the file's index_topk
  SelectionConfig config;
  ReaderOptions reader;  // whether what lies outside the file is followed
  // --ref: also judge the query's topk_ref against the rule it follows (metrics/ref_judge.hpp), with these
  // overrides of what it declares.
  bool ref = false;
  RefOverrides ref_overrides;
};

struct Explanation {
  ExplainOptions options;
  SelectionConfig config;  // with k resolved
  QueryAudit audit;
  int64_t compress_ratio = 1;  // tokens per key row (positions in audit and below count rows when > 1)
  QueryMetrics metrics;
  std::vector<MissDiagnosis> misses;  // in DSA rank order
  std::vector<int64_t> extras;        // tokens HISA holds that DSA lacks, ascending
  std::vector<float> row;             // I[t,s] for s = k_start .. q_pos
  // Per eligible block (index 0 = block ⌊k_start/B⌋): an upper bound on every token score in it (select/bounds.hpp).
  std::vector<float> block_bounds;
  // With --ref: the rule topk_ref was judged by, and every differing token with its class.
  std::optional<RefRule> ref_rule;
  std::optional<RefJudgement> ref;
};

// The explanation of one query whose layer is already in memory (b holds that query alone; e.options.query
// names its row, e.config its rule): everything explain_query computes but topk_ref's judgement. Used by
// explain_query and by `import hisa`'s Audit, which has no file to read.
void explain_loaded(Explanation& e, const LayerKeys& keys, const QueryBatch& b, std::optional<NeedleRange> needle);
// The same by an engine already set to the query's layer with e.config (the CUDA engine for a layer that lives on
// a GPU: `import hisa`'s Audit of CUDA tensors).
void explain_with(SelectionEngine& engine, Explanation& e, const QueryBatch& b, int64_t compress_ratio,
                  std::optional<NeedleRange> needle);

// OptionError for a query outside the layer, and for --ref on a layer without topk_ref.
Explanation explain_query(const ExplainOptions& options);

}  // namespace hisa
