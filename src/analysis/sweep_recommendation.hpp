#pragma once
// The sweep's recommendation, from its curves: per layer the cheapest (B, m) that meets the recall targets, the
// best uniform setting, the layers that need the most, and checks of those settings on each group of samples.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "analysis/sweep_curves.hpp"

namespace hisa {

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

// The recommendation for pools[pool] and forced[forced] from the layers' curves (r.layers filled in): per layer
// the cheapest passing (B, m), ties to the smaller B, then the smaller m; the uniform (B, m) passing on every
// layer with the least mean cost; the heaviest and unmet layers; the groups at those settings.
ModeRecommendation recommend_mode(const SweepGrid& r, size_t pool, size_t forced);

}  // namespace hisa
