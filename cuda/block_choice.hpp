#pragma once
// HISA's block stage on the GPU (block_choice.cu), for select(): which blocks each query keeps, and from them
// the work of the token stage (top-k segments, 64-key unit masks, per 128-key tile the rows that need it), so
// that nothing goes back to the host between the block scores and the token top-k. Host-only header, part of
// hisa_cuda (plain pointers to device memory, no hisa_core types).
#include <cuda_runtime_api.h>

#include <cstdint>

#include "cuda/device_buffer.hpp"
#include "cuda/kernels.hpp"

namespace hisa::cuda {

// Block scores of a chunk's rows: block b of row r is j[r * stride + (b - base)]; the row's eligible blocks
// are [first[r], last[r]].
struct BlockRows {
  const float* j = nullptr;
  int64_t stride = 0;
  int base = 0;
  const int* first = nullptr;
  const int* last = nullptr;
  int rows = 0;
};

class BlockChoice {
 public:
  // keep_blocks (select/blocks.cpp) on every row, with the same result: the m best blocks by J (higher score,
  // then lower block), the first and last eligible block forced into the budget (InBudget) or added to it
  // (Extra). Kept blocks ascending, capacity(m) slots per row, their number in kept_count().
  void keep(const BlockRows& r, int m, bool forced_extra, cudaStream_t s);
  static int capacity(int m) { return m + 2; }
  const int* kept() const { return kept_.data(); }
  const int* kept_count() const { return count_.data(); }

  // From the kept blocks of the last keep(): per row the visible tokens [max(bB, lo), min(bB + B - 1, hi)] of
  // each kept block as top-k segments (capacity slots per row, unused ones empty), the 64-key units they touch
  // as the scoring mask over [range_lo, range_hi], and the score kernel's work lists (kernels.hpp) for tiles of
  // tile_keys keys (score_tile_keys of the launch). lo/hi: each row's visible token range.
  void token_work(const int* lo, const int* hi, int64_t B, int range_lo, int range_hi, int tile_keys, cudaStream_t s);
  const DeviceArray<int>& segments() const { return segs_; }
  const DeviceArray<int>& segment_offsets() const { return seg_offs_; }
  // Sets the mask and work-list fields of a score launch over [range_lo, range_hi].
  void describe_work(ScoreLaunch& a) const;

 private:
  int rows_ = 0, cap_ = 0, words_ = 0, tiles_ = 0, tile_keys_ = 0, rows_per_cta_ = 0, cta_bound_ = 0;
  DeviceArray<int> cand_segs_, cand_offs_, top_pos_, top_count_, kept_, count_;
  DeviceArray<float> top_score_;
  DeviceArray<int> segs_, seg_offs_;
  DeviceArray<uint32_t> mask_;
  DeviceArray<int> counters_, list_offs_, cta_offs_, list_rows_;
};

}  // namespace hisa::cuda
