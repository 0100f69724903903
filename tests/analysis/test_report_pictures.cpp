// Which worst queries the report draws (analysis/report_pictures.hpp): a round over the layers' worst lists at a
// time, the lowest IoU first within a round, queries without a miss left out.
#include <gtest/gtest.h>

#include "analysis/report_pictures.hpp"

namespace hisa {
namespace {

LayerStats layer(int number, std::vector<double> ious) {
  LayerStats l;
  l.layer = number;
  for (size_t i = 0; i < ious.size(); ++i) {
    WorstQuery w;
    w.query = int64_t(100 * number + int(i));
    w.iou = ious[i];
    w.coverage_ratio = 0.5;
    l.worst.push_back(w);
  }
  return l;
}

std::vector<int64_t> queries_of(const std::vector<PictureChoice>& picks) {
  std::vector<int64_t> q;
  for (const auto& p : picks) q.push_back(p.query->query);
  return q;
}

TEST(ReportPictures, OneRoundOfWorstQueriesAtATime) {
  const std::vector<LayerStats> layers{layer(0, {0.2, 0.3, 0.9}), layer(1, {0.1, 0.95}), layer(2, {1.0, 1.0})};
  // Round 1: layer 1's 0.1, layer 0's 0.2 (layer 2 has no miss); round 2: layer 0's 0.3, layer 1's 0.95; round 3.
  EXPECT_EQ(queries_of(choose_pictures(layers, 10)), (std::vector<int64_t>{100, 0, 1, 101, 2}));
  EXPECT_EQ(queries_of(choose_pictures(layers, 3)), (std::vector<int64_t>{100, 0, 1}));
  EXPECT_TRUE(choose_pictures(layers, 0).empty());
  EXPECT_TRUE(choose_pictures({}, 5).empty());
  EXPECT_EQ(choose_pictures(layers, 1).front().layer, 1);
}

TEST(ReportPictures, EqualIouGoesByCoverageRatio) {
  LayerStats a = layer(0, {0.5}), b = layer(1, {0.5});
  a.worst[0].coverage_ratio = 0.9;
  b.worst[0].coverage_ratio = 0.4;
  EXPECT_EQ(queries_of(choose_pictures({a, b}, 2)), (std::vector<int64_t>{100, 0}));
}

}  // namespace
}  // namespace hisa
