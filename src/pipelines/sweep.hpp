#pragma once
// `hisa sweep` as a library call: for every layer, block size B and budget m of a grid, how well HISA(B, m)
// recovers DSA's selection and what it costs, from one scoring pass per layer (docs/commands/sweep.md); then
// the recommendation (analysis/sweep_recommendation.hpp) and, on a GPU, the measured cost of each setting.
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "analysis/sweep_curves.hpp"
#include "analysis/sweep_recommendation.hpp"
#include "bench/selection_times.hpp"
#include "io/dump_reader.hpp"
#include "run/unit_runner.hpp"
#include "core/int_list.hpp"
#include "select/config.hpp"

namespace hisa {

struct SweepOptions {
  std::vector<std::string> files;
  std::vector<std::string> samples;  // empty: every sample
  IntRanges layers;                  // empty: every layer; else each one must be in some selected sample
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
  ReaderOptions reader;  // whether what lies outside the files is followed
  // On a GPU run: time HISA(B, m) and flat selection with the CUDA engine for every (B, m) of the grid at each
  // context length of the samples (bench/selection_times.hpp), for the cost model's measured column.
  bool kernel_times = true;
};

// Seconds. total, summaries and kernel_timing (the kernel-time grid) are wall clock; run holds the workers'
// reading, waiting and computing (summed over workers and ranks); the scoring phases are this rank's workers'.
struct SweepTimings {
  double total = 0, summaries = 0, kernel_timing = 0;
  double pooling = 0, token_scores = 0, block_scores = 0, ranking = 0;  // token_scores: with DSA's top-k
  RunStats run;
};

struct SweepResult : SweepGrid {
  int64_t max_queries = 0;
  std::string scorer;
  std::vector<std::string> files;
  std::vector<ModeRecommendation> recommendations;  // by pooling, then forced mode
  SweepTimings timings;
  std::vector<SelectionTimeGrid> kernel_times;  // by context length, ascending; empty without a GPU

  // The measured µs per query of HISA(B, m) and of flat selection at the longest context measured, if any.
  std::optional<std::pair<double, double>> measured_us(int64_t block_size, int64_t blocks) const;
};

// One query's results, for tests and per-query output: points[v * blocks.size() + j] is variant v at m = blocks[j].
struct SweepQueryRecord {
  const SweepSample* sample = nullptr;
  int layer = 0;
  int64_t query = 0, q_pos = 0;
  std::span<const SweepPoint> points;
};

// on_query (optional) sees every query, in layer, sample, query order.
SweepResult run_sweep(const SweepOptions& options, const std::function<void(const SweepQueryRecord&)>& on_query = {});

}  // namespace hisa
