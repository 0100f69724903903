#pragma once
// What the GPU tests share: the device they run on, the comparisons of the CUDA engine with the CPU engine and the
// reference (exactly on exact inputs, up to near-ties otherwise), and layers made for them.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <set>
#include <string>

#include "core/numeric.hpp"
#include "cuda/cuda_engine.hpp"
#include "cuda/device_info.hpp"
#include "cuda/kernels.hpp"
#include "metrics/parity.hpp"
#include "select/blocks.hpp"
#include "select/engine.hpp"
#include "select/reference.hpp"
#include "select/topk.hpp"
#include "synth/synth.hpp"
#include "../select/random_layer.hpp"

namespace hisa::gpu_test {

using test::Layer;
using test::LayerSpec;
using test::configs_for;
using test::random_layer;

// The first device this build's kernels run on, -1 when there is none (CI).
inline int gpu_device() {
  static const int device = [] {
    for (const auto& d : cuda::list_devices()) {
      if (cuda::kernel_image_problem(d.index).empty()) return d.index;
    }
    return -1;
  }();
  return device;
}

#define REQUIRE_GPU()                                                             \
  do {                                                                            \
    if (::hisa::gpu_test::gpu_device() < 0) GTEST_SKIP() << "no usable CUDA device"; \
  } while (0)

inline std::string describe(const SelectionConfig& c) {
  return "B=" + std::to_string(c.block_size) + " m=" + std::to_string(c.blocks) + " k=" + std::to_string(c.topk) +
         " forced=" + std::string(forced_mode_name(c.forced)) + " pool=" + std::string(pool_precision_name(c.pool));
}

inline double relative(double a, double b) { return a == b ? 0.0 : std::fabs(a - b) / std::max(std::fabs(a), std::fabs(b)); }

// Exact inputs: the CUDA engine's audit and selections equal the CPU engine's and the reference's.
inline void expect_identical(const Layer& l, const SelectionConfig& c, size_t max_chunk_bytes = 0) {
  auto gpu = make_cuda_engine(gpu_device(), max_chunk_bytes);
  auto cpu = make_cpu_engine(2);
  gpu->set_layer(l.keys, c);
  cpu->set_layer(l.keys, c);
  std::vector<QueryAudit> ga, ca;
  gpu->audit(l.batch, ga);
  cpu->audit(l.batch, ca);
  std::vector<std::vector<int64_t>> flat, hisa, block;
  gpu->select(l.batch, Method::Flat, flat);
  gpu->select(l.batch, Method::Hisa, hisa);
  gpu->select(l.batch, Method::Block, block);
  ASSERT_EQ(ga.size(), size_t(l.batch.count));
  for (int64_t i = 0; i < l.batch.count; ++i) {
    SCOPED_TRACE("query " + std::to_string(i) + " " + describe(c));
    const QueryAudit &g = ga[size_t(i)], &r = ca[size_t(i)];
    const auto ref_flat = reference::flat(l.batch, i, l.keys, c);
    const auto ref_hisa = reference::hisa(l.batch, i, l.keys, c);
    EXPECT_EQ(g.q_pos, r.q_pos);
    EXPECT_EQ(g.k_start, r.k_start);
    EXPECT_EQ(g.visible, r.visible);
    EXPECT_EQ(g.flat, ref_flat);
    EXPECT_EQ(g.flat, r.flat);
    EXPECT_EQ(g.flat_scores, r.flat_scores);
    EXPECT_EQ(g.hisa, ref_hisa);
    EXPECT_EQ(g.hisa, r.hisa);
    EXPECT_EQ(g.hisa_blocks, r.hisa_blocks);
    EXPECT_EQ(g.block, r.block);
    EXPECT_EQ(g.block, reference::block_sparse(l.batch, i, l.keys, c));
    EXPECT_EQ(g.kth_score, r.kth_score);
    EXPECT_EQ(g.row_max, r.row_max);
    // What the miss causes and certificates read (metrics/diagnosis.hpp): exact on these inputs.
    EXPECT_EQ(g.hisa_scores, r.hisa_scores);
    // J of a partial last block: its mean divides by a count that is no power of two, so the pooled key is
    // not exact and the two sums may round differently (relative to the row's largest J when they cancel).
    ASSERT_EQ(g.block_scores.size(), r.block_scores.size());
    float scale = 1.0f;
    for (float v : r.block_scores) scale = std::max(scale, std::fabs(v));
    for (size_t j = 0; j < g.block_scores.size(); ++j) {
      EXPECT_LE(std::fabs(g.block_scores[j] - r.block_scores[j]), 1e-5f * scale)
          << "block " << j << ": " << g.block_scores[j] << " vs " << r.block_scores[j];
    }
    EXPECT_EQ(g.block_best, r.block_best);
    // Same scores, same exp values; only the order of the double sums differs.
    EXPECT_LE(relative(g.mass_visible, r.mass_visible), 1e-12);
    EXPECT_LE(relative(g.mass_flat, r.mass_flat), 1e-12);
    EXPECT_LE(relative(g.mass_hisa, r.mass_hisa), 1e-12);
    EXPECT_LE(relative(g.mass_block, r.mass_block), 1e-12);
    EXPECT_EQ(flat[size_t(i)], ref_flat);
    EXPECT_EQ(hisa[size_t(i)], ref_hisa);
    EXPECT_EQ(block[size_t(i)], g.block);
  }
}

// Which scoring path a layer takes is decided by exactness (cuda_engine.cu): small integers are exact in
// bf16; one key of 257 (9 significant bits) leaves f16 as the only exact 16-bit type; one of 4097 (13 bits)
// leaves fp32. All stay exact integers, so every path must give identical results.
enum class Path { BF16, F16, F32 };
inline void force_path(Layer& l, Path p) {
  if (p == Path::F16) l.keys.k[0] = 257.0f;
  if (p == Path::F32) l.keys.k[0] = 4097.0f;
}
inline const char* path_name(Path p) { return p == Path::BF16 ? "bf16" : p == Path::F16 ? "f16" : "f32"; }

// Near-ties by the library's parity rule (metrics/parity.hpp), the one `hisa audit --parity` reports with:
// kParityTolerance, or kFp8MmaParityTolerance for an engine on the fp8 tensor cores.

// Block choices: differences explained by near-ties of J (the reference's) at the cut of the ranked pool.
inline int64_t unexplained_block_differences(const Layer& l, int64_t i, const SelectionConfig& c, int64_t m, ForcedMode mode,
                                      const std::vector<int64_t>& got, const std::vector<int64_t>& want, double tolerance) {
  if (got == want) return 0;
  const BlockSpan span = eligible_blocks(l.batch.k_start[size_t(i)], l.batch.q_pos[size_t(i)], c.block_size);
  std::vector<int64_t> pool;
  int64_t m_eff = m;
  for (int64_t b = span.first; b <= span.last; ++b) {
    if (mode == ForcedMode::Extra || (b != span.first && b != span.last)) pool.push_back(b);
  }
  if (mode == ForcedMode::InBudget) m_eff -= (span.last != span.first ? 2 : 1);
  if (span.size() <= m || m_eff <= 0) return int64_t(got.size() + want.size());  // no choice: must be identical
  auto J = [&](int64_t b) {
    float scale = 1;
    const auto pooled = reference::pooled_key(l.keys, b, c.block_size, c.pool, scale);
    return double(reference::block_score(l.batch, i, pooled, scale));
  };
  auto absJ = [&](int64_t b) {
    float scale = 1;
    const auto pooled = reference::pooled_key(l.keys, b, c.block_size, c.pool, scale);
    return abs_score(l.batch, i, pooled.data(), scale);
  };
  std::sort(pool.begin(), pool.end(), [&](int64_t a, int64_t b) { return ranks_before(float(J(a)), a, float(J(b)), b); });
  const int64_t cut = pool[size_t(std::min<int64_t>(m_eff, int64_t(pool.size())) - 1)];
  const double jc = J(cut), jca = absJ(cut);
  std::vector<int64_t> diff;
  std::set_symmetric_difference(got.begin(), got.end(), want.begin(), want.end(), std::back_inserter(diff));
  int64_t bad = 0;
  for (int64_t b : diff) {
    const bool in_pool = std::find(pool.begin(), pool.end(), b) != pool.end();
    if (!in_pool || std::fabs(J(b) - jc) > tolerance * (absJ(b) + jca)) ++bad;
  }
  return bad;
}

struct FloatReport {
  int64_t queries = 0, flat_differ = 0, block_choice_differ = 0, unexplained = 0;
  double worst_score_error = 0;  // max over DSA's tokens of |GPU score - reference| / abs_score
  bool fp8_scores = false;       // the engine scored on the fp8 tensor cores (inexact_scores())
};
// The counts, as the tests' [ info ] lines print them.
inline std::ostream& operator<<(std::ostream& out, const FloatReport& r) {
  return out << r.queries << " queries, flat differs from the reference in " << r.flat_differ
             << ", HISA block choice in " << r.block_choice_differ << ", unexplained " << r.unexplained;
}

// GPU audit and selections against the reference, allowing near-ties only (fp8_mma: an engine asked for the
// fp8 tensor cores; the wider tolerance applies only where it used them, as in `audit --parity`).
inline FloatReport compare_float(const Layer& l, const SelectionConfig& c, bool fp8_mma = false) {
  FloatReport rep;
  auto gpu = make_cuda_engine(gpu_device(), 0, fp8_mma);
  gpu->set_layer(l.keys, c);
  std::vector<QueryAudit> ga;
  gpu->audit(l.batch, ga);
  rep.fp8_scores = gpu->inexact_scores();
  const double tol = parity_tolerance(rep.fp8_scores);
  std::vector<std::vector<int64_t>> flat, hisa, block;
  gpu->select(l.batch, Method::Flat, flat);
  gpu->select(l.batch, Method::Hisa, hisa);
  gpu->select(l.batch, Method::Block, block);
  for (int64_t i = 0; i < l.batch.count; ++i) {
    SCOPED_TRACE("query " + std::to_string(i) + " " + describe(c));
    const QueryAudit& g = ga[size_t(i)];
    ++rep.queries;
    auto score = [&](int64_t s) { return double(reference::score(l.batch, i, l.keys, s)); };
    auto abs = [&](int64_t s) { return abs_score(l.batch, i, l.keys.row(s), l.keys.k_scale[size_t(s)]); };
    const auto ref_flat = reference::flat(l.batch, i, l.keys, c);
    rep.flat_differ += g.flat != ref_flat;
    rep.unexplained += unexplained_differences(g.flat, ref_flat, score, abs, tol);
    // The GPU's own paths use one set of scores: select() equals audit() exactly, even on float inputs.
    EXPECT_EQ(flat[size_t(i)], g.flat);
    EXPECT_EQ(hisa[size_t(i)], g.hisa);
    EXPECT_EQ(block[size_t(i)], g.block);
    for (size_t j = 0; j < g.flat.size(); ++j) {
      const double err = std::fabs(g.flat_scores[j] - score(g.flat[j]));
      EXPECT_LE(err, tol * abs(g.flat[j]));
      if (abs(g.flat[j]) > 0) rep.worst_score_error = std::max(rep.worst_score_error, err / abs(g.flat[j]));
    }
    const auto ref_blocks = reference::hisa_blocks(l.batch, i, l.keys, c, c.blocks, c.forced);
    if (g.hisa_blocks == ref_blocks) {
      rep.unexplained += unexplained_differences(g.hisa, reference::hisa(l.batch, i, l.keys, c), score, abs, tol);
    } else {
      ++rep.block_choice_differ;
      rep.unexplained += unexplained_block_differences(l, i, c, c.blocks, c.forced, g.hisa_blocks, ref_blocks, tol);
    }
    const auto ref_bs_blocks = reference::hisa_blocks(l.batch, i, l.keys, c, c.block_sparse_blocks(), ForcedMode::InBudget);
    std::vector<int64_t> bs_blocks;
    for (int64_t s : g.block) {
      if (bs_blocks.empty() || bs_blocks.back() != s / c.block_size) bs_blocks.push_back(s / c.block_size);
    }
    if (bs_blocks == ref_bs_blocks) {
      EXPECT_EQ(g.block, reference::block_sparse(l.batch, i, l.keys, c));
    } else {
      rep.unexplained += unexplained_block_differences(l, i, c, c.block_sparse_blocks(), ForcedMode::InBudget, bs_blocks,
                                                       ref_bs_blocks, tol);
    }
    // Masses: finite, ordered, and the flat one close to the reference-score mass of the same tokens.
    EXPECT_TRUE(std::isfinite(g.mass_visible));
    EXPECT_GE(g.mass_visible, 1.0 - 1e-12);  // holds e^0 for the maximum
    EXPECT_LE(g.mass_flat, g.mass_visible * (1 + 1e-12));
    EXPECT_LE(g.mass_hisa, g.mass_visible * (1 + 1e-12));
    EXPECT_LE(g.mass_block, g.mass_visible * (1 + 1e-12));
    double ref_mass = 0;
    for (size_t j = 0; j < g.flat.size(); ++j) ref_mass += std::exp(double(g.flat_scores[j]) - double(g.row_max));
    EXPECT_LE(relative(ref_mass, g.mass_flat), 1e-9);
  }
  return rep;
}

inline void round_layer(Layer& l, ElementType t) {
  for (auto& v : l.keys.k) v = round_to(t, v);
  for (auto& v : l.batch.q) v = round_to(t, v);
}

// Synthetic dumps of every element type (src/synth), as the loader would hand them over.
inline Layer from_synth(const LayerArrays& a) {
  Layer l;
  l.keys.count = a.keys;
  l.keys.dim = a.dim;
  l.keys.k = a.k;
  l.keys.k_scale = a.k_scale.empty() ? std::vector<float>(size_t(a.keys), 1.0f) : a.k_scale;
  l.batch.count = a.queries;
  l.batch.heads = a.heads;
  l.batch.dim = a.dim;
  l.batch.q = a.q;
  l.batch.w = a.w;
  l.batch.q_pos = a.q_pos;
  l.batch.k_start = a.k_start.empty() ? std::vector<int64_t>(size_t(a.queries), 0) : a.k_start;
  return l;
}

}  // namespace hisa::gpu_test
