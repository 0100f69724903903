#pragma once
// Per-layer aggregation of query metrics: distributions (not just means) and coverage patterns.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "metrics/query_metrics.hpp"

namespace hisa {

// Percentiles interpolate linearly between order statistics (numpy's default), so notebooks agree.
struct Distribution {
  int64_t count = 0;
  double mean = 0, stderr_ = 0, min = 0, p1 = 0, p5 = 0, p50 = 0, max = 0;
};
Distribution summarize(std::vector<double> values);
double percentile(const std::vector<double>& sorted, double p);

// Distance d = q_pos - s falls in bucket 0 when d = 0, else floor(log2 d) + 1: [1], [2,3], [4,7], ...
std::string distance_bucket_label(int bucket);

struct CoveragePattern {
  std::vector<double> distance_share;  // share of the tokens per distance bucket
  double sink_block_share = 0;         // share in the block holding k_start
  double own_block_share = 0;          // share in the block holding q_pos
  double blocks_touched_p50 = 0, blocks_touched_p95 = 0;  // distinct B-blocks per query
  int64_t tokens = 0;
};

struct MethodStats {
  Distribution iou, recall, coverage, coverage_ratio;
  double exact_share = 0;  // share of queries with IoU = 1
  std::optional<double> needle_recall_mean;
  std::optional<double> first_miss_rank_median;  // over queries that miss something
};

struct WorstQuery {
  std::string sample;
  int64_t query = 0, q_pos = 0;
  double iou = 0, recall = 0, coverage_ratio = 0;
  std::array<int64_t, 4> miss_causes{};
  std::optional<double> ref_iou;  // with topk_ref: its IoU with its rule's selection, and the unexplained tokens
  int64_t ref_unexplained = 0;
};

// How --worst ranks queries: by HISA's IoU against DSA (then coverage loss), or by topk_ref's IoU against its
// rule (then the most unexplained tokens; queries without topk_ref last).
enum class WorstOrder { HisaIou, RefIou };

// --parity: the queries compared with the CPU engine, how many differ (DSA's tokens; HISA's tokens), and the
// differences that are not near-ties (metrics/parity.hpp), summed.
struct ParityCounts {
  int64_t queries = 0, flat_differ = 0, hisa_differ = 0, unexplained = 0;
  ParityCounts& operator+=(const ParityCounts& o) {
    queries += o.queries, flat_differ += o.flat_differ, hisa_differ += o.hisa_differ, unexplained += o.unexplained;
    return *this;
  }
};

struct LayerStats {
  int layer = 0;
  int64_t queries = 0;
  std::vector<std::string> samples;          // samples that hold this layer
  std::vector<std::string> missing_samples;  // samples that do not
  // Compressed keys (datasets/FORMAT.md): tokens per key row, and the window attended besides the selection.
  int64_t compress_ratio = 1;
  std::optional<int64_t> window;
  double coverage_flat_mean = 0;
  std::optional<double> needle_recall_flat_mean;
  MethodStats hisa, block;
  CoveragePattern dsa, hisa_misses;  // where DSA's tokens lie; where HISA's misses lie
  // With topk_ref (metrics/ref_judge.hpp): the rule it was judged by ("mixed" when samples differ), its IoU with
  // that rule's selection, the differing tokens per class summed over the queries, and the queries with an
  // unexplained token.
  std::optional<std::string> ref_rule;
  std::optional<std::string> ref_method;
  std::optional<double> ref_iou_mean, ref_iou_min;
  std::optional<int64_t> ref_tie_swaps, ref_near_ties, ref_block_flips, ref_unexplained, ref_queries_unexplained;
  std::array<int64_t, 4> miss_causes{};  // HISA's misses per MissCause, summed over the queries
  double certified_share = 0;            // share of queries whose HISA selection is certified exact
  // --method certified: mean share of the visible keys scored, and share of queries equal to DSA.
  std::optional<double> certified_scored_share, certified_exact_share;
  std::vector<WorstQuery> worst;  // the worst queries by IoU, then coverage loss (audit --worst)
  std::optional<ParityCounts> parity;  // audit --parity
};

// Collects one layer's queries (from any number of samples) and summarises them.
class LayerAccumulator {
 public:
  LayerAccumulator(int layer, int64_t block_size, int64_t worst = 0, WorstOrder worst_by = WorstOrder::HisaIou)
      : layer_(layer), block_size_(block_size), worst_count_(worst), worst_by_(worst_by) {}
  void add(const QueryAudit& a, const QueryMetrics& m, const std::string& sample = {});
  // The rule the layer's topk_ref was judged by, for a query added with ref metrics (describe_ref_rule, and its
  // method's name).
  void add_ref_rule(const std::string& rule, const std::string& method);
  void add_sample(const std::string& name) { samples_.push_back(name); }
  void add_parity(bool flat_differ, bool hisa_differ, int64_t unexplained) {
    parity_ += ParityCounts{1, flat_differ, hisa_differ, unexplained};
  }
  void add_missing_sample(const std::string& name) { missing_.push_back(name); }
  LayerStats finish() const;
  // finish()'s worst list alone (empty without worst): the queries so far, worst first.
  std::vector<WorstQuery> worst() const;
  int layer() const { return layer_; }

  // For work spread over workers or MPI ranks (run/unit_runner.hpp): the state as bytes, back, and appending
  // another accumulator's state — the same as having added its queries and samples here after this one's.
  std::string encode() const;
  static LayerAccumulator decode(const std::string& bytes);
  void merge(const LayerAccumulator& later);

 private:
  struct PatternCounts {
    std::vector<int64_t> buckets;
    int64_t sink = 0, own = 0, tokens = 0;
    std::vector<double> blocks_touched;
    void add(const PositionPattern& p);
    CoveragePattern finish() const;
  };
  struct MethodValues {
    std::vector<double> iou, recall, coverage, ratio, needle, first_miss;
    void add(const SetComparison& c);
    MethodStats finish() const;
  };
  int layer_;
  int64_t block_size_;
  int64_t worst_count_;
  WorstOrder worst_by_;
  std::vector<WorstQuery> queries_seen_;  // kept only when worst_count_ > 0
  std::array<int64_t, 4> miss_causes_{};
  int64_t certified_ = 0;
  std::vector<double> certified_scored_share_, certified_exact_;
  std::vector<std::string> samples_, missing_;
  int64_t queries_ = 0;
  std::vector<double> coverage_flat_, needle_flat_, ref_iou_;
  int64_t ref_tie_swaps_ = 0, ref_near_ties_ = 0, ref_block_flips_ = 0, ref_unexplained_ = 0, ref_queries_unexplained_ = 0;
  std::string ref_rule_, ref_method_;  // "" until a rule is added; "mixed" when two differ
  MethodValues hisa_, block_;
  PatternCounts dsa_, misses_;
  ParityCounts parity_;
};

}  // namespace hisa
