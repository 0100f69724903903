#pragma once
// `hisa sweep` as a library call: for every layer, block size B and budget m of a grid, how well HISA(B, m)
// recovers DSA's selection and what it costs, from one scoring pass per layer (README "hisa sweep"); then
// the cheapest setting per layer that meets recall targets, the best uniform setting, and checks of those
// settings by context length, by task and in the worst sample.
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "bench/cuda_bench.hpp"
#include "run/unit_runner.hpp"
#include "select/config.hpp"
#include "analysis/sweep_points.hpp"

namespace hisa {

struct SweepOptions {
  std::vector<std::string> files;
  std::vector<std::string> samples;  // empty: every sample
  std::vector<int> layers;           // empty: every layer
  int64_t max_queries = 0;           // 0: every query
  std::optional<int64_t> topk;       // default: the files' index_topk
  std::vector<int64_t> block_sizes{32, 64, 128, 256};
  std::vector<int64_t> blocks{8, 16, 32, 64, 128, 256, 512};  // the m values
  std::vector<PoolPrecision> pools{PoolPrecision::Fp32};
  std::vector<ForcedMode> forced{ForcedMode::InBudget};
  double target_recall = 0.99;  // recall mean at least this
  double target_p5 = 0.95;      // and recall p5 at least this
  int threads = 0;
  bool progress = true;
  RunOptions run;  // device, GPUs, read-ahead, checkpoints
  // On a GPU run: time HISA(B, m) and flat selection with the CUDA engine for every (B, m) of the grid at each
  // context length of the samples (report/cuda_bench.hpp), for the cost model's measured column.
  bool kernel_times = true;
};

// One curve: HISA with this block size, pooling and forced mode, as a function of m.
struct SweepVariant {
  int64_t block_size = 0;
  PoolPrecision pool = PoolPrecision::Fp32;
  ForcedMode forced = ForcedMode::InBudget;
};

// A population's queries (a sample, a group of samples, or all) at one (variant, m).
struct CurvePoint {
  int64_t blocks = 0;   // m
  int64_t queries = 0;  // 0: the population holds no query of this layer
  double recall_mean = 0, recall_p5 = 0, recall_min = 0, iou_mean = 0, scored_keys_mean = 0;
};

// Every curve of one population of one layer: points[variant][j] is m = blocks[j].
struct Curves {
  int64_t queries = 0;
  std::vector<std::vector<CurvePoint>> points;
};

struct SweepSample {
  std::string label;  // the sample name; "file:sample" when several files are swept
  std::string file, name;
  int64_t context_length = 0;  // the context_length attribute, else seq_len
  std::optional<std::string> task;
};

// Samples grouped by context length or by task, for checking a recommendation across the workload.
struct SweepGroup {
  std::string kind;  // "context_length" or "task"
  std::string key;
  std::vector<size_t> samples;  // indices into SweepResult::samples
};

struct LayerSweep {
  int layer = 0;
  Curves all;                      // every query of every sample that holds the layer
  std::vector<Curves> per_sample;  // by sample index; no queries where the sample lacks the layer
  std::vector<Curves> per_group;   // by group index
};

struct LayerRecommendation {
  int layer = 0;
  bool meets_targets = false;  // false: the best recall the grid offers (the cheapest among equals)
  size_t variant = 0, m_index = 0;
  int64_t block_size = 0, blocks = 0;
  CurvePoint expected;       // over every query of the layer
  std::string worst_sample;  // the sample with the lowest recall mean at this setting
  CurvePoint worst;
};

struct UniformRecommendation {
  int64_t block_size = 0, blocks = 0;
  size_t block_index = 0, m_index = 0;
  double scored_keys_mean = 0;  // mean over the layers of each layer's mean
  int lowest_layer = 0;         // the layer with the lowest recall mean
  CurvePoint lowest;
  std::string worst_sample;  // the (sample, layer) with the lowest recall mean
  int worst_layer = 0;
  CurvePoint worst;
};

// One group at the recommended settings; index i of the vectors is SweepResult::layers[i].
struct GroupCheck {
  size_t group = 0;
  int64_t layers_meeting = 0, layers_present = 0;  // at the per-layer recommendation
  std::vector<CurvePoint> recommended, uniform;    // uniform: empty without a uniform recommendation
};

// The recommendation for one (pooling precision, forced mode): the choice is between block sizes and m.
struct ModeRecommendation {
  PoolPrecision pool = PoolPrecision::Fp32;
  ForcedMode forced = ForcedMode::InBudget;
  std::vector<LayerRecommendation> layers;
  std::optional<UniformRecommendation> uniform;
  std::vector<int> heaviest;  // layers that meet the targets, costliest first (at most 5)
  std::vector<int> unmet;     // layers no setting of the grid serves
  std::vector<GroupCheck> groups;
};

// Seconds. total, summaries and kernel_timing (the kernel-time grid) are wall clock; run holds the workers'
// reading, waiting and computing (summed over workers and ranks); the scoring phases are this rank's workers'.
struct SweepTimings {
  double total = 0, summaries = 0, kernel_timing = 0;
  double pooling = 0, token_scores = 0, block_scores = 0, ranking = 0;
  RunStats run;
};

struct SweepResult {
  int64_t topk = 0, max_queries = 0;
  std::vector<int64_t> block_sizes, blocks;
  std::vector<PoolPrecision> pools;
  std::vector<ForcedMode> forced;
  double target_recall = 0, target_p5 = 0;
  std::string scorer;
  std::vector<std::string> files;
  std::vector<SweepVariant> variants;  // by block size, then pooling, then forced mode
  std::vector<SweepSample> samples;
  std::vector<SweepGroup> groups;
  std::vector<LayerSweep> layers;
  std::vector<ModeRecommendation> recommendations;  // by pooling, then forced mode
  SweepTimings timings;
  std::vector<SelectionTimeGrid> kernel_times;  // by context length, ascending; empty without a GPU

  // The measured µs per query of HISA(B, m) and of flat selection at the longest context measured, if any.
  std::optional<std::pair<double, double>> measured_us(int64_t block_size, int64_t blocks) const;

  bool meets(const CurvePoint& p) const { return p.queries > 0 && p.recall_mean >= target_recall && p.recall_p5 >= target_p5; }
  // Index of the smallest m at which a curve meets the targets (every larger m does too: kept sets only grow).
  std::optional<size_t> smallest_passing(const std::vector<CurvePoint>& curve) const;
  size_t variant_index(size_t block_index, size_t pool_index, size_t forced_index) const {
    return (block_index * pools.size() + pool_index) * forced.size() + forced_index;
  }
};

// One query's results, for tests and per-query output: points[v * blocks.size() + j] is variant v at m = blocks[j].
struct SweepQueryRecord {
  const SweepSample* sample = nullptr;
  int layer = 0;
  int64_t query = 0, q_pos = 0;
  std::span<const SweepPoint> points;
};

// The recommendation for pools[pool] and forced[forced] from the layers' curves (r.layers filled in): per layer
// the cheapest passing (B, m), ties to the smaller B, then the smaller m; the uniform (B, m) passing on every
// layer with the least mean cost; the heaviest and unmet layers; the groups at those settings.
ModeRecommendation recommend_mode(const SweepResult& r, size_t pool, size_t forced);

// on_query (optional) sees every query, in layer, sample, query order.
SweepResult run_sweep(const SweepOptions& options, const std::function<void(const SweepQueryRecord&)>& on_query = {});

}  // namespace hisa
