// DeepSeek-V4's 1M-token context on the GPU: rows of 262,144 keys (twice the longest other GPU test), as an
// uncompressed layer and as the compressed layer of a 1,048,576-token sequence (one row per 4 tokens), audited and
// selected by the CUDA engine exactly as by the CPU engine.
#include <gtest/gtest.h>

#include "gpu_test_util.hpp"
#include "io/dump_reader.hpp"
#include "io/query_subset.hpp"
#include "pipelines/audit.hpp"
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

// A compressed dump's layer as the pipelines hand it to an engine: rows, last visible rows, queries that see a row.
Layer read_layer(const std::string& path, int layer) {
  LayerReader lr = DumpReader(path).open_layer("sample_0", layer);
  Layer l;
  l.keys = lr.read_keys();
  const QueryBatch all = lr.read_queries(0, lr.shape().queries);
  l.batch = batch_rows(all, rows_seeing_keys(all));
  return l;
}

// The 1M-token context in V4's own encoding (fp4 with block scales): the CUDA engine against the reference rule
// (up to near ties of fp32 summation order), and `hisa audit --device cuda` over the dump.
TEST(CudaCompressed, MillionTokenFp4DumpSelectsByTheRule) {
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
  const Layer l = read_layer(so.output, 0);
  ASSERT_EQ(l.keys.count, kRows);
  ASSERT_EQ(l.batch.count, 6);
  SelectionConfig c;
  c.topk = 512;
  c.block_size = 128;
  c.blocks = 16;
  const FloatReport r = compare_float(l, c);
  EXPECT_EQ(r.unexplained, 0);
  std::cout << "[ info ] 1M tokens, fp4, 262144 rows: " << r << "\n";
  AuditOptions o;
  o.files = {so.output};
  o.run.device = "cuda";
  o.progress = false;
  int64_t queries = 0;
  run_audit(o, [&](const QueryRecord& q) {
    ++queries;
    EXPECT_EQ(q.audit->q_pos, last_visible_row(q.audit->token_pos, 4));
    EXPECT_EQ(q.audit->flat.size(), 512u);
  });
  EXPECT_EQ(queries, 6);
}

// Every encoding of a compressed dump (f32, bf16, fp8 with its scales, fp4 with its block scales), with packed
// sequences: the CUDA engine against the reference rule, up to near ties.
TEST(CudaCompressed, EveryEncodingSelectsByTheRule) {
  REQUIRE_GPU();
  test::TempDir dir;
  for (ElementType type : {ElementType::F32, ElementType::BF16, ElementType::FP8_E4M3, ElementType::FP4_E2M1}) {
    SynthOptions so;
    so.output = dir.file(std::string(element_type_name(type)) + ".h5");
    so.profile = SynthProfile::Mixed;
    so.seq_len = 4 * 8192;
    so.compress_ratio = 4;
    so.packed = 2;
    so.layers = 2;
    so.heads = 16;
    so.head_dim = 64;
    so.dtype = type;
    so.index_topk = 256;
    so.queries = parse_query_selection("sample:24");
    write_synth_dump(so);
    for (int layer : {0, 1}) {
      SCOPED_TRACE(std::string(element_type_name(type)) + " layer " + std::to_string(layer));
      SelectionConfig c;
      c.topk = 256;
      c.block_size = 32;
      c.blocks = 16;
      const FloatReport r = compare_float(read_layer(so.output, layer), c);
      EXPECT_EQ(r.queries, 24);
      EXPECT_EQ(r.unexplained, 0);
      std::cout << "[ info ] compressed " << element_type_name(type) << " layer " << layer << ": " << r << "\n";
    }
  }
}

}  // namespace
}  // namespace hisa::gpu_test
