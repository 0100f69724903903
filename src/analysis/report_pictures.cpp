#include "analysis/report_pictures.hpp"

#include <algorithm>

namespace hisa {

std::vector<PictureChoice> choose_pictures(const std::vector<LayerStats>& layers, int64_t count) {
  struct Candidate {
    size_t round;
    PictureChoice choice;
  };
  std::vector<Candidate> candidates;
  for (const auto& stats : layers) {
    for (size_t i = 0; i < stats.worst.size(); ++i) {
      if (stats.worst[i].iou < 1) candidates.push_back({i, {stats.layer, &stats.worst[i]}});
    }
  }
  std::stable_sort(candidates.begin(), candidates.end(), [](const Candidate& x, const Candidate& y) {
    if (x.round != y.round) return x.round < y.round;
    if (x.choice.query->iou != y.choice.query->iou) return x.choice.query->iou < y.choice.query->iou;
    return x.choice.query->coverage_ratio < y.choice.query->coverage_ratio;
  });
  std::vector<PictureChoice> out;
  for (size_t i = 0; i < candidates.size() && int64_t(i) < count; ++i) out.push_back(candidates[i].choice);
  return out;
}

}  // namespace hisa
