// HISA's block choice on the GPU (block_choice.cu).
#include <gtest/gtest.h>

#include <limits>
#include <random>
#include <span>

#include "cuda/block_choice.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/device_buffer.hpp"

#include "gpu_test_util.hpp"

namespace hisa {
namespace {

using namespace gpu_test;

// HISA's block choice on the GPU (cuda/block_choice.cu) keeps exactly what keep_blocks keeps, on J rows with
// ties, infinities and spans of every size, in both forced modes.
TEST(CudaBlockChoice, KeepsWhatKeepBlocksKeeps) {
  REQUIRE_GPU();
  HISA_CUDA_CHECK(cudaSetDevice(gpu_device()));
  cuda::Stream stream;
  std::mt19937_64 rng(17);
  const float inf = std::numeric_limits<float>::infinity();
  const int width = 300, base = 40, rows = 64;
  std::vector<float> j(size_t(rows) * width);
  std::vector<int> first(rows), last(rows);
  for (int r = 0; r < rows; ++r) {
    const int kind = r % 4;
    for (int b = 0; b < width; ++b) {
      const int x = int(rng() % 9);
      float v = float(int(rng() % 5)) * 0.5f;  // heavy ties
      if (kind == 1) v = 1.0f;                  // all equal
      if (kind == 2) v = x == 0 ? inf : x == 1 ? -inf : v;
      if (kind == 3) v = float(rng() % 100000) * 1e-3f;
      j[size_t(r) * width + b] = v;
    }
    const int len = r < 8 ? r + 1 : 1 + int(rng() % width);  // 1..8 blocks first, then any
    first[r] = base + int(rng() % (width - len + 1));
    last[r] = first[r] + len - 1;
  }
  cuda::DeviceArray<float> dj;
  cuda::DeviceArray<int> dfirst, dlast;
  dj.upload(j.data(), j.size(), stream.get());
  dfirst.upload(first.data(), first.size(), stream.get());
  dlast.upload(last.data(), last.size(), stream.get());
  cuda::BlockChoice choice;
  for (int m : {1, 2, 3, 5, 16, 64, 299}) {
    for (ForcedMode mode : {ForcedMode::InBudget, ForcedMode::Extra}) {
      SCOPED_TRACE("m=" + std::to_string(m) + " forced=" + std::string(forced_mode_name(mode)));
      const cuda::BlockRows br{dj.data(), width, base, dfirst.data(), dlast.data(), rows};
      choice.keep(br, m, mode == ForcedMode::Extra, stream.get());
      const int cap = cuda::BlockChoice::capacity(m);
      std::vector<int> kept(size_t(rows) * cap), count(rows);
      HISA_CUDA_CHECK(cudaMemcpyAsync(kept.data(), choice.kept(), kept.size() * sizeof(int), cudaMemcpyDeviceToHost, stream.get()));
      HISA_CUDA_CHECK(cudaMemcpyAsync(count.data(), choice.kept_count(), count.size() * sizeof(int), cudaMemcpyDeviceToHost, stream.get()));
      stream.synchronize();
      for (int r = 0; r < rows; ++r) {
        const BlockSpan span{first[r], last[r]};
        const std::span<const float> row(j.data() + size_t(r) * width + (first[r] - base), size_t(span.size()));
        std::vector<int64_t> want;
        keep_blocks(row, span, m, mode, want);
        const std::vector<int64_t> got(kept.begin() + size_t(r) * cap, kept.begin() + size_t(r) * cap + count[r]);
        EXPECT_EQ(got, want) << "row " << r << " blocks [" << first[r] << ", " << last[r] << "]";
      }
    }
  }
}
}  // namespace
}  // namespace hisa
