// Exact top-k per row and softmax masses on the GPU.
//
// Top-k follows src/select/topk.cpp exactly: an MSD radix select over order-preserving uint32 keys finds the
// k-th best key τ (8-bit digits; once the digit's bucket holds few enough keys they are gathered into shared
// memory and the remaining digits are resolved there, otherwise the row is re-read — no candidate is ever
// dropped), then one pass in position order keeps every key above τ and the first `need` keys equal to τ,
// which is the tie rule (equal scores by lower position), and writes them ascending. Block-wide scans place
// each kept element, so the output is deterministic; atomics only count.
#include <cub/block/block_scan.cuh>

#include <cstdint>

#include "cuda/cuda_check.hpp"
#include "cuda/device_util.cuh"
#include "cuda/kernels.hpp"

namespace hisa::cuda {

namespace {

constexpr int kTopkThreads = 512;
constexpr int kTopkItems = 4;   // consecutive elements per thread in the collecting pass
constexpr int kCandidates = 8192;  // shared-memory candidates (32 KB)

__global__ void __launch_bounds__(kTopkThreads) topk_kernel(const TopkLaunch a) {
  using Scan = cub::BlockScan<uint32_t, kTopkThreads>;
  __shared__ typename Scan::TempStorage scan_storage;
  __shared__ uint32_t hist[256];
  __shared__ uint32_t cand[kCandidates];
  __shared__ uint32_t ncand, sh_bin, sh_krem, sh_cnt;

  const int r = int(blockIdx.x), tid = int(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  const int j0 = a.seg_offsets[r], j1 = a.seg_offsets[r + 1];
  const size_t row = size_t(r) * size_t(a.stride);
  auto score_at = [&](int s) { return a.scores[row + size_t(s - a.base)]; };
  int n = 0;
  for (int j = j0; j < j1; ++j) n += a.segments[2 * j + 1] - a.segments[2 * j] + 1;
  int* out_pos = a.out_pos + size_t(r) * a.k;
  float* out_score = a.out_score + size_t(r) * a.k;

  if (n <= a.k) {  // every candidate is kept
    int off = 0;
    for (int j = j0; j < j1; ++j) {
      const int sa = a.segments[2 * j], len = a.segments[2 * j + 1] - sa + 1;
      for (int t = tid; t < len; t += kTopkThreads) {
        out_pos[off + t] = sa + t;
        out_score[off + t] = score_at(sa + t);
      }
      off += len;
    }
    if (tid == 0) a.out_count[r] = n;
    return;
  }

  // Applies f(key) to every candidate of the row (any order).
  auto for_each_key = [&](auto&& f) {
    for (int j = j0; j < j1; ++j) {
      const int sa = a.segments[2 * j], sz = a.segments[2 * j + 1];
      for (int s = sa + tid; s <= sz; s += kTopkThreads) f(order_key(score_at(s)));
    }
  };

  uint32_t prefix = 0, pmask = 0, krem = uint32_t(a.k);
  bool in_shared = false;
  for (int pass = 0; pass < 4; ++pass) {
    const int shift = 24 - 8 * pass;
    for (int b = tid; b < 256; b += kTopkThreads) hist[b] = 0;
    __syncthreads();
    auto count = [&](uint32_t u) {
      if ((u & pmask) == prefix) atomicAdd(&hist[(u >> shift) & 255u], 1u);
    };
    if (in_shared) {
      for (uint32_t t = tid; t < ncand; t += kTopkThreads) count(cand[t]);
    } else {
      for_each_key(count);
    }
    __syncthreads();
    if (warp == 0) {
      // Lane l sums bins 255-8l .. 248-8l (descending); a scan over lanes gives the count above each group.
      uint32_t sum8 = 0;
      for (int j = 0; j < 8; ++j) sum8 += hist[255 - lane * 8 - j];
      uint32_t incl = sum8;
      for (int off = 1; off < 32; off <<= 1) {
        const uint32_t t = __shfl_up_sync(0xffffffffu, incl, off);
        if (lane >= off) incl += t;
      }
      uint32_t above = incl - sum8;
      if (above < krem && krem <= incl) {  // exactly one lane: the group holding the krem-th best key
        for (int j = 0; j < 8; ++j) {
          const uint32_t b = 255 - lane * 8 - j, h = hist[b];
          if (above + h >= krem) {
            sh_bin = b;
            sh_krem = krem - above;
            sh_cnt = h;
            break;
          }
          above += h;
        }
      }
    }
    __syncthreads();
    prefix |= sh_bin << shift;
    pmask |= 0xFFu << shift;
    krem = sh_krem;
    if (!in_shared && pass < 2 && sh_cnt <= uint32_t(kCandidates)) {
      // The bucket is small: gather it once and finish the select in shared memory. The gathering order
      // does not matter (only counts are taken from it).
      if (tid == 0) ncand = 0;
      __syncthreads();
      for_each_key([&](uint32_t u) {
        if ((u & pmask) == prefix) cand[atomicAdd(&ncand, 1u)] = u;
      });
      __syncthreads();
      in_shared = true;
    }
  }
  const uint32_t tau = prefix;  // the k-th best key
  const uint32_t need = krem;   // how many keys equal to tau are kept (the lowest positions)
  const uint32_t k = uint32_t(a.k);

  // Collect in position order. Each thread takes kTopkItems consecutive elements; one scan of packed
  // (above, equal) counts gives every element its output slot = #above before + min(#equal before, need).
  uint32_t run_gt = 0, run_eq = 0;
  for (int j = j0; j < j1 && run_gt + min(run_eq, need) < k; ++j) {
    const int sa = a.segments[2 * j], sz = a.segments[2 * j + 1];
    for (int t0 = sa; t0 <= sz && run_gt + min(run_eq, need) < k; t0 += kTopkThreads * kTopkItems) {
      uint32_t keys[kTopkItems];
      float vals[kTopkItems];
      uint32_t gt = 0, eq = 0;
#pragma unroll
      for (int it = 0; it < kTopkItems; ++it) {
        const int p = t0 + tid * kTopkItems + it;
        vals[it] = p <= sz ? score_at(p) : 0.f;
        keys[it] = order_key(vals[it]);
        if (p <= sz) {
          gt += keys[it] > tau;
          eq += keys[it] == tau;
        }
      }
      uint32_t excl = 0, total = 0;
      Scan(scan_storage).ExclusiveSum(gt | (eq << 16), excl, total);  // at most 2048 of each per tile
      uint32_t eg = run_gt + (excl & 0xFFFFu), ee = run_eq + (excl >> 16);
#pragma unroll
      for (int it = 0; it < kTopkItems; ++it) {
        const int p = t0 + tid * kTopkItems + it;
        if (p > sz) break;
        if (keys[it] > tau) {
          const uint32_t slot = eg + min(ee, need);
          out_pos[slot] = p;
          out_score[slot] = vals[it];
          ++eg;
        } else if (keys[it] == tau) {
          if (ee < need) {
            out_pos[eg + ee] = p;
            out_score[eg + ee] = vals[it];
          }
          ++ee;
        }
      }
      run_gt += total & 0xFFFFu;
      run_eq += total >> 16;
      __syncthreads();  // scan_storage is reused
    }
  }
  if (tid == 0) a.out_count[r] = a.k;
}

// ---------------------------------------------------------------------------------------------------------
// Softmax masses. Sums in double with a fixed assignment of elements to threads and a fixed reduction tree,
// so the result never depends on scheduling.

constexpr int kMassThreads = 256;

__device__ double block_sum(double v, double* shared) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  double total = 0;
  for (int w = 0; w < kMassThreads / 32; ++w) total += shared[w];
  return total;
}

__device__ float block_max(float v, float* shared) {
  for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  float m = -INFINITY;
  for (int w = 0; w < kMassThreads / 32; ++w) m = fmaxf(m, shared[w]);
  return m;
}

__global__ void __launch_bounds__(kMassThreads) masses_kernel(const MassLaunch a) {
  __shared__ double dsh[kMassThreads / 32];
  __shared__ float fsh[kMassThreads / 32];
  const int r = int(blockIdx.x), tid = int(threadIdx.x);
  const size_t row = size_t(r) * size_t(a.stride);
  auto score_at = [&](int s) { return a.scores[row + size_t(s - a.base)]; };
  const int lo = a.lo[r], hi = a.hi[r];
  float m = -INFINITY;
  for (int s = lo + tid; s <= hi; s += kMassThreads) m = fmaxf(m, score_at(s));
  m = block_max(m, fsh);
  const double M = double(m);
  // As softmax_term (select/engine.hpp): a score equal to the maximum counts 1, also when both are infinite.
  auto term = [&](int s) { const float x = score_at(s); return x == m ? 1.0 : exp(double(x) - M); };

  double v = 0;
  for (int s = lo + tid; s <= hi; s += kMassThreads) v += term(s);
  const double visible = block_sum(v, dsh);
  double list[2] = {0, 0};
  const int* pos[2] = {a.a_pos, a.b_pos};
  const int* cnt[2] = {a.a_count, a.b_count};
  for (int l = 0; l < 2; ++l) {
    if (pos[l] == nullptr) continue;
    v = 0;
    for (int j = tid; j < cnt[l][r]; j += kMassThreads) v += term(pos[l][size_t(r) * a.width + j]);
    list[l] = block_sum(v, dsh);
  }
  double segs = 0;
  if (a.c_segments != nullptr) {
    v = 0;
    for (int j = a.c_offsets[r]; j < a.c_offsets[r + 1]; ++j) {
      for (int s = a.c_segments[2 * j] + tid; s <= a.c_segments[2 * j + 1]; s += kMassThreads) v += term(s);
    }
    segs = block_sum(v, dsh);
  }
  if (tid == 0) {
    a.out_max[r] = m;
    a.out_mass[4 * size_t(r) + 0] = visible;
    a.out_mass[4 * size_t(r) + 1] = list[0];
    a.out_mass[4 * size_t(r) + 2] = list[1];
    a.out_mass[4 * size_t(r) + 3] = segs;
  }
}

}  // namespace

void launch_topk(const TopkLaunch& a, cudaStream_t stream) {
  if (a.rows <= 0) return;
  if (a.k <= 0) throw CudaError("top-k kernel: k must be positive");
  topk_kernel<<<unsigned(a.rows), kTopkThreads, 0, stream>>>(a);
  HISA_CUDA_CHECK_LAUNCH("topk_kernel");
}

std::string kernel_image_problem(int device) {
  int previous = 0;
  if (cudaGetDevice(&previous) != cudaSuccess) previous = 0;
  std::string problem;
  cudaError_t err = cudaSetDevice(device);
  cudaFuncAttributes attributes{};
  if (err == cudaSuccess) err = cudaFuncGetAttributes(&attributes, topk_kernel);
  if (err != cudaSuccess) {
    problem = std::string(cudaGetErrorName(err)) + " (" + cudaGetErrorString(err) + ")";
    cudaGetLastError();  // clear it
  }
  cudaSetDevice(previous);
  return problem;
}

void launch_masses(const MassLaunch& a, cudaStream_t stream) {
  if (a.rows <= 0) return;
  masses_kernel<<<unsigned(a.rows), kMassThreads, 0, stream>>>(a);
  HISA_CUDA_CHECK_LAUNCH("masses_kernel");
}

}  // namespace hisa::cuda
