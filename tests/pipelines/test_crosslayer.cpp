// `hisa crosslayer` as a library call against a direct computation: every layer's flat selection by the
// reference, then each pair's IoU and recall query by query.
#include <gtest/gtest.h>

#include "io/dump_reader.hpp"
#include "io/dump_writer.hpp"
#include "metrics/ref_cases.hpp"
#include "pipelines/crosslayer.hpp"
#include "select/reference.hpp"
#include "synth_dump.hpp"
#include "test_util.hpp"

namespace hisa {
namespace {

TEST(CrosslayerPipeline, EqualsADirectComputation) {
  test::TempDir dir;
  test::SynthShape shape;
  shape.seq_len = 1024;
  shape.layers = 4;
  shape.heads = 4;
  shape.head_dim = 64;
  shape.topk = 48;
  shape.queries = "sample:12";
  const std::string path = test::write_synth(dir.file("d.h5"), shape);

  CrosslayerOptions o;
  o.files = {path};
  o.run.device = "cpu";
  o.progress = false;
  o.reuse_every = 2;
  o.recall_target = 0.0;  // every plan meets it: the cheapest is the one with the fewest indexer layers
  const CrosslayerResult r = run_crosslayer(o);
  ASSERT_EQ(r.layers, (std::vector<int>{0, 1, 2, 3}));

  // The reference's flat selections of every layer.
  DumpReader reader(path);
  SelectionConfig c;
  c.topk = shape.topk;
  std::vector<std::vector<std::vector<int64_t>>> flat(4);
  for (int layer = 0; layer < 4; ++layer) {
    LayerReader lr = reader.open_layer("sample_0", layer);
    const LayerKeys keys = lr.read_keys();
    const QueryBatch b = lr.read_queries(0, lr.shape().queries);
    for (int64_t i = 0; i < b.count; ++i) flat[size_t(layer)].push_back(reference::flat(b, i, keys, c));
  }
  ASSERT_EQ(r.pairs.size(), 6u);
  for (const CrosslayerPair& p : r.pairs) {
    double iou = 0, recall = 0;
    const auto& S = flat[size_t(p.source)];
    const auto& L = flat[size_t(p.layer)];
    ASSERT_EQ(S.size(), L.size());  // synth's layers share their query positions
    for (size_t i = 0; i < L.size(); ++i) {
      std::vector<int64_t> common;
      std::set_intersection(S[i].begin(), S[i].end(), L[i].begin(), L[i].end(), std::back_inserter(common));
      iou += double(common.size()) / double(S[i].size() + L[i].size() - common.size());
      recall += double(common.size()) / double(L[i].size());
    }
    EXPECT_EQ(p.summary.queries, int64_t(L.size()));
    EXPECT_NEAR(p.summary.iou_mean, iou / double(L.size()), 1e-12) << p.source << " -> " << p.layer;
    EXPECT_NEAR(p.summary.recall_mean, recall / double(L.size()), 1e-12) << p.source << " -> " << p.layer;
    const size_t s = size_t(p.source), l = size_t(p.layer);
    EXPECT_EQ(r.pooled[s][l].recall_mean, p.summary.recall_mean);  // one sample: pooled = the sample's
  }
  // Plans: every 2 uses 0 for 1 and 2 for 3; the cheapest with target 0 is one indexer layer.
  ASSERT_GE(r.plans.size(), 2u);
  EXPECT_EQ(r.plans[0].name, "every 2");
  EXPECT_EQ(r.plans[0].indexer_layers, (std::vector<int>{0, 2}));
  EXPECT_EQ(r.plans[0].layers[1].source, 0);
  EXPECT_EQ(r.plans[0].layers[1].summary.recall_mean, r.pooled[0][1].recall_mean);
  EXPECT_EQ(r.plans[0].layers[3].summary.recall_mean, r.pooled[2][3].recall_mean);
  EXPECT_DOUBLE_EQ(r.plans[0].min_recall_mean, std::min(r.pooled[0][1].recall_mean, r.pooled[2][3].recall_mean));
  ASSERT_TRUE(r.cheapest.has_value());
  const auto cheapest = std::find_if(r.plans.begin(), r.plans.end(), [&](const PlanResult& p) { return p.name == *r.cheapest; });
  ASSERT_NE(cheapest, r.plans.end());
  EXPECT_EQ(cheapest->indexer_layers.size(), 1u);

  // Results never depend on the thread count.
  o.threads = 1;
  const CrosslayerResult one = run_crosslayer(o);
  for (size_t i = 0; i < r.pairs.size(); ++i) EXPECT_EQ(one.pairs[i].summary.recall_p5, r.pairs[i].summary.recall_p5);
}

// Layers whose queries sit at different positions share nothing: no plan may reuse across them.
TEST(CrosslayerPipeline, NoSharedQueriesSupportNoReuse) {
  test::TempDir dir;
  auto first = test::ref_layer(512, 6, 2, 16, 0, 1), second = test::ref_layer(512, 6, 2, 16, 0, 2);
  for (auto& p : second.arrays.q_pos) --p;  // every query one position earlier
  FileAttributes fa;
  fa.model = "t";
  fa.n_heads = 2, fa.head_dim = 16, fa.index_topk = 8;
  SampleAttributes sa;
  sa.seq_len = 512;
  const std::string path = dir.file("d.h5");
  {
    DumpWriter w(path, fa);
    w.add_sample("s", sa);
    w.add_layer("s", 0, first.arrays);
    w.add_layer("s", 1, second.arrays);
    w.close();
  }
  CrosslayerOptions o;
  o.files = {path};
  o.run.device = "cpu";
  o.progress = false;
  o.reuse_every = 2;
  o.recall_target = 0.0;
  const CrosslayerResult r = run_crosslayer(o);
  ASSERT_EQ(r.pairs.size(), 1u);
  EXPECT_EQ(r.pairs[0].summary.queries, 0);
  EXPECT_EQ(r.plans[0].name, "every 2");
  EXPECT_EQ(r.plans[0].layers[1].source, 0);
  EXPECT_EQ(r.plans[0].min_recall_mean, 0.0);  // layer 1 reuses 0 with nothing to show for it
  // A target of 0 is met by anything; above it, only own indexers meet it.
  o.recall_target = 1e-9;
  const CrosslayerResult strict = run_crosslayer(o);
  ASSERT_TRUE(strict.cheapest.has_value());
  const auto best = std::find_if(strict.plans.begin(), strict.plans.end(), [&](const PlanResult& p) { return p.name == *strict.cheapest; });
  ASSERT_NE(best, strict.plans.end());
  EXPECT_EQ(best->indexer_layers, (std::vector<int>{0, 1}));
}

TEST(CrosslayerPipeline, ATargetAboveOneHasNoCheapestPlan) {
  test::TempDir dir;
  test::SynthShape shape;
  shape.seq_len = 512;
  shape.layers = 2;
  shape.topk = 16;
  shape.queries = "sample:4";
  CrosslayerOptions o;
  o.files = {test::write_synth(dir.file("d.h5"), shape)};
  o.run.device = "cpu";
  o.progress = false;
  o.recall_target = 1.5;
  const CrosslayerResult r = run_crosslayer(o);
  EXPECT_FALSE(r.cheapest.has_value());
  for (const auto& p : r.plans) EXPECT_FALSE(p.meets_target);
}

}  // namespace
}  // namespace hisa
