// Exact top-k per row and softmax masses on the GPU.
//
// Top-k follows src/select/topk.cpp exactly: an MSD radix select over order-preserving uint32 keys finds the
// k-th best key τ (8-bit digits; once the digit's bucket holds few enough keys they are gathered into shared
// memory and the remaining digits are resolved there, otherwise the row is re-read — no candidate is ever
// dropped), then one pass in position order keeps every key above τ and the first `need` keys equal to τ,
// which is the tie rule (equal scores by lower position), and writes them ascending. Warp ballots and the
// warps' counts in warp order place each kept element, so the output is deterministic; atomics only count.
// A row of at most 8192 candidates (HISA's kept tokens) is read once into shared memory and every pass runs
// there. Long rows: every pass keeps several loads in flight per thread.
#include <cub/block/block_scan.cuh>

#include <cstdint>

#include "cuda/cuda_check.hpp"
#include "cuda/device_util.cuh"
#include "cuda/kernels.hpp"

namespace hisa::cuda {

namespace {

constexpr int kTopkThreads = 512;
constexpr int kTopkWarps = kTopkThreads / 32;
constexpr int kTopkUnroll = 4;     // loads in flight per lane in the collecting passes
constexpr int kLoadsInFlight = 4;  // independent loads per thread in the histogram pass over device memory
constexpr int kCandidates = 8192;  // shared-memory candidates: a row of at most this many is read once
constexpr size_t kTopkSmem = size_t(kCandidates) * 2 * sizeof(uint32_t);  // scores and positions (64 KB)
constexpr int kGatherKeys = 2 * kCandidates;  // a long row's cut-off bucket gathered into the same 64 KB: keys only
__global__ void __launch_bounds__(kTopkThreads) topk_kernel(const TopkLaunch a) {
  __shared__ uint32_t hist[256];
  __shared__ uint32_t ncand, sh_bin, sh_krem, sh_cnt;
  extern __shared__ uint32_t topk_smem[];
  uint32_t* cand = topk_smem;                                       // keys, or a short row's score bits
  int* cand_pos = reinterpret_cast<int*>(topk_smem + kCandidates);  // a short row's positions

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

  // A short row (HISA's kept tokens) is read once into shared memory, in position order; every pass below
  // then works there.
  const bool short_row = n <= kCandidates;
  if (short_row) {
    // Segments are taken kTopkThreads at a time: a block scan of their lengths places each, then the group's
    // elements are copied one per thread, each finding its segment by binary search over those places, so
    // one long segment (flat rows) and many short ones (HISA's m kept blocks) both spread over every thread.
    using SegmentScan = cub::BlockScan<int, kTopkThreads>;
    __shared__ typename SegmentScan::TempStorage segment_scan;
    __shared__ int segment_start[kTopkThreads];  // the group's segments' first elements, counted from the group's
    int carry = 0;
    for (int g0 = j0; g0 < j1; g0 += kTopkThreads) {
      const int j = g0 + tid, count = min(kTopkThreads, j1 - g0);
      const int len = j < j1 ? a.segments[2 * j + 1] - a.segments[2 * j] + 1 : 0;
      int before = 0, total = 0;
      SegmentScan(segment_scan).ExclusiveSum(len, before, total);
      segment_start[tid] = before;
      __syncthreads();
#pragma unroll 4
      for (int e = tid; e < total; e += kTopkThreads) {
        int lo = 0, hi = count - 1;  // the last segment starting at or before e (empty ones start where the next does)
        while (lo < hi) {
          const int mid = (lo + hi + 1) >> 1;
          if (segment_start[mid] <= e) {
            lo = mid;
          } else {
            hi = mid - 1;
          }
        }
        const int s = a.segments[2 * (g0 + lo)] + (e - segment_start[lo]);
        cand[carry + e] = __float_as_uint(score_at(s));
        cand_pos[carry + e] = s;
      }
      carry += total;
      __syncthreads();  // segment_start and segment_scan are reused; cand is complete after the last round
    }
  }

  // The histogram pass over device memory: kLoadsInFlight strided elements per thread per step, all loaded
  // before any is counted.
  auto count_row = [&](uint32_t prefix, uint32_t pmask, int shift) {
    for (int j = j0; j < j1; ++j) {
      const int sa = a.segments[2 * j], sz = a.segments[2 * j + 1];
      for (int s0 = sa; s0 <= sz; s0 += kTopkThreads * kLoadsInFlight) {
        float v[kLoadsInFlight];
#pragma unroll
        for (int it = 0; it < kLoadsInFlight; ++it) {
          const int s = s0 + it * kTopkThreads + tid;
          v[it] = s <= sz ? score_at(s) : 0.f;
        }
#pragma unroll
        for (int it = 0; it < kLoadsInFlight; ++it) {
          const int s = s0 + it * kTopkThreads + tid;
          const uint32_t u = order_key(v[it]);
          if (s <= sz && (u & pmask) == prefix) atomicAdd(&hist[(u >> shift) & 255u], 1u);
        }
      }
    }
  };

  uint32_t prefix = 0, pmask = 0, krem = uint32_t(a.k);
  bool in_shared = false;  // the candidates of the current bucket are in cand[0, ncand) (long rows)
  for (int pass = 0; pass < 4; ++pass) {
    const int shift = 24 - 8 * pass;
    for (int b = tid; b < 256; b += kTopkThreads) hist[b] = 0;
    __syncthreads();
    auto count = [&](uint32_t u) {
      if ((u & pmask) == prefix) atomicAdd(&hist[(u >> shift) & 255u], 1u);
    };
    if (short_row) {
      for (int t = tid; t < n; t += kTopkThreads) count(order_key(__uint_as_float(cand[t])));
    } else if (in_shared) {
      for (uint32_t t = tid; t < ncand; t += kTopkThreads) count(cand[t]);
    } else {
      count_row(prefix, pmask, shift);
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
    if (!short_row && !in_shared && pass < 2 && sh_cnt <= uint32_t(kGatherKeys)) {
      // The bucket is small: gather it once and finish the select in shared memory. The gathering order
      // does not matter (only counts are taken from it). Only keys are gathered, so the bucket may take the
      // whole buffer, positions' half included.
      if (tid == 0) ncand = 0;
      __syncthreads();
      for (int j = j0; j < j1; ++j) {
        const int sa = a.segments[2 * j], sz = a.segments[2 * j + 1];
        for (int s = sa + tid; s <= sz; s += kTopkThreads) {
          const uint32_t u = order_key(score_at(s));
          if ((u & pmask) == prefix) cand[atomicAdd(&ncand, 1u)] = u;
        }
      }
      __syncthreads();
      in_shared = true;
    }
  }
  const uint32_t tau = prefix;  // the k-th best key
  const uint32_t need = krem;   // how many keys equal to tau are kept (the lowest positions)
  const uint32_t k = uint32_t(a.k);

  // Collect in position order. Warp w takes candidates [w·chunk, (w+1)·chunk) of the row (segments
  // concatenated), lanes reading 32 consecutive ones at a time. A first pass counts its keys above τ and equal
  // to τ (ballots); the warps' counts, summed in warp order, say how many of each come before a warp's run;
  // a second pass gives every kept element its slot = #above before + min(#equal before, need), so the output
  // is ascending and the tie rule holds, with no block-wide synchronisation inside the passes.
  __shared__ uint32_t warp_gt[kTopkWarps], warp_eq[kTopkWarps];
  const int chunk = ((n + kTopkWarps - 1) / kTopkWarps + 31) & ~31;
  const int from = min(n, warp * chunk), to = min(n, from + chunk);
  // f(position, valid, score) for every candidate of the warp's run, kTopkUnroll·32 at a time with the loads
  // first; trip counts are warp-uniform (invalid lanes pass valid = false). Stops early when done() is true.
  auto walk = [&](auto&& done, auto&& f) {
    if (short_row) {
      for (int i0 = from; i0 < to && !done(); i0 += 32 * kTopkUnroll) {
        float v[kTopkUnroll];
        int p[kTopkUnroll];
#pragma unroll
        for (int u = 0; u < kTopkUnroll; ++u) {
          const int i = i0 + 32 * u + lane;
          v[u] = i < to ? __uint_as_float(cand[i]) : 0.f;
          p[u] = i < to ? cand_pos[i] : 0;
        }
#pragma unroll
        for (int u = 0; u < kTopkUnroll; ++u) f(p[u], i0 + 32 * u + lane < to, v[u]);
      }
      return;
    }
    int off = 0;  // candidate index of segment j's first position
    for (int j = j0; j < j1 && off < to && !done(); ++j) {
      const int sa = a.segments[2 * j], len = a.segments[2 * j + 1] - sa + 1;
      const int lo = max(from, off), hi = min(to, off + len);
      for (int i0 = lo; i0 < hi && !done(); i0 += 32 * kTopkUnroll) {
        float v[kTopkUnroll];
#pragma unroll
        for (int u = 0; u < kTopkUnroll; ++u) {
          const int i = i0 + 32 * u + lane;
          v[u] = i < hi ? score_at(sa + (i - off)) : 0.f;
        }
#pragma unroll
        for (int u = 0; u < kTopkUnroll; ++u) {
          const int i = i0 + 32 * u + lane;
          f(sa + (i - off), i < hi, v[u]);
        }
      }
      off += len;
    }
  };
  uint32_t gt = 0, eq = 0;
  walk([] { return false; }, [&](int, bool valid, float v) {
    const uint32_t u = order_key(v);
    gt += __popc(__ballot_sync(0xffffffffu, valid && u > tau));
    eq += __popc(__ballot_sync(0xffffffffu, valid && u == tau));
  });
  if (lane == 0) {
    warp_gt[warp] = gt;
    warp_eq[warp] = eq;
  }
  __syncthreads();
  uint32_t run_gt = 0, run_eq = 0;
  for (int w = 0; w < warp; ++w) {
    run_gt += warp_gt[w];
    run_eq += warp_eq[w];
  }
  const uint32_t before = (1u << lane) - 1u;
  walk([&] { return run_gt + min(run_eq, need) >= k; }, [&](int p, bool valid, float v) {
    const uint32_t u = order_key(v);
    const bool above = valid && u > tau, equal = valid && u == tau;
    const uint32_t ma = __ballot_sync(0xffffffffu, above), me = __ballot_sync(0xffffffffu, equal);
    const uint32_t ga = run_gt + __popc(ma & before), ge = run_eq + __popc(me & before);
    if (above) {
      const uint32_t slot = ga + min(ge, need);
      out_pos[slot] = p;
      out_score[slot] = v;
    } else if (equal && ge < need) {
      out_pos[ga + ge] = p;
      out_score[ga + ge] = v;
    }
    run_gt += __popc(ma);
    run_eq += __popc(me);
  });
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
  // Dynamic shared memory above 48 KB must be allowed on each device the kernel runs on.
  HISA_CUDA_CHECK(cudaFuncSetAttribute(topk_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(kTopkSmem)));
  topk_kernel<<<unsigned(a.rows), kTopkThreads, kTopkSmem, stream>>>(a);
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
