// The scoring kernels (score.cu, score_wgmma.cu) through the engine, on every element type and shape they take,
// and the choice of kernel (cuda_scoring.hpp choose_score_kernel).
#include <gtest/gtest.h>

#include <limits>
#include <random>

#include "cuda/cuda_check.hpp"
#include "cuda/cuda_scoring.hpp"
#include "cuda/operands.hpp"

#include "gpu_test_util.hpp"

namespace hisa {
namespace {

using namespace gpu_test;

TEST(CudaEngine, ShapesThatNeedPadding) {
  REQUIRE_GPU();
  // H not a multiple of 8 and D not a multiple of 16 (padded for the tensor cores), rows shorter than k.
  for (int64_t heads : {1, 3, 9}) {
    for (int64_t dim : {5, 16, 33, 128}) {
      LayerSpec s;
      s.heads = heads;
      s.dim = dim;
      s.keys = 150;
      s.queries = 9;
      s.seed = uint64_t(heads * 1000 + dim);
      Layer l = random_layer(s);
      SelectionConfig c;
      c.topk = 40;
      c.block_size = 8;
      c.blocks = 3;
      SCOPED_TRACE("H=" + std::to_string(heads) + " D=" + std::to_string(dim));
      expect_identical(l, c);
    }
  }
  LayerSpec s;
  s.keys = 40;
  Layer l = random_layer(s);
  SelectionConfig c;
  c.topk = 64;
  c.block_size = 4;
  c.blocks = 2;
  expect_identical(l, c);
}

// The shapes the wgmma kernel takes on sm_90 (32 or 64 padded heads, 64 or 128 padded dims): exact layers give
// the CPU's and the reference's results on both 16-bit paths, with partial 256-key tiles, packed sequences and
// HISA's sparse work lists (select()).
TEST(CudaEngine, WgmmaShapesMatchCpuAndReference) {
  REQUIRE_GPU();
  for (auto [heads, dim] : {std::pair<int64_t, int64_t>{64, 128}, {32, 64}, {60, 120}, {25, 50}}) {
    for (Path p : {Path::BF16, Path::F16}) {
      LayerSpec s;
      s.heads = heads;
      s.dim = dim;
      s.keys = 700;  // two whole 256-key tiles and a partial one
      s.queries = 12;
      s.packed = heads == 32;
      s.seed = uint64_t(heads + dim);
      Layer l = random_layer(s);
      force_path(l, p);
      SCOPED_TRACE("H=" + std::to_string(heads) + " D=" + std::to_string(dim) + " path " + path_name(p));
      for (auto [B, m] : {std::pair<int64_t, int64_t>{16, 5}, {64, 3}, {128, 2}}) {
        SelectionConfig c;
        c.topk = 96;
        c.block_size = B;
        c.blocks = m;
        expect_identical(l, c);
      }
    }
  }
}

TEST(CudaEngine, FloatLayersAgreeUpToNearTies) {
  REQUIRE_GPU();
  // fp32 values (CUDA-core path), and the same values rounded to bf16 and f16 (tensor-core paths: mma.sync with
  // 8 heads, wgmma on sm_90 with 64).
  for (ElementType t : {ElementType::F32, ElementType::BF16, ElementType::F16}) {
    for (bool packed : {false, true}) {
      LayerSpec s;
      s.integer = false;
      s.keys = 1500;
      s.queries = 24;
      s.heads = packed ? 64 : 8;
      s.dim = packed ? 128 : 64;
      s.packed = packed;
      s.seed = 21;
      Layer l = random_layer(s);
      if (t != ElementType::F32) round_layer(l, t);
      for (ForcedMode f : {ForcedMode::InBudget, ForcedMode::Extra}) {
        for (PoolPrecision pool : {PoolPrecision::Fp32, PoolPrecision::Fp8}) {
          SelectionConfig c;
          c.topk = 50;
          c.block_size = 32;
          c.blocks = 6;
          c.forced = f;
          c.pool = pool;
          SCOPED_TRACE(std::string(element_type_name(t)) + (packed ? " packed" : ""));
          const FloatReport r = compare_float(l, c);
          EXPECT_EQ(r.unexplained, 0);
          std::cout << "[ info ] " << element_type_name(t) << (packed ? " packed " : " ") << describe(c) << ": " << r
                    << "\n";
        }
      }
    }
  }
}

// fp32 keys against bf16 queries: on sm_90 the keys are split into three bf16 parts (ValueType::BF16x3) and
// scored on the tensor cores; differences from the reference may only be near-ties.
TEST(CudaEngine, Fp32KeysAgainstBf16QueriesAgreeUpToNearTies) {
  REQUIRE_GPU();
  Layer l = random_layer({.keys = 1500, .heads = 64, .dim = 128, .queries = 24, .integer = false, .packed = true, .seed = 23});
  for (auto& v : l.batch.q) v = round_to(ElementType::BF16, v);
  for (auto& v : l.keys.k) v *= 1.0f + 1e-6f;  // keep the keys inexact in bf16
  SelectionConfig c;
  c.topk = 50;
  c.block_size = 32;
  c.blocks = 6;
  const FloatReport r = compare_float(l, c);
  EXPECT_EQ(r.unexplained, 0);
  std::cout << "[ info ] fp32 keys, bf16 queries: " << r << "\n";
}

// The split that BF16x3 scoring relies on: three bf16 parts whose sum is the value exactly, for every value
// that Exactness calls splittable; tiny and huge values are not (they would leave subnormal or infinite parts).
TEST(SplitBf16, PartsSumToTheValueExactly) {
  std::mt19937_64 rng(5);
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  std::vector<float> values = {0.0f, -0.0f, 1.0f, 1.0f / 3.0f, -7.123456789f, 1e-30f, 3.0e38f, -3.0e38f};
  for (int i = 0; i < 10000; ++i) values.push_back(gauss(rng) * std::ldexp(1.0f, int(rng() % 60) - 30));
  for (float v : {1e-31f, 1e-40f, 3.3e38f, std::numeric_limits<float>::infinity()}) {
    EXPECT_FALSE(cuda::Exactness::splits_exactly(v)) << v;
  }
  for (float v : values) {
    ASSERT_TRUE(cuda::Exactness::splits_exactly(v)) << v;
    uint16_t hi = 0, mid = 0, lo = 0;
    cuda::split_bf16(v, hi, mid, lo);
    const double sum = double(bf16_to_float(hi)) + double(bf16_to_float(mid)) + double(bf16_to_float(lo));
    EXPECT_EQ(sum, double(v)) << v;
  }
}

// The dispatch table (docs/cuda.md) as choose_score_kernel decides it, for devices with and without the wgmma
// kernel and with HISA_NO_WGMMA's setting; no GPU needed.
TEST(ScoreKernelChoice, FollowsTheDispatchTable) {
  auto exact = [](std::vector<float>& v) {
    cuda::Exactness e;
    e.reset(v.data(), v.size());
    return e;
  };
  std::vector<float> bf16 = {1.0f, -0.5f, 3.0f}, f16_only = {257.0f, 1.0f}, fp32 = {1.0f + 0x1p-20f, 2.0f},
                     e4m3 = {1.0f, -448.0f, 0x1p-9f};
  const cuda::Exactness B = exact(bf16), F = exact(f16_only), X = exact(fp32), E = exact(e4m3);
  const cuda::ScoreDevice hopper{true, true}, no_wgmma_16bit{true, false}, other{false, false};
  using cuda::ScoreKernel;
  using cuda::ValueType;
  auto expect = [](cuda::KernelChoice got, ValueType type, ScoreKernel kernel, int tile, const char* what) {
    EXPECT_EQ(int(got.type), int(type)) << what;
    EXPECT_EQ(int(got.kernel), int(kernel)) << what;
    EXPECT_EQ(got.tile_keys(), tile) << what;
  };
  expect(cuda::choose_score_kernel(B, B, 64, 128, false, hopper), ValueType::BF16, ScoreKernel::Wgmma, 128, "bf16 H64 D128");
  expect(cuda::choose_score_kernel(B, B, 25, 50, false, hopper), ValueType::BF16, ScoreKernel::Wgmma, 128, "bf16 H'32 D'64");
  expect(cuda::choose_score_kernel(B, B, 8, 128, false, hopper), ValueType::BF16, ScoreKernel::MmaSync, 128, "bf16 H8");
  expect(cuda::choose_score_kernel(B, B, 64, 96, false, hopper), ValueType::BF16, ScoreKernel::MmaSync, 128, "bf16 D96");
  expect(cuda::choose_score_kernel(B, B, 64, 128, false, no_wgmma_16bit), ValueType::BF16, ScoreKernel::MmaSync, 128,
         "HISA_NO_WGMMA");
  expect(cuda::choose_score_kernel(B, B, 64, 128, false, other), ValueType::BF16, ScoreKernel::MmaSync, 128, "not sm_90");
  expect(cuda::choose_score_kernel(F, F, 64, 128, false, hopper), ValueType::F16, ScoreKernel::Wgmma, 128, "f16");
  expect(cuda::choose_score_kernel(X, B, 64, 128, false, hopper), ValueType::BF16x3, ScoreKernel::Wgmma, 64, "split keys");
  expect(cuda::choose_score_kernel(X, B, 64, 128, false, no_wgmma_16bit), ValueType::BF16x3, ScoreKernel::Wgmma, 64,
         "split keys, HISA_NO_WGMMA");
  expect(cuda::choose_score_kernel(X, B, 8, 128, false, hopper), ValueType::F32, ScoreKernel::CudaCores, 64, "split keys H8");
  expect(cuda::choose_score_kernel(X, B, 64, 128, false, other), ValueType::F32, ScoreKernel::CudaCores, 64, "fp32 not sm_90");
  expect(cuda::choose_score_kernel(B, X, 64, 128, false, hopper), ValueType::F32, ScoreKernel::CudaCores, 64, "fp32 queries");
  expect(cuda::choose_score_kernel(B, B, 64, 200, false, hopper), ValueType::F32, ScoreKernel::CudaCores, 64, "D200");
  expect(cuda::choose_score_kernel(E, E, 64, 128, true, hopper), ValueType::E4M3, ScoreKernel::Wgmma, 128, "fp8");
  expect(cuda::choose_score_kernel(E, E, 32, 100, true, hopper), ValueType::E4M3, ScoreKernel::Wgmma, 128, "fp8 D100");
  expect(cuda::choose_score_kernel(E, E, 16, 128, true, hopper), ValueType::BF16, ScoreKernel::MmaSync, 128, "fp8 H16");
  expect(cuda::choose_score_kernel(E, E, 64, 128, false, hopper), ValueType::BF16, ScoreKernel::Wgmma, 128, "fp8 unasked");
  expect(cuda::choose_score_kernel(E, E, 64, 128, true, other), ValueType::BF16, ScoreKernel::MmaSync, 128, "fp8 not sm_90");
}

// launch_score runs the kernel it is told, and refuses one that does not take the launch (before any launch).
TEST(ScoreKernelChoice, LaunchRefusesAKernelThatDoesNotTakeTheLaunch) {
  cuda::ScoreLaunch a;
  a.queries = 1;
  a.range_lo = 0;
  a.range_hi = 10;
  a.heads = 64;
  a.dim = 128;
  a.type = cuda::ValueType::F32;
  a.kernel = cuda::ScoreKernel::MmaSync;
  EXPECT_THROW(cuda::launch_score(a, nullptr), cuda::CudaError);
  a.type = cuda::ValueType::BF16x3;
  a.dim = 3 * 128;
  EXPECT_THROW(cuda::launch_score(a, nullptr), cuda::CudaError);  // split keys: wgmma only
  a.kernel = cuda::ScoreKernel::Wgmma;
  a.heads = 16;
  EXPECT_THROW(cuda::launch_score(a, nullptr), cuda::CudaError);  // 16 heads: not a wgmma shape
  a.type = cuda::ValueType::BF16;
  a.kernel = cuda::ScoreKernel::CudaCores;
  a.heads = 64;
  a.dim = 128;
  EXPECT_THROW(cuda::launch_score(a, nullptr), cuda::CudaError);
}

}  // namespace
}  // namespace hisa
