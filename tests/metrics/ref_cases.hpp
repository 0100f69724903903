#pragma once
// Layers whose topk_ref a test makes: the exact rule's selection, or one with a planted defect (the failures a
// serving stack's kernel really has), written as a dump for the CLI. Selections come from reference.hpp's
// definitions with one thing changed, so each defect is exactly the one named.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "io/dump_writer.hpp"
#include "select/config.hpp"
#include "select/reference.hpp"

namespace hisa::test {

// A layer's tensors with the views the reference functions take.
struct RefLayerData {
  LayerArrays arrays;
  LayerKeys keys;
  QueryBatch batch;
};

// L keys of D dims, Nq queries at evenly spaced positions (the last one included), f32 throughout. With
// `clusters` > 0 every key is one of that many random rows (picked per token at random), so tokens tie exactly —
// or, with `nudge`, nearly: one component of each key moved by a few ulps, a different move for every token (for
// L ≤ 64·D), so tied scores differ in their last bits.
// Else the keys are independent. Weights are positive.
inline RefLayerData ref_layer(int64_t L, int64_t Nq, int64_t H, int64_t D, int64_t clusters, uint64_t seed,
                              bool nudge = false) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> weight(0.2f, 1.0f);
  RefLayerData d;
  LayerArrays& a = d.arrays;
  a.keys = L, a.queries = Nq, a.heads = H, a.dim = D;
  a.q_type = a.k_type = ElementType::F32;
  std::vector<float> centres(size_t(std::max<int64_t>(clusters, 1) * D));
  for (auto& v : centres) v = normal(rng);
  a.k.resize(size_t(L * D));
  for (int64_t s = 0; s < L; ++s) {
    const int64_t c = clusters > 0 ? int64_t(rng() % uint64_t(clusters)) : -1;
    for (int64_t x = 0; x < D; ++x) a.k[size_t(s * D + x)] = c >= 0 ? centres[size_t(c * D + x)] : normal(rng);
    if (nudge) {
      float& v = a.k[size_t(s * D + s % D)];
      for (int64_t u = 0; u <= (s / D) % 64; ++u) v = std::nextafter(v, INFINITY);
    }
  }
  a.q.resize(size_t(Nq * H * D));
  for (auto& v : a.q) v = normal(rng);
  a.w.resize(size_t(Nq * H));
  for (auto& v : a.w) v = weight(rng);
  for (int64_t i = 0; i < Nq; ++i) a.q_pos.push_back(Nq == 1 ? L - 1 : (L / 4) + i * (L - 1 - L / 4) / (Nq - 1));
  d.keys.count = L, d.keys.dim = D, d.keys.k = a.k, d.keys.k_scale.assign(size_t(L), 1.0f);
  QueryBatch& b = d.batch;
  b.count = Nq, b.heads = H, b.dim = D, b.q = a.q, b.w = a.w, b.q_pos = a.q_pos;
  b.k_start.assign(size_t(Nq), 0);
  return d;
}

// How a stack's selection departs from the rule (all off: the rule itself).
struct Defect {
  bool block_relu = true;          // false: J without the ReLU (a public Triton port)
  bool force_blocks = true;        // false: the first and last blocks compete by J like the others
  bool extra_forced = false;       // the paper's rule: forced blocks on top of the best m
  bool ties_to_higher = false;     // equal scores won by the higher position (and block)
  int64_t tie_cap = -1;            // keep at most this many tokens tied at the cut, drop the rest (SGLang)
  double perturb = 0;              // token scores times (1 + perturb · u), u in [-1, 1] fixed per position
  PoolPrecision pool = PoolPrecision::Fp32;
  bool future_token = false;       // the last kept token replaced by q_pos + 1
};

namespace detail {

inline double unit_noise(int64_t s) {  // a fixed value in [-1, 1] per position
  uint64_t x = uint64_t(s) * 0x9E3779B97F4A7C15ull;
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 29;
  return double(x % 2000001) / 1000000.0 - 1.0;
}

struct Item {
  float score;
  int64_t id;
};

inline std::vector<Item> ranked(std::vector<Item> items, bool ties_to_higher) {
  std::sort(items.begin(), items.end(), [&](const Item& a, const Item& b) {
    if (a.score != b.score) return a.score > b.score;
    return ties_to_higher ? a.id > b.id : a.id < b.id;
  });
  return items;
}

}  // namespace detail

