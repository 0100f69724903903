// DeepSeek-V4's 1M-token context on the GPU: rows of 262,144 keys (twice the longest other GPU test), as an
// uncompressed layer and as the compressed layer of a 1,048,576-token sequence (one row per 4 tokens), audited and
// selected by the CUDA engine exactly as by the CPU engine.
#include <gtest/gtest.h>

#include "gpu_test_util.hpp"
#include "io/dump_reader.hpp"
#include "io/query_subset.hpp"
#include "pipelines/audit.hpp"
#include "pipelines/select.hpp"
#include "../io/edge_dumps.hpp"
#include "../test_util.hpp"

namespace hisa::gpu_test {
namespace {

constexpr int64_t kRows = 262144;

TEST(CudaCompressed, RowsOf262144KeysExact) {
  REQUIRE_GPU();
  LayerSpec s;
  s.keys = kRows;
  s.queries = 5;
  s.heads = 4;
  s.dim = 16;
  s.packed = true;
  Layer l = random_layer(s);
  SelectionConfig c;
  c.topk = 1024;
  c.block_size = 128;
  c.blocks = 24;
  auto gpu = make_cuda_engine(gpu_device());
  auto cpu = make_cpu_engine(0);
  gpu->set_layer(l.keys, c);
  cpu->set_layer(l.keys, c);
  std::vector<QueryAudit> ga, ca;
  gpu->audit(l.batch, ga);
  cpu->audit(l.batch, ca);
  ASSERT_EQ(ga.size(), ca.size());
  for (size_t i = 0; i < ga.size(); ++i) {
    SCOPED_TRACE("query " + std::to_string(i));
    EXPECT_EQ(ga[i].flat, ca[i].flat);
    EXPECT_EQ(ga[i].flat, reference::flat(l.batch, int64_t(i), l.keys, c));
    EXPECT_EQ(ga[i].hisa, ca[i].hisa);
    EXPECT_EQ(ga[i].hisa_blocks, ca[i].hisa_blocks);
    EXPECT_EQ(ga[i].block, ca[i].block);
    EXPECT_EQ(ga[i].kth_score, ca[i].kth_score);
    EXPECT_LE(relative(ga[i].mass_visible, ca[i].mass_visible), 1e-10);
  }
}

// The pipelines on a compressed fp4 dump (V4's encoding): audit per query and select for every method, CUDA
// against the CPU.
TEST(CudaCompressed, MillionTokenCompressedDumpAuditsAndSelectsAsOnTheCpu) {
  REQUIRE_GPU();
  test::TempDir dir;
  SynthOptions so;
  so.output = dir.file("v4.h5");
  so.profile = SynthProfile::Niah;
  so.seq_len = 4 * kRows;
  so.compress_ratio = 4;
  so.layers = 1;
  so.heads = 8;
  so.head_dim = 64;
  so.dtype = ElementType::FP4_E2M1;
  so.index_topk = 512;
  so.queries = parse_query_selection("sample:6");
  write_synth_dump(so);
  {
    LayerReader lr = DumpReader(so.output).open_layer("sample_0", 0);
    ASSERT_EQ(lr.shape().keys, kRows);
    ASSERT_EQ(lr.shape().compress_ratio, 4);
  }
  auto audit_on = [&](const std::string& device) {
    AuditOptions o;
    o.files = {so.output};
    o.run.device = device;
    o.progress = false;
    std::vector<std::vector<int64_t>> sets;
    run_audit(o, [&](const QueryRecord& q) {
      sets.push_back(q.audit->flat);
      sets.push_back(q.audit->hisa);
      sets.push_back(q.audit->block);
      sets.push_back({q.audit->token_pos, q.audit->q_pos});
    });
    return sets;
  };
  const auto gpu_sets = audit_on("cuda");
  EXPECT_EQ(gpu_sets.size(), 6u * 4u);
  EXPECT_EQ(gpu_sets, audit_on("cpu"));
  for (Method m : {Method::Flat, Method::Hisa, Method::Block}) {
    std::vector<std::vector<int64_t>> got[2];
    for (int d = 0; d < 2; ++d) {
      SelectOptions o;
      o.input.files = {so.output};
      o.input.run.device = d == 0 ? "cuda" : "cpu";
      o.input.progress = false;
      o.method = m;
      o.output = dir.file("sel.h5");
      run_select(o);
      got[d] = test::read_selections(o.output, "/sample_0/layer_0");
    }
    EXPECT_EQ(got[0], got[1]) << method_name(m);
  }
}

}  // namespace
}  // namespace hisa::gpu_test
