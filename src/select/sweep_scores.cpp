#include <omp.h>

#include "select/engine.hpp"

namespace hisa {

std::vector<PooledKeys> pool_variants(const LayerKeys& keys, std::span<const PoolVariant> variants, int threads) {
  std::vector<PooledKeys> pooled(variants.size());
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads > 0 ? threads : omp_get_max_threads())
  for (size_t v = 0; v < variants.size(); ++v) pooled[v] = pool_keys(keys, variants[v].block_size, variants[v].precision);
  return pooled;
}

void start_sweep_scores(const QueryBatch& batch, size_t variants, std::vector<SweepScores>& out) {
  out.resize(size_t(batch.count));
  for (int64_t i = 0; i < batch.count; ++i) {
    SweepScores& s = out[size_t(i)];
    s.q_pos = batch.q_pos[size_t(i)];
    s.k_start = batch.k_start[size_t(i)];
    s.J.resize(variants);
  }
}

}  // namespace hisa
