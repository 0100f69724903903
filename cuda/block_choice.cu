// HISA's block stage on the GPU (block_choice.hpp).
//
// keep(): keep_blocks is "top-m' of some candidate blocks, plus the forced ones", so the exact top-k kernel
// (topk.cu, the project's tie rule) picks the candidates: in-budget, the interior blocks (first, last) with
// m' = m - 2; extra, every eligible block with m' = m. One thread per row then merges the forced blocks in.
// Rows with at most m eligible blocks keep them all, as keep_blocks does.
//
// token_work(): one thread per (row, kept slot) writes the block's visible token segment and ORs its 64-key
// units into the row's mask; then per 128-key tile the rows whose mask touches it are counted, the counts
// scanned (CUB) and the rows listed (atomics place them, so the order inside a tile's list varies between
// runs; no score depends on that order, each (query, key) pair is computed alone).
#include <cub/device/device_scan.cuh>

#include <algorithm>

#include "cuda/block_choice.hpp"
#include "cuda/cuda_check.hpp"

namespace hisa::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kTile = 2 * kMaskUnit;  // keys per tile of the tensor-core score kernel
constexpr int kRowsPerCta = 8;        // queries per CTA of the token stage

unsigned blocks_for(int64_t n) { return unsigned((n + kThreads - 1) / kThreads); }

__global__ void candidate_segments_kernel(const BlockRows r, bool extra, int* segs, int* offs) {
  const int i = blockIdx.x * kThreads + threadIdx.x;
  if (i > r.rows) return;
  offs[i] = i;
  if (i == r.rows) return;
  const int first = r.first[i], last = r.last[i];
  // In-budget: the interior blocks; empty (length 0) when there are none.
  segs[2 * i] = extra ? first : first + 1;
  segs[2 * i + 1] = extra ? last : max(last - 1, first);
}

__global__ void assemble_kept_kernel(const BlockRows r, int m, bool extra, const int* top, const int* top_count,
                                     int top_width, int cap, int* kept, int* count) {
  const int i = blockIdx.x * kThreads + threadIdx.x;
  if (i >= r.rows) return;
  const int first = r.first[i], last = r.last[i], n = last - first + 1;
  int* out = kept + size_t(i) * cap;
  int c = 0;
  if (n <= m) {
    for (int b = first; b <= last; ++b) out[c++] = b;
  } else {
    // n > m >= 1, so n >= 2: two forced blocks, the lowest and the highest eligible one.
    out[c++] = first;
    if (top != nullptr) {
      const int* t = top + size_t(i) * top_width;
      for (int j = 0; j < top_count[i]; ++j) {
        if (t[j] != first && t[j] != last) out[c++] = t[j];
      }
    }
    if (extra || m >= 2) out[c++] = last;
  }
  count[i] = c;
}

__global__ void kept_segments_kernel(int rows, int cap, const int* kept, const int* count, const int* lo,
                                     const int* hi, int64_t B, int unit_base, int words, int* segs, int* offs,
                                     uint32_t* mask) {
  const int64_t idx = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (idx >= int64_t(rows) * cap) return;
  const int i = int(idx / cap), slot = int(idx - int64_t(i) * cap);
  if (slot == 0) {
    offs[i] = i * cap;
    if (i == rows - 1) offs[rows] = rows * cap;
  }
  int a = 0, z = -1;  // an empty segment
  if (slot < count[i]) {
    const int64_t b = kept[idx];
    a = int(max(b * B, int64_t(lo[i])));
    z = int(min(b * B + B - 1, int64_t(hi[i])));
    for (int u = a / kMaskUnit; u <= z / kMaskUnit; ++u) {
      const int bit = u - unit_base;
      atomicOr(&mask[size_t(i) * words + (bit >> 5)], 1u << (bit & 31));
    }
  }
  segs[2 * idx] = a;
  segs[2 * idx + 1] = z;
}

// Whether row i needs tile t: either of its two 64-key units is in the mask.
__device__ __forceinline__ bool tile_needed(const uint32_t* mask, int words, int i, int t) {
  return (mask[size_t(i) * words + ((2 * t) >> 5)] >> ((2 * t) & 31)) & 3u;
}

__global__ void tile_count_kernel(int rows, int tiles, const uint32_t* mask, int words, int* count) {
  const int64_t idx = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (idx >= int64_t(rows) * tiles) return;
  const int i = int(idx / tiles), t = int(idx - int64_t(i) * tiles);
  if (tile_needed(mask, words, i, t)) atomicAdd(&count[t], 1);
}

__global__ void tile_ctas_kernel(int tiles, const int* count, int per_cta, int* ctas) {
  const int t = blockIdx.x * kThreads + threadIdx.x;
  if (t <= tiles) ctas[t] = t < tiles ? (count[t] + per_cta - 1) / per_cta : 0;
}

__global__ void tile_fill_kernel(int rows, int tiles, const uint32_t* mask, int words, const int* offs, int* cursor,
                                 int* list) {
  const int64_t idx = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (idx >= int64_t(rows) * tiles) return;
  const int i = int(idx / tiles), t = int(idx - int64_t(i) * tiles);
  if (tile_needed(mask, words, i, t)) list[offs[t] + atomicAdd(&cursor[t], 1)] = i;
}

}  // namespace

