#pragma once
// The indexer score on the CPU: I[t,s] = scale[s] · Σ_h w[t,h] · ReLU(q[t,h,:]·k[s,:]), fp32 throughout.
// The dot products are one GEMM per tile (Eigen); ReLU, the weights and the head sum are applied to the
// tile while it is in cache, so no [queries·heads, L] array is ever formed.
#include <cstdint>
#include <span>

#include "io/dump_model.hpp"

namespace hisa {

struct ScoreInputs {
  const float* q = nullptr;  // [n, H, D] for the n queries being scored
  const float* w = nullptr;  // [n, H]
  int64_t queries = 0;       // n
  int64_t heads = 0;         // H
  int64_t dim = 0;           // D
};

// Scores the n queries against `count` consecutive key rows (keys[j*D..], scales[j]).
// out[i * out_stride + j] receives the score of query i and key j. NaN (only from overflow) becomes -inf,
// so that every score is ordered.
void score_keys(const ScoreInputs& in, const float* keys, const float* scales, int64_t count, float* out,
                int64_t out_stride);

// I[t,s] of query row `query` of (q, w) for each of `positions` (any order) into out, each summed exactly as
// reference::score sums it — dimension order within a head, heads in order — whatever the positions are, so that
// tokens with equal operands always get equal scores (score_keys' GEMM tiles may round a key at a tile's edge
// differently). Vectorised across positions, not within a sum.
void score_positions(const float* q, const float* w, int64_t heads, int64_t dim, const float* keys,
                     const float* scales, std::span<const int64_t> positions, float* out);

// Σ_h |w[i,h]| · Σ_d |q[i,h,d] · key[d]| · |scale|, in double: the magnitude that near ties are measured
// against (metrics/parity.hpp).
double abs_score(const QueryBatch& b, int64_t i, const float* key, float scale);

}  // namespace hisa
