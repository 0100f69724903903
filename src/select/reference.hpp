#pragma once
// The reference selection: plain loops and full sorts, written to be obviously right, not fast.
// Every fast path (CPU engine, CUDA engine) is tested against it.
#include <cstdint>
#include <vector>

#include "io/dump_model.hpp"
#include "select/config.hpp"

namespace hisa::reference {

// I[t,s] = k_scale[s] · Σ_h w[t,h] · ReLU(q[t,h]·k[s]), fp32, dot products in dimension order.
float score(const QueryBatch& b, int64_t query, const LayerKeys& keys, int64_t s);

// Mean of k[s]·k_scale[s] over the block's existing positions (optionally re-quantised to e4m3);
// returns the pooled key and sets `scale` (1 for fp32).
std::vector<float> pooled_key(const LayerKeys& keys, int64_t block, int64_t block_size, PoolPrecision precision,
                              float& scale);

// J[t,b] = scale_b · Σ_h w[t,h] · ReLU(q[t,h]·k̄_b).
float block_score(const QueryBatch& b, int64_t query, const std::vector<float>& pooled, float scale);

// Selections as ascending positions.
std::vector<int64_t> flat(const QueryBatch& b, int64_t query, const LayerKeys& keys, const SelectionConfig& c);
std::vector<int64_t> hisa_blocks(const QueryBatch& b, int64_t query, const LayerKeys& keys, const SelectionConfig& c,
                                 int64_t m, ForcedMode mode);
std::vector<int64_t> hisa(const QueryBatch& b, int64_t query, const LayerKeys& keys, const SelectionConfig& c);
std::vector<int64_t> block_sparse(const QueryBatch& b, int64_t query, const LayerKeys& keys, const SelectionConfig& c);

}  // namespace hisa::reference
