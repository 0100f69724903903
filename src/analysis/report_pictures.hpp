#pragma once
// Which worst queries the report draws: each layer's worst first, then each layer's second, and so on, the
// lowest IoU (then coverage ratio) first within a round, so that one bad layer does not fill every picture.
// Queries without a miss (IoU 1) have nothing to show.
#include <cstdint>
#include <vector>

#include "metrics/layer_stats.hpp"

namespace hisa {

struct PictureChoice {
  int layer = 0;
  const WorstQuery* query = nullptr;  // points into the layer's worst list
};

std::vector<PictureChoice> choose_pictures(const std::vector<LayerStats>& layers, int64_t count);

}  // namespace hisa
