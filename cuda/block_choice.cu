// HISA's block stage on the GPU (block_choice.hpp).
//
// keep(): keep_blocks is "top-m' of some candidate blocks, plus the forced ones", so the exact top-k kernel
// (topk.cu, the project's tie rule) picks the candidates: in-budget, the interior blocks (first, last) with
// m' = m - 2; extra, every eligible block with m' = m. One thread per row then merges the forced blocks in.
// Rows with at most m eligible blocks keep them all, as keep_blocks does.
//
// token_work(): one thread per (row, kept slot) writes the block's visible token segment and ORs its 64-key
// units into the row's mask; then per score-kernel tile the rows whose mask touches it are counted, the counts
// scanned (one CTA) and the rows listed (atomics place them, so the order inside a tile's list varies between
// runs; no score depends on that order, each (query, key) pair is computed alone).
#include <cub/block/block_scan.cuh>

#include <algorithm>
#include <string>

#include "cuda/block_choice.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/score_common.cuh"

namespace hisa::cuda {

namespace {

constexpr int kThreads = 256;
unsigned blocks_for(int64_t n) { return unsigned((n + kThreads - 1) / kThreads); }

// Queries per CTA of the token stage, from the bound on listed (tile, query) pairs: about 16 CTAs per
// multiprocessor, 8 to 32 queries each. On an H200 (tests/bench/NOTES.md) a fixed 8 cost the 64K prefill's
// token stage 31.2 ms against 27.6 with 32, while 32 made sampled decode (256 queries) 15-20 % slower than 8-16.
int token_rows_per_cta(int64_t listed_bound) {
  const int64_t per = listed_bound / (16LL * detail::multiprocessors());
  return int(std::clamp<int64_t>(per, 8, 32));
}

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

// Whether row i needs tile t: any of its `units` 64-key units (1, 2 or 4: never across a mask word) is in the
// mask.
__device__ __forceinline__ bool tile_needed(const uint32_t* mask, int words, int units, int i, int t) {
  const int u = units * t;
  return (mask[size_t(i) * words + (u >> 5)] >> (u & 31)) & ((1u << units) - 1u);
}

__global__ void tile_count_kernel(int rows, int tiles, const uint32_t* mask, int words, int units, int* count) {
  const int64_t idx = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (idx >= int64_t(rows) * tiles) return;
  const int i = int(idx / tiles), t = int(idx - int64_t(i) * tiles);
  if (tile_needed(mask, words, units, i, t)) atomicAdd(&count[t], 1);
}

// One CTA: exclusive sums of the per-tile row counts (list offsets) and of the per-tile CTA counts
// ⌈count / per_cta⌉ (CTA offsets), tiles + 1 entries each (the last is the total); one launch where two device
// scans would take four.
constexpr int kScanThreads = 1024;
__global__ void __launch_bounds__(kScanThreads) tile_offsets_kernel(int tiles, const int* count, int per_cta,
                                                                    int* list_offs, int* cta_offs) {
  using Scan = cub::BlockScan<int, kScanThreads>;
  __shared__ typename Scan::TempStorage temp;
  int list_carry = 0, cta_carry = 0;
  for (int t0 = 0; t0 <= tiles; t0 += kScanThreads) {
    const int t = t0 + int(threadIdx.x);
    const int rows = t < tiles ? count[t] : 0, ctas = (rows + per_cta - 1) / per_cta;
    int rows_before = 0, rows_total = 0, ctas_before = 0, ctas_total = 0;
    Scan(temp).ExclusiveSum(rows, rows_before, rows_total);
    __syncthreads();
    Scan(temp).ExclusiveSum(ctas, ctas_before, ctas_total);
    __syncthreads();
    if (t <= tiles) {
      list_offs[t] = list_carry + rows_before;
      cta_offs[t] = cta_carry + ctas_before;
    }
    list_carry += rows_total;
    cta_carry += ctas_total;
  }
}

__global__ void tile_fill_kernel(int rows, int tiles, const uint32_t* mask, int words, int units, const int* offs,
                                 int* cursor, int* list) {
  const int64_t idx = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (idx >= int64_t(rows) * tiles) return;
  const int i = int(idx / tiles), t = int(idx - int64_t(i) * tiles);
  if (tile_needed(mask, words, units, i, t)) list[offs[t] + atomicAdd(&cursor[t], 1)] = i;
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

void BlockChoice::token_work(const int* lo, const int* hi, int64_t B, int range_lo, int range_hi, int tile_keys,
                             cudaStream_t s) {
  if (tile_keys != kMaskUnit && tile_keys != 2 * kMaskUnit) {  // the score kernels' 64- and 128-key tiles
    throw CudaError("block choice: tiles of " + std::to_string(tile_keys) + " keys");
  }
  const int unit_base = mask_unit_base(range_lo), units = tile_keys / kMaskUnit;
  words_ = mask_words(range_lo, range_hi);
  tile_keys_ = tile_keys;
  tiles_ = (range_hi - unit_base * kMaskUnit) / tile_keys + 1;  // tiles start at the mask's first unit
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
  counters_.resize(size_t(2 * tiles_));  // per tile: rows that need it, then the fill cursor
  list_offs_.resize(size_t(tiles_ + 1));
  cta_offs_.resize(size_t(tiles_ + 1));
  int* count = counters_.data();
  int* cursor = counters_.data() + tiles_;
  HISA_CUDA_CHECK(cudaMemsetAsync(counters_.data(), 0, counters_.size() * sizeof(int), s));
  tile_count_kernel<<<blocks_for(pairs), kThreads, 0, s>>>(rows_, tiles_, mask_.data(), words_, units, count);
  HISA_CUDA_CHECK_LAUNCH("tile_count_kernel");
  // A row's kept blocks touch at most cap · (⌊(B - 1)/tile⌋ + 2) tiles, and never more than all of them.
  const int64_t per_row = std::min<int64_t>(tiles_, int64_t(cap_) * ((B - 1) / tile_keys + 2));
  const int64_t listed_bound = int64_t(rows_) * per_row;
  rows_per_cta_ = token_rows_per_cta(listed_bound);
  tile_offsets_kernel<<<1, kScanThreads, 0, s>>>(tiles_, count, rows_per_cta_, list_offs_.data(), cta_offs_.data());
  HISA_CUDA_CHECK_LAUNCH("tile_offsets_kernel");
  list_rows_.resize(size_t(std::max<int64_t>(1, listed_bound)));
  tile_fill_kernel<<<blocks_for(pairs), kThreads, 0, s>>>(rows_, tiles_, mask_.data(), words_, units,
                                                          list_offs_.data(), cursor, list_rows_.data());
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
  a.list_tile_keys = tile_keys_;
}

}  // namespace hisa::cuda