// The stack's selection of query i: HISA(B, m) (or, with method Block, every visible token of the kept blocks;
// with method Flat, flat top-k) under the defect. Ascending; may hold fewer than k tokens (a tie cap) or a token
// the query cannot see (future_token).
inline std::vector<int64_t> stack_selection(const RefLayerData& d, int64_t i, Method method, const SelectionConfig& c,
                                            const Defect& f) {
  using detail::Item;
  const QueryBatch& b = d.batch;
  const int64_t q_pos = b.q_pos[size_t(i)], k_start = b.k_start[size_t(i)], B = c.block_size;
  auto token_score = [&](int64_t s) {
    const float v = reference::score(b, i, d.keys, s);
    return f.perturb == 0 ? v : float(double(v) * (1.0 + f.perturb * detail::unit_noise(s)));
  };
  std::vector<int64_t> candidates;
  if (method == Method::Flat) {
    for (int64_t s = k_start; s <= q_pos; ++s) candidates.push_back(s);
  } else {
    const int64_t first = k_start / B, last = q_pos / B;
    std::vector<Item> blocks;
    for (int64_t blk = first; blk <= last; ++blk) {
      float scale = 1;
      const std::vector<float> pooled = reference::pooled_key(d.keys, blk, B, f.pool, scale);
      float J = 0;
      for (int64_t h = 0; h < b.heads; ++h) {
        float dot = 0;
        for (int64_t x = 0; x < b.dim; ++x) dot += b.q_row(i, h)[x] * pooled[size_t(x)];
        J += b.w_row(i)[h] * (f.block_relu ? std::max(dot, 0.0f) : dot);
      }
      blocks.push_back({scale * J, blk});
    }
    std::vector<int64_t> kept;
    const int64_t m = method == Method::Block ? c.block_sparse_blocks() : c.blocks;
    auto forced = [&](int64_t blk) { return f.force_blocks && (blk == first || blk == last); };
    if (int64_t(blocks.size()) <= m) {
      for (const auto& x : blocks) kept.push_back(x.id);
    } else if (f.extra_forced) {
      const auto r = detail::ranked(blocks, f.ties_to_higher);
      for (int64_t n = 0; n < m; ++n) kept.push_back(r[size_t(n)].id);
      kept.push_back(first), kept.push_back(last);
    } else {
      std::vector<Item> others;
      for (const auto& x : blocks) {
        if (forced(x.id)) {
          kept.push_back(x.id);
        } else {
          others.push_back(x);
        }
      }
      const auto r = detail::ranked(others, f.ties_to_higher);
      for (size_t n = 0; int64_t(kept.size()) < m && n < r.size(); ++n) kept.push_back(r[n].id);
    }
    std::sort(kept.begin(), kept.end());
    kept.erase(std::unique(kept.begin(), kept.end()), kept.end());
    for (int64_t s = k_start; s <= q_pos; ++s) {
      if (std::binary_search(kept.begin(), kept.end(), s / B)) candidates.push_back(s);
    }
    if (method == Method::Block) return candidates;
  }
  std::vector<Item> items;
  for (int64_t s : candidates) items.push_back({token_score(s), s});
  const auto r = detail::ranked(items, f.ties_to_higher);
  const size_t k = std::min(r.size(), size_t(c.topk));
  std::vector<int64_t> out;
  int64_t tied = 0;
  for (size_t n = 0; n < k; ++n) {
    if (f.tie_cap >= 0 && k < r.size() && r[n].score == r[k - 1].score && tied++ >= f.tie_cap) continue;
    out.push_back(r[n].id);
  }
  std::sort(out.begin(), out.end());
  if (f.future_token && !out.empty() && q_pos + 1 < d.keys.count) out.back() = q_pos + 1;
  std::sort(out.begin(), out.end());
  return out;
}

// Every query's stack selection as a topk_ref (width k, -1 padded) with its declaration, in arrays.
inline void attach_ref(RefLayerData& d, Method method, const SelectionConfig& c, const Defect& f,
                       const RefDeclaration& declared) {
  LayerArrays& a = d.arrays;
  a.ref_width = c.topk;
  a.topk_ref.assign(size_t(a.queries * a.ref_width), -1);
  for (int64_t i = 0; i < a.queries; ++i) {
    const auto sel = stack_selection(d, i, method, c, f);
    for (size_t n = 0; n < sel.size() && int64_t(n) < a.ref_width; ++n) a.topk_ref[size_t(i * a.ref_width) + n] = int32_t(sel[n]);
  }
  a.ref_declaration = declared;
}

// One sample, one layer (layer 0) holding d, written to path; index_topk = k.
inline std::string write_ref_dump(const std::string& path, const RefLayerData& d, int64_t k) {
  FileAttributes fa;
  fa.model = "ref-cases";
  fa.n_heads = d.arrays.heads;
  fa.head_dim = d.arrays.dim;
  fa.index_topk = k;
  SampleAttributes sa;
  sa.seq_len = d.arrays.keys;
  DumpWriter w(path, fa);
  w.add_sample("s", sa);
  w.add_layer("s", 0, d.arrays);
  w.close();
  return path;
}

inline RefDeclaration declare(const std::string& method, int64_t B = 0, int64_t m = 0, const std::string& forced = "",
                              const std::string& pool = "") {
  RefDeclaration r;
  r.method = method;
  if (B > 0) r.block_size = B;
  if (m > 0) r.blocks = m;
  if (!forced.empty()) r.forced = forced;
  if (!pool.empty()) r.pool_precision = pool;
  return r;
}

}  // namespace hisa::test
