#pragma once
// The exact one-pass sweep over HISA's budget m for one query and one (B, pooling, forced mode): README
// "hisa sweep". HISA keeps blocks in a fixed order (its keep order), so kept(m) grows with m and every block
// has an entry m, the smallest m at which it is kept. A DSA token lies in HISA(B, m) exactly when its block's
// entry m is at most m (its rank among the candidates can only improve), so one ranking gives recall, IoU
// and cost at every m at once.
#include <cstdint>
#include <span>
#include <vector>

#include "select/blocks.hpp"
#include "select/config.hpp"

namespace hisa {

// Entry m of every eligible block (index 0 = span.first), given the blocks' J:
//  in-budget: the block holding k_start enters at 1, the block holding q_pos at 2, the others at 3 + their
//             rank by J among the non-forced blocks (equal J: lower block first);
//  extra:     the forced blocks at 1, the others at 1 + their rank by J among all eligible blocks.
// Every entry is at most span.size(), because every block is kept once m >= span.size(). Only entries up to
// `limit` are computed exactly (a partial selection instead of a full sort); a block entering later gets
// limit + 1. limit >= span.size() gives every entry exactly.
void block_entry_m(std::span<const float> J, BlockSpan span, ForcedMode mode, int64_t limit, std::vector<int64_t>& entry);

// One query's sweep result at one m.
struct SweepPoint {
  double recall = 0;        // |H ∩ D| / |D|
  double iou = 0;           // |H ∩ D| / |H ∪ D|
  int64_t scored_keys = 0;  // eligible blocks + visible tokens in the kept blocks
};

struct SweepQuery {
  int64_t k_start = 0, q_pos = 0;
  int64_t block_size = 0, topk = 0;
  ForcedMode forced = ForcedMode::InBudget;
  std::span<const int64_t> flat;  // DSA's selection, ascending
  std::span<const float> J;       // pooled scores of the eligible blocks, index 0 = block ⌊k_start/B⌋
};

// HISA(B, m) against DSA at every m of `blocks` (ascending), written to out[0 .. blocks.size()).
// With c = DSA tokens in blocks of entry <= m and V = visible tokens in those blocks:
// recall = c/|D|, |H| = min(k, V), IoU = c / (|D| + |H| − c), scored keys = eligible blocks + V.
void sweep_query(const SweepQuery& q, std::span<const int64_t> blocks, SweepPoint* out);

}  // namespace hisa
