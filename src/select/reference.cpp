#include "select/reference.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/numeric.hpp"

namespace hisa::reference {

namespace {

struct Scored {
  float score;
  int64_t position;
};

// Higher score first; equal scores by lower position.
bool better(const Scored& a, const Scored& b) {
  return a.score > b.score || (a.score == b.score && a.position < b.position);
}

std::vector<int64_t> best_k_ascending(std::vector<Scored> items, int64_t k) {
  std::sort(items.begin(), items.end(), better);
  if (int64_t(items.size()) > k) items.resize(size_t(k));
  std::vector<int64_t> out;
  for (const auto& it : items) out.push_back(it.position);
  std::sort(out.begin(), out.end());
  return out;
}

// docs/definitions.md: a NaN score (an fp32 sum that overflowed to inf - inf, or 0 · inf) is -inf. Without this
// a NaN would also break the strict weak order std::sort needs.
float nan_to_minus_inf(float v) { return std::isnan(v) ? -std::numeric_limits<float>::infinity() : v; }

float head_sum(const QueryBatch& b, int64_t query, const float* key) {
  float total = 0.0f;
  for (int64_t h = 0; h < b.heads; ++h) {
    const float* q = b.q_row(query, h);
    float dot = 0.0f;
    for (int64_t d = 0; d < b.dim; ++d) dot += q[d] * key[d];
    total += b.w_row(query)[h] * std::max(dot, 0.0f);
  }
  return total;
}

}  // namespace

float score(const QueryBatch& b, int64_t query, const LayerKeys& keys, int64_t s) {
  return nan_to_minus_inf(keys.k_scale[size_t(s)] * head_sum(b, query, keys.row(s)));
}

std::vector<float> pooled_key(const LayerKeys& keys, int64_t block, int64_t block_size, PoolPrecision precision,
                              float& scale) {
  const int64_t begin = block * block_size, end = std::min(keys.count, begin + block_size);
  std::vector<float> mean(size_t(keys.dim), 0.0f);
  for (int64_t s = begin; s < end; ++s) {
    for (int64_t d = 0; d < keys.dim; ++d) mean[size_t(d)] = std::fma(keys.row(s)[d], keys.k_scale[size_t(s)], mean[size_t(d)]);
  }
  for (auto& v : mean) v /= float(end - begin);
  scale = 1.0f;
  if (precision == PoolPrecision::Fp8) {
    float absmax = 0.0f;
    for (float v : mean) absmax = std::max(absmax, std::fabs(v));
    scale = std::max(absmax / 448.0f, 1e-10f);
    for (auto& v : mean) v = e4m3_to_float(float_to_e4m3(v / scale));
  }
  return mean;
}

float block_score(const QueryBatch& b, int64_t query, const std::vector<float>& pooled, float scale) {
  return nan_to_minus_inf(scale * head_sum(b, query, pooled.data()));
}

std::vector<int64_t> flat(const QueryBatch& b, int64_t query, const LayerKeys& keys, const SelectionConfig& c) {
  std::vector<Scored> all;
  for (int64_t s = b.k_start[size_t(query)]; s <= b.q_pos[size_t(query)]; ++s) all.push_back({score(b, query, keys, s), s});
  return best_k_ascending(all, c.topk);
}

std::vector<int64_t> hisa_blocks(const QueryBatch& b, int64_t query, const LayerKeys& keys, const SelectionConfig& c,
                                 int64_t m, ForcedMode mode) {
  const int64_t first = b.k_start[size_t(query)] / c.block_size, last = b.q_pos[size_t(query)] / c.block_size;
  std::vector<Scored> blocks;  // "position" = block index
  for (int64_t blk = first; blk <= last; ++blk) {
    float scale = 1.0f;
    auto pooled = pooled_key(keys, blk, c.block_size, c.pool, scale);
    blocks.push_back({block_score(b, query, pooled, scale), blk});
  }
  std::vector<int64_t> kept;
  if (int64_t(blocks.size()) <= m) {
    for (const auto& x : blocks) kept.push_back(x.position);
    return kept;
  }
  auto is_forced = [&](int64_t blk) { return blk == first || blk == last; };
  if (mode == ForcedMode::InBudget) {
    // Forced blocks rank above every other block (lower one first), the rest by J.
    std::sort(blocks.begin(), blocks.end(), [&](const Scored& x, const Scored& y) {
      if (is_forced(x.position) != is_forced(y.position)) return is_forced(x.position);
      if (is_forced(x.position)) return x.position < y.position;
      return better(x, y);
    });
    for (int64_t i = 0; i < m; ++i) kept.push_back(blocks[size_t(i)].position);
  } else {
    std::sort(blocks.begin(), blocks.end(), better);
    for (int64_t i = 0; i < m; ++i) kept.push_back(blocks[size_t(i)].position);
    kept.push_back(first);
    kept.push_back(last);
  }
  std::sort(kept.begin(), kept.end());
  kept.erase(std::unique(kept.begin(), kept.end()), kept.end());
  return kept;
}

namespace {

std::vector<int64_t> visible_in(const QueryBatch& b, int64_t query, const std::vector<int64_t>& blocks,
                                int64_t block_size) {
  std::vector<int64_t> out;
  for (int64_t s = b.k_start[size_t(query)]; s <= b.q_pos[size_t(query)]; ++s) {
    if (std::binary_search(blocks.begin(), blocks.end(), s / block_size)) out.push_back(s);
  }
  return out;
}

}  // namespace

std::vector<int64_t> hisa(const QueryBatch& b, int64_t query, const LayerKeys& keys, const SelectionConfig& c) {
  auto kept = hisa_blocks(b, query, keys, c, c.blocks, c.forced);
  std::vector<Scored> candidates;
  for (int64_t s : visible_in(b, query, kept, c.block_size)) candidates.push_back({score(b, query, keys, s), s});
  return best_k_ascending(candidates, c.topk);
}

std::vector<int64_t> block_sparse(const QueryBatch& b, int64_t query, const LayerKeys& keys, const SelectionConfig& c) {
  auto kept = hisa_blocks(b, query, keys, c, c.block_sparse_blocks(), ForcedMode::InBudget);
  return visible_in(b, query, kept, c.block_size);
}

}  // namespace hisa::reference
