#include "select/blocks.hpp"

#include <algorithm>
#include <cmath>

#include "core/numeric.hpp"
#include "select/topk.hpp"

namespace hisa {

PooledKeys pool_keys(const LayerKeys& keys, int64_t block_size, PoolPrecision precision) {
  PooledKeys p;
  p.block_size = block_size;
  p.dim = keys.dim;
  p.count = (keys.count + block_size - 1) / block_size;
  p.k.assign(size_t(p.count * p.dim), 0.0f);
  // Blocks are independent (each sums its own keys in position order), so the result is the same on any thread count.
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < p.count; ++b) {
    float* mean = p.k.data() + b * p.dim;
    const int64_t begin = b * block_size, end = std::min(keys.count, begin + block_size);
    for (int64_t s = begin; s < end; ++s) {
      const float* row = keys.row(s);
      const float sc = keys.k_scale[size_t(s)];
      // One rounding per key, written out (not left to the compiler's contraction), so that every build and the
      // GPU's pooling of keys that live there (cuda/device_operands.cu) give the same means.
      for (int64_t d = 0; d < p.dim; ++d) mean[d] = std::fma(row[d], sc, mean[d]);
    }
    const float n = float(end - begin);
    for (int64_t d = 0; d < p.dim; ++d) mean[d] /= n;
  }
  finish_pooling(p, precision);
  return p;
}

void finish_pooling(PooledKeys& p, PoolPrecision precision) {
  p.scale.assign(size_t(p.count), 1.0f);
  if (precision != PoolPrecision::Fp8) return;
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < p.count; ++b) {
    float* mean = p.k.data() + b * p.dim;
    float absmax = 0.0f;
    for (int64_t d = 0; d < p.dim; ++d) absmax = std::max(absmax, std::fabs(mean[d]));
    const float scale = std::max(absmax / 448.0f, 1e-10f);
    for (int64_t d = 0; d < p.dim; ++d) mean[d] = e4m3_to_float(float_to_e4m3(mean[d] / scale));
    p.scale[size_t(b)] = scale;
  }
}

std::vector<TokenRange> visible_runs(const std::vector<int64_t>& kept, int64_t block_size, int64_t k_start, int64_t q_pos) {
  std::vector<TokenRange> runs;
  for (int64_t blk : kept) {
    const TokenRange r = visible_in_block(blk, block_size, k_start, q_pos);
    if (!runs.empty() && runs.back().last + 1 == r.first) {
      runs.back().last = r.last;
    } else {
      runs.push_back(r);
    }
  }
  return runs;
}

void tokens_in_blocks(const std::vector<int64_t>& kept, int64_t block_size, int64_t k_start, int64_t q_pos,
                      std::vector<int64_t>& out) {
  out.clear();
  for (int64_t blk : kept) {
    const TokenRange visible = visible_in_block(blk, block_size, k_start, q_pos);
    for (int64_t s = visible.first; s <= visible.last; ++s) out.push_back(s);
  }
}

void keep_blocks(std::span<const float> scores, BlockSpan span, int64_t m, ForcedMode mode, std::vector<int64_t>& kept) {
  kept.clear();
  const int64_t n = span.size();
  if (n <= m) {
    for (int64_t b = span.first; b <= span.last; ++b) kept.push_back(b);
    return;
  }
  // Blocks are ranked with the same rule as tokens, so top-k over "positions" = block indices does it.
  thread_local std::vector<int64_t> ids;
  thread_local std::vector<float> others;
  const bool two_forced = span.last != span.first;
  if (mode == ForcedMode::Extra) {
    ids.resize(size_t(n));
    for (int64_t i = 0; i < n; ++i) ids[size_t(i)] = span.first + i;
    topk_positions(scores, ids, m, kept);
    kept.push_back(span.first);
    kept.push_back(span.last);
  } else {
    const int64_t forced = two_forced ? 2 : 1;
    if (m <= forced) {  // the budget holds only forced blocks: lower block first
      kept.push_back(span.first);
      if (m == 2 && two_forced) kept.push_back(span.last);
      return;
    }
    ids.clear();
    others.clear();
    for (int64_t i = 1; i < n - (two_forced ? 1 : 0); ++i) {
      ids.push_back(span.first + i);
      others.push_back(scores[size_t(i)]);
    }
    topk_positions(others, ids, m - forced, kept);
    kept.push_back(span.first);
    if (two_forced) kept.push_back(span.last);
  }
  std::sort(kept.begin(), kept.end());
  kept.erase(std::unique(kept.begin(), kept.end()), kept.end());
}

}  // namespace hisa
