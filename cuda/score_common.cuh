#pragma once
// What the tensor-core scoring kernels share: score.cu (mma.sync, any padded shape) and score_wgmma.cu
// (wgmma on sm_90a for the common shapes). Both take the keys of one tile against a run of queries; a tile
// starts at range_lo's 128-key boundary plus a multiple of the kernel's tile size.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "cuda/cuda_check.hpp"
#include "cuda/kernels.hpp"

namespace hisa::cuda::detail {

constexpr int kMmaTile = 128;    // keys per CTA of the mma.sync kernel (2 mask units)
constexpr int kWgmmaTile = 128;  // keys per CTA of the wgmma kernel (one warpgroup)

// The launch's first tile starts here (the mask's first unit, see mask_unit_base).
__host__ __device__ inline int tile_origin(const ScoreLaunch& a) { return (a.range_lo / kMmaTile) * kMmaTile; }
__host__ __device__ inline int tile_count(const ScoreLaunch& a, int tile_keys) {
  return (a.range_hi - tile_origin(a)) / tile_keys + 1;
}

// Whether query i wants 64-key unit `unit` (absolute); every unit when there is no mask. The unit must lie in
// the launch's range.
__device__ __forceinline__ bool unit_wanted(const ScoreLaunch& a, int query, int unit) {
  if (a.mask == nullptr) return true;
  const int u = unit - a.unit_base;
  return (a.mask[size_t(query) * a.mask_words + (u >> 5)] >> (u & 31)) & 1u;
}

__device__ __forceinline__ uint32_t load_pair(const uint16_t* p) { return __ldg(reinterpret_cast<const unsigned*>(p)); }

// A fragments of MT 16-row key tiles in the register layout of mma.sync m16n8k16 and of wgmma's A per warp:
// tile mt holds key rows first + mt·step + {g, g + 8}; a0 = (row g, cols 2c, 2c+1), a1 = (row g+8, same),
// a2 = (row g, cols 2c+8, 2c+9), a3 = (row g+8, same) of each 16-column k-step. Rows past key_count are zero.
template <int MT, int KS>
__device__ __forceinline__ void load_key_fragments(uint32_t (&af)[MT][KS][4], const uint16_t* keys, int key_count,
                                                   int row_len, int first, int step, int g, int c) {
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
    const int r0 = first + mt * step + g, r1 = r0 + 8;
    const bool ok0 = r0 < key_count, ok1 = r1 < key_count;
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
      const int col = ks * 16 + 2 * c;
      af[mt][ks][0] = ok0 ? load_pair(keys + size_t(r0) * row_len + col) : 0u;
      af[mt][ks][1] = ok1 ? load_pair(keys + size_t(r1) * row_len + col) : 0u;
      af[mt][ks][2] = ok0 ? load_pair(keys + size_t(r0) * row_len + col + 8) : 0u;
      af[mt][ks][3] = ok1 ? load_pair(keys + size_t(r1) * row_len + col + 8) : 0u;
    }
  }
}

// What one CTA scores: the tile starting at key tile_lo against entries [begin, end) (queries, or indices into
// list_rows). Without work lists the grid is (tiles, query groups); with them it is one-dimensional and CTA g
// finds its tile t by binary search in cta_offsets (the last t with cta_offsets[t] <= g).
struct CtaWork {
  int tile_lo = 0, begin = 0, end = 0;
};
__device__ __forceinline__ CtaWork cta_work(const ScoreLaunch& a, int queries_per_cta, int tile_keys) {
  CtaWork w;
  if (a.list_rows == nullptr) {
    w.tile_lo = tile_origin(a) + int(blockIdx.x) * tile_keys;
    w.begin = int(blockIdx.y) * queries_per_cta;
    w.end = min(a.queries, w.begin + queries_per_cta);
    return w;
  }
  const int tiles = tile_count(a, tile_keys), g = int(blockIdx.x);
  if (g >= a.cta_offsets[tiles]) return w;
  int lo = 0, hi = tiles - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (a.cta_offsets[mid] <= g) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  w.tile_lo = tile_origin(a) + lo * tile_keys;
  w.begin = a.list_offsets[lo] + (g - a.cta_offsets[lo]) * a.rows_per_cta;
  w.end = min(a.list_offsets[lo + 1], w.begin + a.rows_per_cta);
  return w;
}

inline int multiprocessors() {
  int device = 0, sms = 0;
  HISA_CUDA_CHECK(cudaGetDevice(&device));
  HISA_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return sms;
}

inline size_t optin_smem() {
  int device = 0, bytes = 0;
  HISA_CUDA_CHECK(cudaGetDevice(&device));
  HISA_CUDA_CHECK(cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  return size_t(bytes);
}

// Queries per CTA: enough CTAs for several waves, while each CTA still reuses its keys over many queries.
inline int queries_per_cta(int queries, int tiles) {
  const long long want = 8LL * multiprocessors();
  const long long per = (static_cast<long long>(queries) * tiles + want - 1) / want;
  return int(std::clamp<long long>(per, 1, 64));
}

// The wgmma kernel (score_wgmma.cu), for launches that wgmma_takes() on devices whose score_device() has wgmma.
void launch_wgmma(const ScoreLaunch& a, cudaStream_t stream);
// Its tile: 128 keys, or 64 for BF16x3 (whose longer K leaves registers for one 64-key M tile per warpgroup).

}  // namespace hisa::cuda::detail