void BlockChoice::keep(const BlockRows& r, int m, bool forced_extra, cudaStream_t s) {
  rows_ = r.rows;
  cap_ = capacity(m);
  kept_.resize(size_t(std::max(1, rows_ * cap_)));
  count_.resize(size_t(std::max(1, rows_)));
  if (rows_ <= 0) return;
  const int candidates = forced_extra ? m : m - 2;  // top-k's k; in-budget with m <= 2 keeps forced blocks only
  if (candidates > 0) {
    cand_segs_.resize(size_t(2 * rows_));
    cand_offs_.resize(size_t(rows_ + 1));
    candidate_segments_kernel<<<blocks_for(rows_ + 1), kThreads, 0, s>>>(r, forced_extra, cand_segs_.data(),
                                                                         cand_offs_.data());
    HISA_CUDA_CHECK_LAUNCH("candidate_segments_kernel");
    top_pos_.resize(size_t(rows_) * candidates);
    top_score_.resize(size_t(rows_) * candidates);
    top_count_.resize(size_t(rows_));
    TopkLaunch t;
    t.scores = r.j;
    t.stride = r.stride;
    t.base = r.base;
    t.segments = cand_segs_.data();
    t.seg_offsets = cand_offs_.data();
    t.rows = rows_;
    t.k = candidates;
    t.out_pos = top_pos_.data();
    t.out_score = top_score_.data();
    t.out_count = top_count_.data();
    launch_topk(t, s);
  }
  assemble_kept_kernel<<<blocks_for(rows_), kThreads, 0, s>>>(r, m, forced_extra,
                                                              candidates > 0 ? top_pos_.data() : nullptr,
                                                              top_count_.data(), std::max(candidates, 0), cap_,
                                                              kept_.data(), count_.data());
  HISA_CUDA_CHECK_LAUNCH("assemble_kept_kernel");
}

void BlockChoice::token_work(const int* lo, const int* hi, int64_t B, int range_lo, int range_hi, cudaStream_t s) {
  const int unit_base = mask_unit_base(range_lo);
  words_ = mask_words(range_lo, range_hi);
  tiles_ = range_hi / kTile - range_lo / kTile + 1;
  const int64_t slots = int64_t(rows_) * cap_;
  segs_.resize(size_t(std::max<int64_t>(2, 2 * slots)));
  seg_offs_.resize(size_t(rows_ + 1));
  mask_.resize(size_t(std::max(1, rows_ * words_)));
  if (rows_ <= 0) return;
  HISA_CUDA_CHECK(cudaMemsetAsync(mask_.data(), 0, mask_.size() * sizeof(uint32_t), s));
  kept_segments_kernel<<<blocks_for(slots), kThreads, 0, s>>>(rows_, cap_, kept_.data(), count_.data(), lo, hi, B,
                                                              unit_base, words_, segs_.data(), seg_offs_.data(),
                                                              mask_.data());
  HISA_CUDA_CHECK_LAUNCH("kept_segments_kernel");

  const int64_t pairs = int64_t(rows_) * tiles_;
  tile_rows_count_.resize(size_t(tiles_ + 1));
  tile_ctas_.resize(size_t(tiles_ + 1));
  list_offs_.resize(size_t(tiles_ + 1));
  cta_offs_.resize(size_t(tiles_ + 1));
  cursor_.resize(size_t(tiles_));
  HISA_CUDA_CHECK(cudaMemsetAsync(tile_rows_count_.data(), 0, size_t(tiles_ + 1) * sizeof(int), s));
  HISA_CUDA_CHECK(cudaMemsetAsync(cursor_.data(), 0, size_t(tiles_) * sizeof(int), s));
  tile_count_kernel<<<blocks_for(pairs), kThreads, 0, s>>>(rows_, tiles_, mask_.data(), words_, tile_rows_count_.data());
  HISA_CUDA_CHECK_LAUNCH("tile_count_kernel");
  rows_per_cta_ = kRowsPerCta;
  tile_ctas_kernel<<<blocks_for(tiles_ + 1), kThreads, 0, s>>>(tiles_, tile_rows_count_.data(), rows_per_cta_,
                                                               tile_ctas_.data());
  HISA_CUDA_CHECK_LAUNCH("tile_ctas_kernel");
  size_t temp = 0;
  HISA_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(nullptr, temp, tile_rows_count_.data(), list_offs_.data(), tiles_ + 1, s));
  scan_temp_.resize(std::max<size_t>(temp, 1));
  HISA_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(scan_temp_.data(), temp, tile_rows_count_.data(), list_offs_.data(), tiles_ + 1, s));
  HISA_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(nullptr, temp, tile_ctas_.data(), cta_offs_.data(), tiles_ + 1, s));
  scan_temp_.resize(std::max<size_t>(temp, 1));
  HISA_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(scan_temp_.data(), temp, tile_ctas_.data(), cta_offs_.data(), tiles_ + 1, s));
  // A row's kept blocks touch at most cap · (⌊(B - 1)/128⌋ + 2) tiles, and never more than all of them.
  const int64_t per_row = std::min<int64_t>(tiles_, int64_t(cap_) * ((B - 1) / kTile + 2));
  const int64_t listed_bound = int64_t(rows_) * per_row;
  list_rows_.resize(size_t(std::max<int64_t>(1, listed_bound)));
  tile_fill_kernel<<<blocks_for(pairs), kThreads, 0, s>>>(rows_, tiles_, mask_.data(), words_, list_offs_.data(),
                                                          cursor_.data(), list_rows_.data());
  HISA_CUDA_CHECK_LAUNCH("tile_fill_kernel");
  cta_bound_ = int((listed_bound + rows_per_cta_ - 1) / rows_per_cta_ + tiles_);
}

void BlockChoice::describe_work(ScoreLaunch& a) const {
  a.mask = mask_.data();
  a.mask_words = words_;
  a.list_offsets = list_offs_.data();
  a.list_rows = list_rows_.data();
  a.cta_offsets = cta_offs_.data();
  a.rows_per_cta = rows_per_cta_;
  a.cta_bound = cta_bound_;
}

}  // namespace hisa::cuda
