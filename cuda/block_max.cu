// The best visible token score of every eligible block of every query: what `hisa explain` and the miss
// causes call the block's best token (docs/definitions.md, "Miss causes").
#include <algorithm>

#include "cuda/cuda_check.hpp"
#include "cuda/kernels.hpp"

namespace hisa::cuda {

namespace {

constexpr int kWarpsPerCta = 8;

// One warp per (row, block): lanes stride over the block's visible keys, then a butterfly max. Each warp takes
// blocks kWarpsPerCta · gridDim.y apart (gridDim.y is capped at the grid's limit, so any number of blocks is
// covered).
__global__ void block_max_kernel(BlockMaxLaunch a) {
  const int row = blockIdx.x, lane = int(threadIdx.x % 32);
  const int lo = a.lo[row], hi = a.hi[row], B = a.block_size;
  const int first_block = lo / B;
  const float* scores = a.scores + int64_t(row) * a.stride - a.base;
  const int64_t step = int64_t(gridDim.y) * kWarpsPerCta;
  for (int64_t j = int64_t(blockIdx.y) * kWarpsPerCta + threadIdx.x / 32; j < a.max_blocks && first_block + j <= hi / B; j += step) {
    const int block = int(first_block + j);
    const int from = max(block * B, lo), to = min(block * B + B - 1, hi);
    float best = -INFINITY;
    for (int s = from + lane; s <= to; s += 32) best = fmaxf(best, scores[s]);
    for (int offset = 16; offset > 0; offset /= 2) best = fmaxf(best, __shfl_xor_sync(0xffffffffu, best, offset));
    if (lane == 0) a.out[int64_t(row) * a.max_blocks + j] = best;
  }
}

}  // namespace

void launch_block_max(const BlockMaxLaunch& a, cudaStream_t stream) {
  if (a.rows == 0 || a.max_blocks == 0) return;
  const dim3 grid(unsigned(a.rows), unsigned(std::min((a.max_blocks + kWarpsPerCta - 1) / kWarpsPerCta, 65535)));
  block_max_kernel<<<grid, 32 * kWarpsPerCta, 0, stream>>>(a);
  HISA_CUDA_CHECK(cudaGetLastError());
}

}  // namespace hisa::cuda
