#pragma once
// The sweep's curves: per layer, for every variant (block size, pooling, forced mode) and budget m, how well
// HISA(B, m) recovers DSA's selection and what it costs, over every query, each sample and each group of samples
// (by context length, by task), summarised from the per-query points (analysis/sweep_points.hpp).
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "analysis/sweep_points.hpp"
#include "select/config.hpp"

namespace hisa {

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
  std::vector<size_t> samples;  // indices into SweepGrid::samples
};

struct LayerSweep {
  int layer = 0;
  Curves all;                      // every query of every sample that holds the layer
  std::vector<Curves> per_sample;  // by sample index; no queries where the sample lacks the layer
  std::vector<Curves> per_group;   // by group index
};

// What the curves are over: the grid, the targets a setting must meet, the samples and their groups, and per
// layer the curves themselves.
struct SweepGrid {
  int64_t topk = 0;
  std::vector<int64_t> block_sizes, blocks;
  std::vector<PoolPrecision> pools;
  std::vector<ForcedMode> forced;
  double target_recall = 0, target_p5 = 0;
  std::vector<SweepVariant> variants;  // by block size, then pooling, then forced mode
  std::vector<SweepSample> samples;
  std::vector<SweepGroup> groups;
  std::vector<LayerSweep> layers;

  bool meets(const CurvePoint& p) const { return p.queries > 0 && p.recall_mean >= target_recall && p.recall_p5 >= target_p5; }
  // Index of the smallest m at which a curve meets the targets (every larger m does too: kept sets only grow).
  std::optional<size_t> smallest_passing(const std::vector<CurvePoint>& curve) const;
  size_t variant_index(size_t block_index, size_t pool_index, size_t forced_index) const {
    return (block_index * pools.size() + pool_index) * forced.size() + forced_index;
  }
};

// Groups by context length (ascending) and by task (alphabetical; samples without a task are in none).
std::vector<SweepGroup> make_groups(const std::vector<SweepSample>& samples);

// One sample's per-query points of a layer: query q's point of variant v at m = blocks[j] is
// points[(q * variants + v) * blocks.size() + j].
struct SamplePoints {
  size_t sample = 0;  // index into SweepGrid::samples
  std::span<const SweepPoint> points;
};
// The layer's curves (g.layers not needed), over every query, per sample and per group.
LayerSweep summarize_layer(const SweepGrid& g, int layer, const std::vector<SamplePoints>& points);

}  // namespace hisa
