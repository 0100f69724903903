// fp8 operands: the codes the engine accepts and writes (operands.hpp), and scoring them on the fp8 tensor cores.
#include <gtest/gtest.h>

#include "cuda/cuda_check.hpp"
#include "cuda/operands.hpp"

#include "gpu_test_util.hpp"

namespace hisa {
namespace {

using namespace gpu_test;

// What the engine accepts as fp8 operands: exactly the e4m3fn values, whose codes round-trip.
TEST(Fp8Codes, ExactnessAcceptsExactlyTheE4m3Values) {
  std::vector<float> e4m3;
  for (int code = 0; code < 256; ++code) {
    const float v = e4m3_to_float(uint8_t(code));
    if (!std::isnan(v)) e4m3.push_back(v);
  }
  cuda::Exactness yes;
  yes.reset(e4m3.data(), e4m3.size());
  EXPECT_TRUE(yes.e4m3());
  for (float off : {0.3f, 449.0f, 1.0625f, 0x1p-10f, -500.0f}) {
    std::vector<float> v = e4m3;
    v.push_back(off);
    cuda::Exactness no;
    no.reset(v.data(), v.size());
    EXPECT_FALSE(no.e4m3()) << off;
  }
  // A row's codes: one byte each, zero-padded to 128 bytes (64 16-bit units).
  std::vector<uint16_t> row(size_t(cuda::coded_dim(cuda::ValueType::E4M3, 3)), 0);
  const float values[3] = {1.0f, -448.0f, 0x1p-9f};
  cuda::encode_row(cuda::ValueType::E4M3, values, 3, row.data());
  ASSERT_EQ(64u, row.size());
  const auto* bytes = reinterpret_cast<const uint8_t*>(row.data());
  for (int d = 0; d < 3; ++d) EXPECT_EQ(values[d], e4m3_to_float(bytes[d]));
  for (int d = 3; d < 128; ++d) EXPECT_EQ(0, bytes[d]);
}

// fp8 operands on the fp8 tensor cores (--fp8-mma): not exact, so selections may differ from the reference only
// between tokens within kFp8MmaParityTolerance of the cut, and every DSA score within that tolerance of the
// reference score. Synthetic fp8 dumps (real scales) and random layers rounded to e4m3, shapes that take the
// fp8 kernel (64 and 32 heads; D = 128 and D = 100 padded to 128) and one that does not (16 heads: the exact
// bf16 path, so the wider tolerance is not needed there).
TEST(CudaEngine, Fp8TensorCoresAgreeUpToTheirTolerance) {
  REQUIRE_GPU();
  int major = 0, minor = 0;
  HISA_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, gpu_device()));
  HISA_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, gpu_device()));
  const bool hopper = major == 9 && minor == 0;
  const bool fp8_kernel = cuda::fp8_mma_available(gpu_device());
  if (!hopper) {
    EXPECT_FALSE(fp8_kernel);  // the fp8 kernel is sm_90a machine code
  }
  EXPECT_TRUE(cuda::wgmma_takes(cuda::ValueType::E4M3, 64, cuda::kFp8Dim));
  EXPECT_TRUE(cuda::wgmma_takes(cuda::ValueType::E4M3, 32, cuda::kFp8Dim));
  EXPECT_FALSE(cuda::wgmma_takes(cuda::ValueType::E4M3, 16, cuda::kFp8Dim));
  double worst = 0;
  // fp8_expected: the shape takes the fp8 kernel (on a GPU that has it), so the engine must say it used it.
  auto run = [&](const Layer& l, const std::string& what, bool fp8_expected) {
    for (PoolPrecision pool : {PoolPrecision::Fp32, PoolPrecision::Fp8}) {
      SelectionConfig c;
      c.topk = 200;
      c.block_size = 64;
      c.blocks = 8;
      c.pool = pool;
      SCOPED_TRACE(what + " " + describe(c));
      const FloatReport r = compare_float(l, c, true);
      EXPECT_EQ(r.unexplained, 0);
      EXPECT_EQ(r.fp8_scores, fp8_expected && fp8_kernel);
      worst = std::max(worst, r.worst_score_error);
      std::cout << "[ info ] fp8 tensor cores, " << what << " " << describe(c) << ": " << r << ", worst score error "
                << r.worst_score_error << " of the magnitude\n";
    }
  };
  for (int64_t heads : {64, 32, 16}) {
    SynthOptions o;
    o.seq_len = 4096;
    o.heads = heads;
    o.head_dim = 128;
    o.index_topk = 200;
    o.queries = {QueryMode::Sample, 24};
    o.dtype = ElementType::FP8_E4M3;
    o.packed = heads == 64 ? 2 : 1;
    o.seed = 9;
    run(from_synth(synth_layer(o, 0, 1)), "synth H=" + std::to_string(heads), heads != 16);
  }
  for (int64_t dim : {128, 100}) {
    Layer l = random_layer({.keys = 3000, .heads = 64, .dim = dim, .queries = 24, .integer = false, .packed = true, .seed = 41});
    round_layer(l, ElementType::FP8_E4M3);
    run(l, "random e4m3 D=" + std::to_string(dim), true);
  }
  // The fp8 MMA's accumulation shows (1e-5 to 1e-4 of the magnitude on an H200), above fp32 rounding (1e-7).
  if (fp8_kernel) {
    EXPECT_GT(worst, 1e-6);
  }
  std::cout << "[ info ] fp8 tensor cores: worst score error " << worst << " of the magnitude (tolerance "
            << kFp8MmaParityTolerance << ")\n";
}
}  // namespace
}  // namespace hisa
