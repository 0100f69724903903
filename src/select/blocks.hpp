#pragma once
// HISA's block stage: pooled block keys and the choice of kept blocks (docs/definitions.md).
#include <cstdint>
#include <span>
#include <vector>

#include "io/dump_model.hpp"
#include "select/config.hpp"

namespace hisa {

// Pooled key of block b = mean of k[s]·k_scale[s] over the block's positions in the dump (a partial last
// block divides by its real count), summed in ascending position order in fp32. With PoolPrecision::Fp8
// the mean is re-quantised to e4m3 with scale max(absmax/448, 1e-10), and that scale multiplies the
// block's head sum just as k_scale does for tokens.
struct PooledKeys {
  int64_t block_size = 0;
  int64_t count = 0;  // ceil(L / B)
  int64_t dim = 0;
  std::vector<float> k;      // [count, dim]
  std::vector<float> scale;  // [count]; 1 for fp32 pooling
};

PooledKeys pool_keys(const LayerKeys& keys, int64_t block_size, PoolPrecision precision);
// pool_keys' last step, on means already in p.k (the CUDA engine pools keys that live on the GPU there): the
// scales, and with fp8 pooling each block's mean re-quantised.
void finish_pooling(PooledKeys& p, PoolPrecision precision);

// Blocks that overlap the visible range [k_start, q_pos]: first..last inclusive.
struct BlockSpan {
  int64_t first = 0, last = -1;
  int64_t size() const { return last - first + 1; }
};
inline BlockSpan eligible_blocks(int64_t k_start, int64_t q_pos, int64_t block_size) {
  return {k_start / block_size, q_pos / block_size};
}

// The visible positions of block b for a query seeing [k_start, q_pos]: first..last inclusive.
struct TokenRange {
  int64_t first = 0, last = -1;
  int64_t size() const { return last - first + 1; }
};
inline TokenRange visible_in_block(int64_t block, int64_t block_size, int64_t k_start, int64_t q_pos) {
  return {block * block_size > k_start ? block * block_size : k_start,
          (block + 1) * block_size - 1 < q_pos ? (block + 1) * block_size - 1 : q_pos};
}

// The visible positions of the (ascending) kept blocks as runs of consecutive positions: adjacent kept blocks
// make one run. Ascending.
std::vector<TokenRange> visible_runs(const std::vector<int64_t>& kept, int64_t block_size, int64_t k_start, int64_t q_pos);

// The visible positions of the (ascending) kept blocks, ascending, written to out.
void tokens_in_blocks(const std::vector<int64_t>& kept, int64_t block_size, int64_t k_start, int64_t q_pos,
                      std::vector<int64_t>& out);

// Which eligible blocks HISA keeps, ascending. scores[i] is J for block span.first + i. Forced blocks are
// span.first (holding k_start) and span.last (holding q_pos).
//  in-budget: forced blocks first, then the best m - #forced others (higher J, equal J by lower block);
//  extra:     forced ∪ the best m of all eligible blocks.
// Every eligible block when there are at most m.
void keep_blocks(std::span<const float> scores, BlockSpan span, int64_t m, ForcedMode mode, std::vector<int64_t>& kept);

}  // namespace hisa
