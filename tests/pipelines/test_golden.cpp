// The golden fixtures (datasets/golden, captured from tiny DeepSeek-V3.2 and GLM-5 models by
// datasets/capture/hisa_capture.py): our flat DSA recomputation must match each model's own indexer on
// every query, up to swaps between exactly equal scores.
#include <gtest/gtest.h>

#include <filesystem>

#include "io/dump_reader.hpp"
#include "pipelines/audit.hpp"

namespace hisa {
namespace {

struct Fixture {
  const char* name;
  const char* rope;
  int64_t compress_ratio;  // DeepSeek-V4: one key row per 4 tokens
  int64_t queries;         // audited per sample and layer: every token, less those that see no row yet
};
const Fixture kFixtures[] = {{"deepseek_v32_tiny_niah.h5", "half-split", 1, 512},
                             {"glm_moe_dsa_tiny_niah.h5", "interleaved", 1, 512},
                             {"deepseek_v4_tiny_niah.h5", "interleaved", 4, 512 - 3}};

TEST(Golden, FlatDsaMatchesEachModelsOwnTopk) {
  for (const auto& [name, rope, ratio, per_layer] : kFixtures) {
    SCOPED_TRACE(name);
    const std::string path = std::string(HISA_SOURCE_DIR) + "/datasets/golden/" + name;
    ASSERT_TRUE(std::filesystem::exists(path));
    ASSERT_LT(std::filesystem::file_size(path), 2u << 20);
    DumpReader reader(path);
    EXPECT_EQ(reader.attributes().rope, rope);
    EXPECT_EQ(reader.attributes().hadamard, 0);
    ASSERT_EQ(reader.samples().size(), 2u);
    for (const auto& s : reader.samples()) {
      EXPECT_TRUE(s.attributes.has_needle());
      EXPECT_LT(reader.attributes().index_topk, s.attributes.seq_len / ratio);  // selection is real
      for (int layer : s.layers) EXPECT_EQ(reader.open_layer(s.name, layer).shape().compress_ratio, ratio);
    }
    AuditOptions o;
    o.files = {path};
    o.run.device = "cpu";
    o.progress = false;
    o.config.block_size = 16;
    o.config.blocks = 8;
    int64_t queries = 0;
    AuditResult r = run_audit(o, [&](const QueryRecord& q) {
      ++queries;
      ASSERT_TRUE(q.metrics->ref_unexplained.has_value());
      EXPECT_EQ(*q.metrics->ref_unexplained, 0) << q.sample << " layer " << q.layer << " query " << q.metrics->query;
    });
    EXPECT_EQ(queries, 2 * 3 * per_layer);
    ASSERT_EQ(r.layers.size(), 3u);
    for (const auto& l : r.layers) {
      EXPECT_EQ(*l.ref_unexplained, 0);
      EXPECT_GT(*l.ref_iou_mean, 0.95);
      // Random tiny models score many keys exactly 0 (every head's ReLU at 0): ties the models break in
      // their own order, which the report counts.
      EXPECT_GE(*l.ref_tie_swaps, 0);
    }
  }
}

}  // namespace
}  // namespace hisa
