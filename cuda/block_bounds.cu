// The certificates' block bounds (select/bounds.hpp, docs/definitions.md "Exactness certificates") and one
// query's scores of chosen keys (its score row; the tokens and blocks a judgement of topk_ref re-scores), on the GPU: what an audit or an explanation of operands that live there needs of them,
// without bringing queries or keys to the host.
#include <algorithm>
#include <cfloat>

#include "cuda/cuda_check.hpp"
#include "cuda/kernels.hpp"

namespace hisa::cuda {

namespace {

constexpr int kSummaryThreads = 128;
constexpr int kWarpsPerCta = 8;

__device__ double warp_sum(double v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}
__device__ double warp_max(double v) {
  for (int offset = 16; offset > 0; offset /= 2) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}
__device__ float warp_min(float v) {
  for (int offset = 16; offset > 0; offset /= 2) v = fminf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}
__device__ float warp_maxf(float v) {
  for (int offset = 16; offset > 0; offset /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// One CTA per block. The box is taken key by key in key order with BlockBounds' comparisons ((k < lo) ? k : lo),
// so it is BlockBounds' bit for bit (signed zeros included); then one thread per key for the ball's radius and
// the largest norm.
__global__ void block_summary_kernel(BlockSummaryLaunch a) {
  extern __shared__ float centre[];  // [dim]
  const int64_t blk = blockIdx.x, begin = blk * a.block_size;
  const int64_t end = begin + a.block_size < a.key_count ? begin + a.block_size : a.key_count;
  for (int d = int(threadIdx.x); d < a.dim; d += blockDim.x) {
    float lo = INFINITY, hi = -INFINITY;
    for (int64_t s = begin; s < end; ++s) {
      const float k = a.keys[s * a.dim + d];
      lo = (k < lo) ? k : lo;
      hi = (hi < k) ? k : hi;
    }
    const float c = 0.5f * (lo + hi);
    a.lo[blk * a.dim + d] = lo;
    a.hi[blk * a.dim + d] = hi;
    a.centre[blk * a.dim + d] = c;
    centre[d] = c;
  }
  __syncthreads();
  double radius = 0, max_norm = 0;
  float scale_min = INFINITY, scale_max = 0.0f;
  for (int64_t s = begin + threadIdx.x; s < end; s += blockDim.x) {
    const float* k = a.keys + s * a.dim;
    double r2 = 0, n2 = 0;
    for (int d = 0; d < a.dim; ++d) {
      const double x = double(k[d]), r = x - double(centre[d]);
      r2 += r * r;
      n2 += x * x;
    }
    radius = fmax(radius, sqrt(r2));
    max_norm = fmax(max_norm, sqrt(n2));
    scale_min = fminf(scale_min, a.scales[s]);
    scale_max = fmaxf(scale_max, a.scales[s]);
  }
  __shared__ double radii[kSummaryThreads / 32], norms[kSummaryThreads / 32];
  __shared__ float mins[kSummaryThreads / 32], maxs[kSummaryThreads / 32];
  const int warp = int(threadIdx.x / 32), lane = int(threadIdx.x % 32);
  radius = warp_max(radius);
  max_norm = warp_max(max_norm);
  scale_min = warp_min(scale_min);
  scale_max = warp_maxf(scale_max);
  if (lane == 0) radii[warp] = radius, norms[warp] = max_norm, mins[warp] = scale_min, maxs[warp] = scale_max;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kSummaryThreads / 32; ++w) {
      radius = fmax(radius, radii[w]);
      max_norm = fmax(max_norm, norms[w]);
      scale_min = fminf(scale_min, mins[w]);
      scale_max = fmaxf(scale_max, maxs[w]);
    }
    a.radius[blk] = radius;
    a.max_norm[blk] = max_norm;
    a.scale_min[blk] = scale_min;
    a.scale_max[blk] = scale_max;
  }
}

// BlockBounds::score_bound of (row, block) by one warp: lanes take heads, each head's box and ball bounds summed
// over the dimensions in order, then the weighted head sum across the warp; every lane returns the bound, after
// score_bound's overflow test, scale and margin.
__device__ float block_bound(const BlockBoundLaunch& a, int row, int block, int lane) {
  const float* lo = a.s.lo + int64_t(block) * a.dim;
  const float* hi = a.s.hi + int64_t(block) * a.dim;
  const float* c = a.s.centre + int64_t(block) * a.dim;
  const double radius = a.s.radius[block], max_norm = a.s.max_norm[block];
  const float* w = a.w + int64_t(row) * a.heads;
  double head_sum = 0, magnitude = 0, largest_dot = 0;
  for (int h = lane; h < a.heads; h += 32) {
    const float* q = a.q + (int64_t(row) * a.heads + h) * a.dim;
    double box_hi = 0, box_lo = 0, qc = 0, qn2 = 0;
    for (int d = 0; d < a.dim; ++d) {
      const double x = double(q[d]), p = x * double(lo[d]), z = x * double(hi[d]);
      box_hi += fmax(p, z);
      box_lo += fmin(p, z);
      qc += x * double(c[d]);
      qn2 += x * x;
    }
    const double qn = sqrt(qn2);
    const double upper = fmin(box_hi, qc + qn * radius), lower = fmax(box_lo, qc - qn * radius);
    const double wh = double(w[h]);
    head_sum += wh >= 0 ? wh * fmax(upper, 0.0) : wh * fmax(lower, 0.0);
    magnitude += fabs(wh) * qn * max_norm;
    largest_dot = fmax(largest_dot, qn * max_norm);
  }
  head_sum = warp_sum(head_sum);
  magnitude = warp_sum(magnitude);
  largest_dot = warp_max(largest_dot);
  const double scale_max = double(a.s.scale_max[block]);
  const double overflow = 0.5 * double(FLT_MAX);
  if (largest_dot >= overflow || magnitude >= overflow || magnitude * scale_max >= overflow) return INFINITY;
  const double scale = head_sum >= 0 ? scale_max : double(a.s.scale_min[block]);
  const double margin = 4.0 * double(a.dim + a.heads) * 0x1p-24 * magnitude * scale_max;
  return nextafterf(float(head_sum * scale + margin), INFINITY);
}

// One CTA row per query row; each warp takes eligible blocks kWarpsPerCta · gridDim.y apart (gridDim.y is capped
// at the grid's limit, so any number of blocks is covered).
__global__ void block_bound_kernel(BlockBoundLaunch a) {
  const int row = blockIdx.x, lane = int(threadIdx.x % 32);
  const int first = a.lo[row] / a.block_size, last = a.hi[row] / a.block_size;
  const int64_t step = int64_t(gridDim.y) * kWarpsPerCta;
  for (int64_t j = int64_t(blockIdx.y) * kWarpsPerCta + threadIdx.x / 32; first + j <= last; j += step) {
    const float bound = block_bound(a, row, int(first + j), lane);
    if (lane == 0) a.out[a.offsets[row] + j] = bound;
  }
}

// One warp per key: lanes take dimensions, a butterfly sum per head, the heads summed in order; the same order
// for every key, so equal operands give equal scores. The magnitude likewise in double.
__global__ void key_scores_kernel(KeyScoresLaunch a) {
  const int64_t n = int64_t(blockIdx.x) * kWarpsPerCta + threadIdx.x / 32;
  const int lane = int(threadIdx.x % 32);
  if (n >= a.count) return;
  const int64_t s = a.positions != nullptr ? a.positions[n] : a.from + n;
  const float* k = a.keys + s * a.dim;
  float sum = 0;
  double magnitude = 0;
  for (int h = 0; h < a.heads; ++h) {
    const float* q = a.q + int64_t(h) * a.dim;
    float dot = 0;
    double abs_dot = 0;
    for (int d = lane; d < a.dim; d += 32) {
      dot = fmaf(q[d], k[d], dot);
      if (a.magnitudes != nullptr) abs_dot += fabs(double(q[d]) * double(k[d]));
    }
    for (int offset = 16; offset > 0; offset /= 2) dot += __shfl_xor_sync(0xffffffffu, dot, offset);
    sum = fmaf(a.w[h], fmaxf(dot, 0.0f), sum);
    if (a.magnitudes != nullptr) magnitude += fabs(double(a.w[h])) * warp_sum(abs_dot);
  }
  const float score = a.scales[s] * sum;
  if (lane != 0) return;
  a.out[n] = isnan(score) ? -INFINITY : score;
  if (a.magnitudes != nullptr) a.magnitudes[n] = magnitude * fabs(double(a.scales[s]));
}

}  // namespace

void launch_block_summary(const BlockSummaryLaunch& a, cudaStream_t stream) {
  if (a.blocks == 0) return;
  block_summary_kernel<<<unsigned(a.blocks), kSummaryThreads, size_t(a.dim) * sizeof(float), stream>>>(a);
  HISA_CUDA_CHECK(cudaGetLastError());
}

void launch_block_bounds(const BlockBoundLaunch& a, cudaStream_t stream) {
  if (a.rows == 0 || a.max_blocks == 0) return;
  const int groups = std::min((a.max_blocks + kWarpsPerCta - 1) / kWarpsPerCta, 65535);
  const dim3 grid(unsigned(a.rows), unsigned(groups));
  block_bound_kernel<<<grid, 32 * kWarpsPerCta, 0, stream>>>(a);
  HISA_CUDA_CHECK(cudaGetLastError());
}

void launch_key_scores(const KeyScoresLaunch& a, cudaStream_t stream) {
  if (a.count == 0) return;
  key_scores_kernel<<<unsigned((a.count + kWarpsPerCta - 1) / kWarpsPerCta), 32 * kWarpsPerCta, 0, stream>>>(a);
  HISA_CUDA_CHECK(cudaGetLastError());
}

}  // namespace hisa::cuda
