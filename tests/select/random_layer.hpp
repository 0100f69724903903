#pragma once
// Small in-memory layers for selection tests. "Integer" layers hold small integers (and dyadic scales),
// so every score is exact in fp32 whatever the summation order: fast paths must then agree with the
// reference bit for bit, ties included.
#include <cstdint>
#include <random>

#include <vector>

#include "io/dump_model.hpp"
#include "select/config.hpp"

namespace hisa::test {

struct Layer {
  LayerKeys keys;
  QueryBatch batch;
};

struct LayerSpec {
  int64_t keys = 300, heads = 4, dim = 16;
  int64_t queries = 20;
  bool integer = true;        // small integers (exact) or Gaussian floats
  bool negative_weights = true;
  bool packed = false;        // k_start > 0 for some queries
  bool scales = false;        // dyadic k_scale values
  int value_range = 3;        // integers in [-range, range]
  uint64_t seed = 1;
};

inline Layer random_layer(const LayerSpec& s) {
  std::mt19937_64 rng(s.seed);
  auto integer = [&](int lo, int hi) { return float(std::uniform_int_distribution<int>(lo, hi)(rng)); };
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  auto value = [&] { return s.integer ? integer(-s.value_range, s.value_range) : gauss(rng); };
  Layer l;
  l.keys.count = s.keys;
  l.keys.dim = s.dim;
  l.keys.k.resize(size_t(s.keys * s.dim));
  for (auto& v : l.keys.k) v = value();
  l.keys.k_scale.assign(size_t(s.keys), 1.0f);
  if (s.scales) {
    for (auto& v : l.keys.k_scale) v = std::ldexp(1.0f, int(integer(-2, 2)));
  }
  QueryBatch& b = l.batch;
  b.count = s.queries;
  b.heads = s.heads;
  b.dim = s.dim;
  b.q.resize(size_t(s.queries * s.heads * s.dim));
  for (auto& v : b.q) v = value();
  b.w.resize(size_t(s.queries * s.heads));
  for (auto& v : b.w) v = s.negative_weights ? integer(-2, 3) : integer(1, 3);
  for (int64_t i = 0; i < s.queries; ++i) {
    // Ascending positions spread over the sequence, the last query at the last key.
    int64_t pos = s.queries == 1 ? s.keys - 1 : (s.keys - 1) * (i + 1) / s.queries;
    b.q_pos.push_back(pos);
    int64_t start = s.packed ? std::uniform_int_distribution<int64_t>(0, pos)(rng) : 0;
    b.k_start.push_back(start);
  }
  return l;
}

// A layer whose fp32 scores overflow in ways no summation order (nor FMA contraction) changes (docs/definitions.md, "Edge
// cases"): every value is 0, 1 or ±2^64, and every dot product sums terms of one sign, so q·k is exact or
// saturates to ±inf whatever the order. L = 20 keys:
//   0-3 "small" (all 1: q·k = 2^66), 4-11 "huge" (all +2^64: q·k = +inf), 12-15 "zero" (q·k = 0),
//   16-19 "negative" (all -2^64: q·k = -inf, ReLU 0).
// Both heads' queries are all +2^64. Query 0 (w = 1, 0.5) sees 0..19: scores 1.5·2^66, +inf, 0, 0.
// Query 1 (w = 1, -1) sees 0..19: 0, inf - inf = NaN → -inf, 0, 0. Query 2 (w = 1, -1) sees only the huge keys
// 4..11, whose scores are all NaN → -inf.
inline Layer overflow_layer() {
  constexpr float big = 18446744073709551616.0f;  // 2^64
  constexpr int64_t keys = 20, dim = 4, heads = 2;
  Layer l;
  l.keys.count = keys;
  l.keys.dim = dim;
  for (int64_t s = 0; s < keys; ++s) {
    const float v = s < 4 ? 1.0f : s < 12 ? big : s < 16 ? 0.0f : -big;
    for (int64_t d = 0; d < dim; ++d) l.keys.k.push_back(v);
  }
  l.keys.k_scale.assign(size_t(keys), 1.0f);
  QueryBatch& b = l.batch;
  b.count = 3;
  b.heads = heads;
  b.dim = dim;
  b.q.assign(size_t(b.count * heads * dim), big);
  b.w = {1.0f, 0.5f, 1.0f, -1.0f, 1.0f, -1.0f};
  b.q_pos = {19, 19, 11};
  b.k_start = {0, 0, 4};
  return l;
}

// The selection settings the equivalence tests sweep: block sizes 1 to 32 (B = 1 makes every token a block),
// budgets 1 to 8, both forced-block modes.
inline std::vector<SelectionConfig> configs_for(int64_t topk) {
  std::vector<SelectionConfig> out;
  for (int64_t B : {1, 4, 16, 32}) {
    for (int64_t m : {1, 2, 3, 8}) {
      for (ForcedMode f : {ForcedMode::InBudget, ForcedMode::Extra}) {
        SelectionConfig c;
        c.topk = topk;
        c.block_size = B;
        c.blocks = m;
        c.forced = f;
        out.push_back(c);
      }
    }
  }
  return out;
}

}  // namespace hisa::test
