// Pairs of layers and reuse plans (analysis/crosslayer.hpp) on hand-made selections.
#include <gtest/gtest.h>

#include "analysis/crosslayer.hpp"
#include "core/error.hpp"
#include "render/crosslayer_output.hpp"

#include <sstream>

namespace hisa {
namespace {

LayerSelections layer_of(int layer, std::vector<std::pair<int64_t, std::vector<int64_t>>> queries) {
  LayerSelections l;
  l.layer = layer;
  for (const auto& [pos, sel] : queries) l.add(pos, 0, sel);
  return l;
}

TEST(Crosslayer, QueriesAreMatchedByPosition) {
  // The source holds positions 10 and 20 (in the other order) and 30; the layer 20, 10 and 40.
  const LayerSelections source = layer_of(0, {{20, {1, 2, 3, 4}}, {10, {1, 2}}, {30, {5}}});
  const LayerSelections layer = layer_of(1, {{20, {3, 4, 5, 6}}, {10, {1, 2}}, {40, {7}}});
  const PairValues v = compare_layers(source, layer);
  ASSERT_EQ(v.recall.size(), 2u);  // 40 has no counterpart; in the layer's query order
  EXPECT_DOUBLE_EQ(v.iou[0], 2.0 / 6.0);
  EXPECT_DOUBLE_EQ(v.recall[0], 0.5);
  EXPECT_DOUBLE_EQ(v.iou[1], 1.0);
  EXPECT_DOUBLE_EQ(v.recall[1], 1.0);
  const PairSummary s = summarize_pair(v);
  EXPECT_EQ(s.queries, 2);
  EXPECT_DOUBLE_EQ(s.recall_mean, 0.75);
  EXPECT_DOUBLE_EQ(s.iou_mean, (1.0 / 3.0 + 1.0) / 2.0);
}

// Selections of layers with different compress ratios count different things (rows of 4 tokens, or tokens):
// no query is shared, whatever the positions.
TEST(Crosslayer, LayersOfDifferentCompressRatiosShareNoQuery) {
  LayerSelections source = layer_of(0, {{20, {1, 2}}, {10, {1}}});
  LayerSelections layer = layer_of(1, {{20, {1, 2}}, {10, {1}}});
  EXPECT_EQ(compare_layers(source, layer).iou.size(), 2u);
  layer.compress_ratio = 4;
  EXPECT_TRUE(compare_layers(source, layer).iou.empty());
  source.compress_ratio = 4;
  EXPECT_EQ(compare_layers(source, layer).recall, (std::vector<double>{1.0, 1.0}));
}

TEST(Crosslayer, EmptySelectionsAndNoSharedQueries) {
  const LayerSelections empty_source = layer_of(0, {{5, {}}});
  const LayerSelections empty_layer = layer_of(1, {{5, {}}});
  const PairValues v = compare_layers(empty_source, empty_layer);
  ASSERT_EQ(v.recall.size(), 1u);
  EXPECT_EQ(v.iou[0], 1.0);
  EXPECT_EQ(v.recall[0], 1.0);
  const PairValues none = compare_layers(layer_of(0, {{1, {0}}}), layer_of(1, {{2, {0}}}));
  EXPECT_TRUE(none.recall.empty());
  EXPECT_EQ(summarize_pair(none).queries, 0);
  EXPECT_EQ(summarize_pair(none).recall_mean, 0.0);  // no evidence that the source would serve
  // Another k_start is another query.
  LayerSelections packed = layer_of(1, {});
  packed.add(5, 3, std::vector<int64_t>{4});
  EXPECT_TRUE(compare_layers(layer_of(0, {{5, {4}}}), packed).recall.empty());
}

TEST(Crosslayer, ReuseEveryTakesTheNearestEarlierMultiple) {
  const ReusePlan p = reuse_every({1, 2, 3, 4, 5, 8, 9}, 4);
  EXPECT_EQ(p.name, "every 4");
  const std::map<int, int> want{{1, 1}, {2, 2}, {3, 3}, {4, 4}, {5, 4}, {8, 8}, {9, 8}};
  EXPECT_EQ(p.source_of, want);
  const ReusePlan own = reuse_every({0, 1, 2}, 1);
  EXPECT_EQ(own.source_of, (std::map<int, int>{{0, 0}, {1, 1}, {2, 2}}));
}

TEST(Crosslayer, ReuseMapIsCheckedAgainstTheLayers) {
  const std::vector<int> layers{3, 4, 5, 6};
  EXPECT_EQ(parse_reuse_map("5:4,6:4"), (std::map<int, int>{{5, 4}, {6, 4}}));
  const ReusePlan p = reuse_map(layers, parse_reuse_map("5:4,6:4"));
  EXPECT_EQ(p.name, "map 5:4,6:4");
  EXPECT_EQ(p.source_of, (std::map<int, int>{{3, 3}, {4, 4}, {5, 4}, {6, 4}}));
  for (const char* bad : {"5", "5:", ":4", "5:4,", "a:b", "5:4,5:3", "5;4"}) {
    EXPECT_THROW(parse_reuse_map(bad), OptionError) << bad;
  }
  EXPECT_THROW(reuse_map(layers, {{5, 9}}), OptionError);  // not audited
  EXPECT_THROW(reuse_map(layers, {{4, 5}}), OptionError);  // not earlier
  EXPECT_THROW(reuse_map(layers, {{5, 4}, {6, 5}}), OptionError);  // 5 reuses, so it lends nothing
}

TEST(Crosslayer, GreedyReusesWhileTheTargetHolds) {
  // Layer 1 keeps 0.97 of its own by 0's selection, layer 2 only 0.5; then 3 keeps 0.99 by 2's.
  auto recall = [](int s, int l) {
    if (s == 0 && l == 1) return 0.97;
    if (s == 2 && l == 3) return 0.99;
    return 0.5;
  };
  const ReusePlan p = reuse_greedy({0, 1, 2, 3}, 0.95, recall);
  EXPECT_EQ(p.source_of, (std::map<int, int>{{0, 0}, {1, 0}, {2, 2}, {3, 2}}));
}

// Beyond 16 layers the matrix is a heatmap, one character per pair, every row as long as its layer's sources.
TEST(Crosslayer, ManyLayersPrintAsAHeatmap) {
  CrosslayerResult r;
  r.topk = 8;
  r.engine = "cpu";
  r.samples = {"s"};
  for (int l = 0; l < 20; ++l) r.layers.push_back(l);
  r.pooled.assign(20, std::vector<PairSummary>(20));
  for (size_t s = 0; s < 20; ++s) {
    for (size_t l = s + 1; l < 20; ++l) r.pooled[s][l] = {4, 0.5, l - s == 1 ? 0.97 : 0.1, 0.1};
  }
  r.pooled[0][19].queries = 0;  // no shared queries: blank
  std::ostringstream out;
  write_crosslayer_table(out, r);
  const std::string text = out.str();
  EXPECT_NE(text.find("one character per pair"), std::string::npos);
  EXPECT_NE(text.find("     19  ····"), std::string::npos) << text;  // 19's first source (0) is blank, then 1, 2, ...
  EXPECT_NE(text.find("      2 ·█\n"), std::string::npos) << text;
  EXPECT_NE(text.find("no plan meets the target"), std::string::npos);
}

}  // namespace
}  // namespace hisa
