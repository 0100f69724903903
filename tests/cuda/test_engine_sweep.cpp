// The engine's sweep scoring (set_sweep_layer, sweep) on the GPU: the CPU engine's DSA sets and J, and whole sweeps.
#include <gtest/gtest.h>

#include <cstdio>

#include "pipelines/sweep.hpp"
#include "../synth_dump.hpp"

#include "gpu_test_util.hpp"

namespace hisa {
namespace {

using namespace gpu_test;

// The CUDA engine's sweep gives the CPU engine's DSA sets and J on exact layers, on every scoring path, with
// pooling in fp32 and fp8, over one chunk or many.
TEST(CudaEngineSweep, ExactLayersMatchTheCpuEngine) {
  REQUIRE_GPU();
  const std::vector<PoolVariant> variants{{1, PoolPrecision::Fp32}, {4, PoolPrecision::Fp32}, {4, PoolPrecision::Fp8},
                                          {16, PoolPrecision::Fp32}, {64, PoolPrecision::Fp32}};
  for (Path p : {Path::BF16, Path::F16, Path::F32}) {
    for (size_t chunk_bytes : {size_t(0), size_t(16 * 1024)}) {
      SCOPED_TRACE(std::string("path ") + path_name(p) + " chunk bytes " + std::to_string(chunk_bytes));
      LayerSpec s;
      s.packed = true;
      s.scales = true;
      s.keys = 320;  // whole blocks for every B: the pooled means (sums / 2^j) stay exact
      s.queries = 23;
      s.seed = 5;
      Layer l = random_layer(s);
      force_path(l, p);
      auto cpu = make_cpu_engine(2);
      auto gpu = make_cuda_engine(gpu_device(), chunk_bytes);
      std::vector<SweepScores> want, got;
      for (int64_t k : {1, 12, 400}) {
        cpu->set_sweep_layer(l.keys, k, variants);
        gpu->set_sweep_layer(l.keys, k, variants);
        cpu->sweep(l.batch, want);
        gpu->sweep(l.batch, got);
        ASSERT_EQ(got.size(), want.size());
        for (size_t i = 0; i < want.size(); ++i) {
          EXPECT_EQ(got[i].flat, want[i].flat) << "query " << i << " k " << k;
          ASSERT_EQ(got[i].J.size(), variants.size());
          for (size_t v = 0; v < variants.size(); ++v) {
            ASSERT_EQ(got[i].J[v].size(), want[i].J[v].size()) << "query " << i << " variant " << v;
            for (size_t j = 0; j < want[i].J[v].size(); ++j) {
              EXPECT_EQ(got[i].J[v][j], want[i].J[v][j]) << "query " << i << " variant " << v << " block " << j << " of "
                                                         << want[i].J[v].size() << " k " << k;
            }
          }
        }
      }
      EXPECT_GT(gpu->times().token_scores, 0.0);
      EXPECT_GT(gpu->times().topk, 0.0);
      EXPECT_GT(gpu->times().block_scores, 0.0);
    }
  }
}

// run_sweep on the GPU and on the CPU over a synthetic bf16 dump: the same curves up to near-ties, which on
// these dumps means identical curves but for a few queries' recall.
TEST(CudaEngineSweep, SweepOnTheGpuMatchesTheCpu) {
  REQUIRE_GPU();
  const std::string path = test::write_synth(::testing::TempDir() + "/hisa-cuda-sweep.h5",
                                             {.seq_len = 4096, .layers = 3, .heads = 8, .topk = 128, .queries = "sample:64"});
  SweepOptions o;
  o.files = {path};
  o.block_sizes = {32, 128};
  o.blocks = {2, 8, 32};
  o.progress = false;
  const SweepResult cpu = run_sweep(o);
  o.run.device = "cuda";
  const SweepResult gpu = run_sweep(o);
  EXPECT_EQ(gpu.scorer, "cuda");
  ASSERT_EQ(gpu.layers.size(), cpu.layers.size());
  for (size_t l = 0; l < cpu.layers.size(); ++l) {
    for (size_t v = 0; v < cpu.variants.size(); ++v) {
      for (size_t j = 0; j < cpu.blocks.size(); ++j) {
        const CurvePoint &a = cpu.layers[l].all.points[v][j], &b = gpu.layers[l].all.points[v][j];
        EXPECT_EQ(a.queries, b.queries);
        EXPECT_NEAR(a.recall_mean, b.recall_mean, 2e-3) << "layer " << l << " variant " << v << " m " << a.blocks;
        EXPECT_NEAR(a.scored_keys_mean, b.scored_keys_mean, 0.02 * a.scored_keys_mean);
      }
    }
  }
  std::remove(path.c_str());
}
}  // namespace
}  // namespace hisa
