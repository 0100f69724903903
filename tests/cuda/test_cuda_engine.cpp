// The CUDA engine against the CPU engine and the reference (src/select/reference.cpp). Every test skips when
// no usable GPU is present, so the suite passes on machines without one (CI).
//
// Exact layers (small integers, dyadic scales): every score is exact in fp32 whatever the summation order,
// so selections, ties, kept blocks and scores must be identical, on each scoring path (bf16 and f16 tensor
// cores, fp32 CUDA cores). Float layers: scores differ by fp32 rounding only, so a selection may differ only
// between near-tied tokens; unexplained_differences() counts the differences that are not such near-ties.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <set>

#include "core/numeric.hpp"
#include "cuda/block_choice.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/cuda_engine.hpp"
#include "cuda/cuda_scoring.hpp"
#include "cuda/device_buffer.hpp"
#include "cuda/cuda_sweep_scorer.hpp"
#include "cuda/device_info.hpp"
#include "cuda/kernels.hpp"
#include "metrics/parity.hpp"
#include "select/blocks.hpp"
#include "select/engine.hpp"
#include "select/reference.hpp"
#include "select/sweep_scorer.hpp"
#include "select/topk.hpp"
#include "pipelines/audit.hpp"
#include "pipelines/sweep.hpp"
#include "synth/synth.hpp"
#include "../select/random_layer.hpp"
#include "../synth_dump.hpp"

namespace hisa {
namespace {

using test::Layer;
using test::LayerSpec;
using test::configs_for;
using test::random_layer;

int gpu_device() {
  static const int device = [] {
    for (const auto& d : cuda::list_devices()) {
      if (cuda::kernel_image_problem(d.index).empty()) return d.index;
    }
    return -1;
  }();
  return device;
}

#define REQUIRE_GPU()                                                  \
  do {                                                                 \
    if (gpu_device() < 0) GTEST_SKIP() << "no usable CUDA device";     \
  } while (0)

std::string describe(const SelectionConfig& c) {
  return "B=" + std::to_string(c.block_size) + " m=" + std::to_string(c.blocks) + " k=" + std::to_string(c.topk) +
         " forced=" + std::string(forced_mode_name(c.forced)) + " pool=" + std::string(pool_precision_name(c.pool));
}

double relative(double a, double b) { return a == b ? 0.0 : std::fabs(a - b) / std::max(std::fabs(a), std::fabs(b)); }

// Exact inputs: the CUDA engine's audit and selections equal the CPU engine's and the reference's.
void expect_identical(const Layer& l, const SelectionConfig& c, size_t max_chunk_bytes = 0) {
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
    EXPECT_EQ(g.block_bounds, r.block_bounds);
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
void force_path(Layer& l, Path p) {
  if (p == Path::F16) l.keys.k[0] = 257.0f;
  if (p == Path::F32) l.keys.k[0] = 4097.0f;
}
const char* path_name(Path p) { return p == Path::BF16 ? "bf16" : p == Path::F16 ? "f16" : "f32"; }

TEST(CudaEngine, ExactLayersMatchCpuAndReferenceOnEveryPath) {
  REQUIRE_GPU();
  for (Path p : {Path::BF16, Path::F16, Path::F32}) {
    for (uint64_t seed : {1, 2}) {
      SCOPED_TRACE(std::string("path ") + path_name(p) + " seed " + std::to_string(seed));
      LayerSpec s;
      s.seed = seed;
      s.keys = 173;  // partial last block for every B > 1
      Layer l = random_layer(s);
      force_path(l, p);
      for (const auto& c : configs_for(12)) expect_identical(l, c);
    }
  }
}

TEST(CudaEngine, ExactTiesResolveToLowerPositions) {
  REQUIRE_GPU();
  LayerSpec s;
  s.value_range = 1;  // values in {-1, 0, 1}: scores collide constantly
  s.dim = 4;
  s.heads = 2;
  Layer l = random_layer(s);
  for (const auto& c : configs_for(20)) expect_identical(l, c);
  // All-zero scores: ReLU zeroes every dot product.
  Layer z = random_layer(s);
  for (auto& v : z.keys.k) v = std::fabs(v) + 1.0f;
  for (auto& v : z.batch.q) v = -std::fabs(v) - 1.0f;
  for (const auto& c : configs_for(7)) expect_identical(z, c);
}

TEST(CudaEngine, PackedSequencesScalesAndFp8Pooling) {
  REQUIRE_GPU();
  for (Path p : {Path::BF16, Path::F32}) {
    LayerSpec s;
    s.packed = true;  // k_start > 0
    s.scales = true;  // dyadic k_scale
    s.keys = 211;
    s.seed = 4;
    Layer l = random_layer(s);
    force_path(l, p);
    for (const auto& c : configs_for(10)) expect_identical(l, c);
  }
  LayerSpec s;
  s.keys = 128;  // whole blocks: the pooled means are exact before fp8 quantisation
  Layer l = random_layer(s);
  for (auto c : configs_for(10)) {
    c.pool = PoolPrecision::Fp8;
    expect_identical(l, c);
  }
}

TEST(CudaEngine, ShapesThatNeedPadding) {
  REQUIRE_GPU();
  // H not a multiple of 8 and D not a multiple of 16 (padded for the tensor cores), rows shorter than k.
  for (int64_t heads : {1, 3, 9}) {
    for (int64_t dim : {5, 16, 33, 128}) {
      LayerSpec s;
      s.heads = heads;
      s.dim = dim;
      s.keys = 150;
      s.queries = 9;
      s.seed = uint64_t(heads * 1000 + dim);
      Layer l = random_layer(s);
      SelectionConfig c;
      c.topk = 40;
      c.block_size = 8;
      c.blocks = 3;
      SCOPED_TRACE("H=" + std::to_string(heads) + " D=" + std::to_string(dim));
      expect_identical(l, c);
    }
  }
  LayerSpec s;
  s.keys = 40;
  Layer l = random_layer(s);
  SelectionConfig c;
  c.topk = 64;
  c.block_size = 4;
  c.blocks = 2;
  expect_identical(l, c);
}

// The shapes the wgmma kernel takes on sm_90 (32 or 64 padded heads, 64 or 128 padded dims): exact layers give
// the CPU's and the reference's results on both 16-bit paths, with partial 256-key tiles, packed sequences and
// HISA's sparse work lists (select()).
TEST(CudaEngine, WgmmaShapesMatchCpuAndReference) {
  REQUIRE_GPU();
  for (auto [heads, dim] : {std::pair<int64_t, int64_t>{64, 128}, {32, 64}, {60, 120}, {25, 50}}) {
    for (Path p : {Path::BF16, Path::F16}) {
      LayerSpec s;
      s.heads = heads;
      s.dim = dim;
      s.keys = 700;  // two whole 256-key tiles and a partial one
      s.queries = 12;
      s.packed = heads == 32;
      s.seed = uint64_t(heads + dim);
      Layer l = random_layer(s);
      force_path(l, p);
      SCOPED_TRACE("H=" + std::to_string(heads) + " D=" + std::to_string(dim) + " path " + path_name(p));
      for (auto [B, m] : {std::pair<int64_t, int64_t>{16, 5}, {64, 3}, {128, 2}}) {
        SelectionConfig c;
        c.topk = 96;
        c.block_size = B;
        c.blocks = m;
        expect_identical(l, c);
      }
    }
  }
}

TEST(CudaEngine, ManySmallChunksGiveTheSameResults) {
  REQUIRE_GPU();
  // A device-memory budget of a few rows per chunk: queries are split into many chunks, each with its own
  // key range, and the results must not change.
  LayerSpec s;
  s.packed = true;
  s.scales = true;
  s.keys = 300;
  s.queries = 23;
  s.seed = 12;
  Layer l = random_layer(s);
  for (auto c : configs_for(12)) {
    if (c.blocks != 3) continue;
    expect_identical(l, c, 6 * 1024);
    c.pool = PoolPrecision::Fp8;
    expect_identical(l, c, 6 * 1024);
  }
}

// The sweep's CUDA backend gives the CPU backend's DSA sets and J on exact layers, on every scoring path,
// with pooling in fp32 and fp8, over one chunk or many.
TEST(CudaSweepScorer, ExactLayersMatchTheCpuScorer) {
  REQUIRE_GPU();
  const std::vector<PoolVariant> variants{{1, PoolPrecision::Fp32}, {4, PoolPrecision::Fp32}, {4, PoolPrecision::Fp8},
                                          {16, PoolPrecision::Fp32}, {64, PoolPrecision::Fp32}};
  for (Path p : {Path::BF16, Path::F16, Path::F32}) {
    for (size_t chunk_bytes : {size_t(0), size_t(16 * 1024)}) {
      SCOPED_TRACE(std::string("path ") + path_name(p) + " chunk bytes " + std::to_string(chunk_bytes));
      LayerSpec s;
      s.packed = true;
      s.scales = true;
      s.keys = 320;  // whole blocks for every B: the pooled means (sums / 2^j) stay exact
      s.queries = 23;
      s.seed = 5;
      Layer l = random_layer(s);
      force_path(l, p);
      auto cpu = make_cpu_sweep_scorer(2);
      auto gpu = make_cuda_sweep_scorer(gpu_device(), chunk_bytes);
      std::vector<SweepScores> want, got;
      for (int64_t k : {1, 12, 400}) {
        cpu->set_layer(l.keys, k, variants);
        gpu->set_layer(l.keys, k, variants);
        cpu->score(l.batch, want);
        gpu->score(l.batch, got);
        ASSERT_EQ(got.size(), want.size());
        for (size_t i = 0; i < want.size(); ++i) {
          EXPECT_EQ(got[i].flat, want[i].flat) << "query " << i << " k " << k;
          ASSERT_EQ(got[i].J.size(), variants.size());
          for (size_t v = 0; v < variants.size(); ++v) {
            ASSERT_EQ(got[i].J[v].size(), want[i].J[v].size()) << "query " << i << " variant " << v;
            for (size_t j = 0; j < want[i].J[v].size(); ++j) {
              EXPECT_EQ(got[i].J[v][j], want[i].J[v][j]) << "query " << i << " variant " << v << " block " << j << " of "
                                                         << want[i].J[v].size() << " k " << k;
            }
          }
        }
      }
      EXPECT_GT(gpu->times().token_scores, 0.0);
    }
  }
}

// run_sweep on the GPU and on the CPU over a synthetic bf16 dump: the same curves up to near-ties, which on
// these dumps means identical curves but for a few queries' recall.
TEST(CudaSweepScorer, SweepOnTheGpuMatchesTheCpu) {
  REQUIRE_GPU();
  const std::string path = test::write_synth(::testing::TempDir() + "/hisa-cuda-sweep.h5",
                                             {.seq_len = 4096, .layers = 3, .heads = 8, .topk = 128, .queries = "sample:64"});
  SweepOptions o;
  o.files = {path};
  o.block_sizes = {32, 128};
  o.blocks = {2, 8, 32};
  o.progress = false;
  const SweepResult cpu = run_sweep(o);
  o.run.device = "cuda";
  const SweepResult gpu = run_sweep(o);
  EXPECT_EQ(gpu.scorer, "cuda");
  ASSERT_EQ(gpu.layers.size(), cpu.layers.size());
  for (size_t l = 0; l < cpu.layers.size(); ++l) {
    for (size_t v = 0; v < cpu.variants.size(); ++v) {
      for (size_t j = 0; j < cpu.blocks.size(); ++j) {
        const CurvePoint &a = cpu.layers[l].all.points[v][j], &b = gpu.layers[l].all.points[v][j];
        EXPECT_EQ(a.queries, b.queries);
        EXPECT_NEAR(a.recall_mean, b.recall_mean, 2e-3) << "layer " << l << " variant " << v << " m " << a.blocks;
        EXPECT_NEAR(a.scored_keys_mean, b.scored_keys_mean, 0.02 * a.scored_keys_mean);
      }
    }
  }
  std::remove(path.c_str());
}

// `hisa audit --parity` on the GPU: the CUDA engine against the CPU engine on a bf16 dump, every difference a
// near-tie.
TEST(CudaEngine, AuditParityHasNoUnexplainedDifferences) {
  REQUIRE_GPU();
  const std::string path = test::write_synth(::testing::TempDir() + "/hisa-cuda-parity.h5",
                                             {.seq_len = 8192, .layers = 3, .heads = 16, .head_dim = 128, .topk = 256,
                                              .queries = "sample:96"});
  AuditOptions o;
  o.files = {path};
  o.run.device = "cuda";
  o.parity = 64;
  o.progress = false;
  const AuditResult r = run_audit(o);
  int64_t queries = 0;
  for (const auto& l : r.layers) {
    ASSERT_TRUE(l.parity.has_value());
    queries += l.parity->queries;
    EXPECT_EQ(l.parity->unexplained, 0) << "layer " << l.layer;
  }
  EXPECT_EQ(queries, 3 * 64);
  std::remove(path.c_str());
}

TEST(CudaEngine, StageTimesAreReported) {
  REQUIRE_GPU();
  LayerSpec s;
  s.keys = 2000;
  s.queries = 30;
  Layer l = random_layer(s);
  SelectionConfig c;
  c.topk = 64;
  c.block_size = 32;
  c.blocks = 8;
  auto e = make_cuda_engine(gpu_device());
  e->set_layer(l.keys, c);
  std::vector<QueryAudit> a;
  e->audit(l.batch, a);
  const cuda::StageTimes t = cuda::last_stage_times(*e);
  EXPECT_GT(t.token_scores_ms, 0.0);
  EXPECT_GT(t.block_scores_ms, 0.0);
  EXPECT_GT(t.topk_ms, 0.0);
  EXPECT_GT(t.masses_ms, 0.0);
  EXPECT_GE(t.block_stage_ms, 0.0);
  EXPECT_GE(t.total_ms, t.block_stage_ms);
  auto cpu = make_cpu_engine(1);
  EXPECT_THROW(cuda::last_stage_times(*cpu), std::invalid_argument);
}

TEST(CudaEngine, LongRowsExact) {
  REQUIRE_GPU();
  LayerSpec s;
  s.keys = 131072;
  s.queries = 6;
  s.heads = 4;
  s.dim = 16;
  Layer l = random_layer(s);
  SelectionConfig c;
  c.topk = 4096;
  c.block_size = 128;
  c.blocks = 40;
  for (ForcedMode f : {ForcedMode::InBudget, ForcedMode::Extra}) {
    c.forced = f;
    auto gpu = make_cuda_engine(gpu_device());
    auto cpu = make_cpu_engine(0);
    gpu->set_layer(l.keys, c);
    cpu->set_layer(l.keys, c);
    std::vector<QueryAudit> ga, ca;
    gpu->audit(l.batch, ga);
    cpu->audit(l.batch, ca);
    std::vector<std::vector<int64_t>> hisa;
    gpu->select(l.batch, Method::Hisa, hisa);
    for (size_t i = 0; i < ga.size(); ++i) {
      SCOPED_TRACE("query " + std::to_string(i));
      EXPECT_EQ(ga[i].flat, ca[i].flat);
      EXPECT_EQ(ga[i].flat_scores, ca[i].flat_scores);
      EXPECT_EQ(ga[i].hisa, ca[i].hisa);
      EXPECT_EQ(ga[i].hisa_blocks, ca[i].hisa_blocks);
      EXPECT_EQ(ga[i].block, ca[i].block);
      EXPECT_EQ(hisa[i], ca[i].hisa);
      // 131,072 terms: the two summation orders may differ by up to ~n·2^-53 relative.
      EXPECT_LE(relative(ga[i].mass_visible, ca[i].mass_visible), 1e-10);
      EXPECT_LE(relative(ga[i].mass_flat, ca[i].mass_flat), 1e-12);
      EXPECT_LE(relative(ga[i].mass_hisa, ca[i].mass_hisa), 1e-12);
      EXPECT_LE(relative(ga[i].mass_block, ca[i].mass_block), 1e-12);
      EXPECT_EQ(ga[i].row_max, ca[i].row_max);
      EXPECT_EQ(ga[i].kth_score, ca[i].kth_score);
    }
  }
}

// ------------------------------------------------------------------------------------------------------
// Float layers: agreement up to near-ties.

// Near-ties by the library's parity rule (metrics/parity.hpp), the one `hisa audit --parity` reports with:
// kParityTolerance, or kFp8MmaParityTolerance for an engine on the fp8 tensor cores.

// Block choices: differences explained by near-ties of J (the reference's) at the cut of the ranked pool.
int64_t unexplained_block_differences(const Layer& l, int64_t i, const SelectionConfig& c, int64_t m, ForcedMode mode,
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
std::ostream& operator<<(std::ostream& out, const FloatReport& r) {
  return out << r.queries << " queries, flat differs from the reference in " << r.flat_differ
             << ", HISA block choice in " << r.block_choice_differ << ", unexplained " << r.unexplained;
}

// GPU audit and selections against the reference, allowing near-ties only (fp8_mma: an engine asked for the
// fp8 tensor cores; the wider tolerance applies only where it used them, as in `audit --parity`).
FloatReport compare_float(const Layer& l, const SelectionConfig& c, bool fp8_mma = false) {
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

void round_layer(Layer& l, ElementType t) {
  for (auto& v : l.keys.k) v = round_to(t, v);
  for (auto& v : l.batch.q) v = round_to(t, v);
}

TEST(CudaEngine, FloatLayersAgreeUpToNearTies) {
  REQUIRE_GPU();
  // fp32 values (CUDA-core path), and the same values rounded to bf16 and f16 (tensor-core paths: mma.sync with
  // 8 heads, wgmma on sm_90 with 64).
  for (ElementType t : {ElementType::F32, ElementType::BF16, ElementType::F16}) {
    for (bool packed : {false, true}) {
      LayerSpec s;
      s.integer = false;
      s.keys = 1500;
      s.queries = 24;
      s.heads = packed ? 64 : 8;
      s.dim = packed ? 128 : 64;
      s.packed = packed;
      s.seed = 21;
      Layer l = random_layer(s);
      if (t != ElementType::F32) round_layer(l, t);
      for (ForcedMode f : {ForcedMode::InBudget, ForcedMode::Extra}) {
        for (PoolPrecision pool : {PoolPrecision::Fp32, PoolPrecision::Fp8}) {
          SelectionConfig c;
          c.topk = 50;
          c.block_size = 32;
          c.blocks = 6;
          c.forced = f;
          c.pool = pool;
          SCOPED_TRACE(std::string(element_type_name(t)) + (packed ? " packed" : ""));
          const FloatReport r = compare_float(l, c);
          EXPECT_EQ(r.unexplained, 0);
          std::cout << "[ info ] " << element_type_name(t) << (packed ? " packed " : " ") << describe(c) << ": " << r
                    << "\n";
        }
      }
    }
  }
}

// fp32 keys against bf16 queries: on sm_90 the keys are split into three bf16 parts (ValueType::BF16x3) and
// scored on the tensor cores; differences from the reference may only be near-ties.
TEST(CudaEngine, Fp32KeysAgainstBf16QueriesAgreeUpToNearTies) {
  REQUIRE_GPU();
  Layer l = random_layer({.keys = 1500, .heads = 64, .dim = 128, .queries = 24, .integer = false, .packed = true, .seed = 23});
  for (auto& v : l.batch.q) v = round_to(ElementType::BF16, v);
  for (auto& v : l.keys.k) v *= 1.0f + 1e-6f;  // keep the keys inexact in bf16
  SelectionConfig c;
  c.topk = 50;
  c.block_size = 32;
  c.blocks = 6;
  const FloatReport r = compare_float(l, c);
  EXPECT_EQ(r.unexplained, 0);
  std::cout << "[ info ] fp32 keys, bf16 queries: " << r << "\n";
}

// The split that BF16x3 scoring relies on: three bf16 parts whose sum is the value exactly, for every value
// that Exactness calls splittable; tiny and huge values are not (they would leave subnormal or infinite parts).
TEST(SplitBf16, PartsSumToTheValueExactly) {
  std::mt19937_64 rng(5);
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  std::vector<float> values = {0.0f, -0.0f, 1.0f, 1.0f / 3.0f, -7.123456789f, 1e-30f, 3.0e38f, -3.0e38f};
  for (int i = 0; i < 10000; ++i) values.push_back(gauss(rng) * std::ldexp(1.0f, int(rng() % 60) - 30));
  for (float v : {1e-31f, 1e-40f, 3.3e38f, std::numeric_limits<float>::infinity()}) {
    EXPECT_FALSE(cuda::Exactness::splits_exactly(v)) << v;
  }
  for (float v : values) {
    ASSERT_TRUE(cuda::Exactness::splits_exactly(v)) << v;
    uint16_t hi = 0, mid = 0, lo = 0;
    cuda::split_bf16(v, hi, mid, lo);
    const double sum = double(bf16_to_float(hi)) + double(bf16_to_float(mid)) + double(bf16_to_float(lo));
    EXPECT_EQ(sum, double(v)) << v;
  }
}

// Near-ties on purpose: keys are 40 prototypes plus a perturbation of 1e-7 relative, so the scores form 40
// tight clusters whose internal order is decided by fp32 rounding, while the clusters are far apart. The cut
// of top-k falls inside a cluster; the GPU may order that cluster differently from the reference (the
// helper must explain every such difference), but nothing outside the cluster may change.
TEST(CudaEngine, NearTiedClustersDifferOnlyInsideTheCutCluster) {
  REQUIRE_GPU();
  LayerSpec s;
  s.integer = false;
  s.keys = 2000;
  s.queries = 24;
  s.heads = 8;
  s.dim = 64;
  s.seed = 33;
  Layer l = random_layer(s);
  std::mt19937_64 rng(5);
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  for (int64_t p = 40; p < l.keys.count; ++p) {
    for (int64_t d = 0; d < l.keys.dim; ++d) {
      const float proto = l.keys.k[size_t((p % 40) * l.keys.dim + d)];
      l.keys.k[size_t(p * l.keys.dim + d)] = proto * (1.0f + 1e-7f * gauss(rng));
    }
  }
  int64_t differ = 0;
  for (ForcedMode f : {ForcedMode::InBudget, ForcedMode::Extra}) {
    SelectionConfig c;
    c.topk = 130;  // not a multiple of the cluster size: the cut lies inside a cluster
    c.block_size = 16;
    c.blocks = 12;
    c.forced = f;
    const FloatReport r = compare_float(l, c);
    EXPECT_EQ(r.unexplained, 0);
    differ += r.flat_differ;
    std::cout << "[ info ] near-tied clusters " << describe(c) << ": " << r << "\n";
  }
  std::cout << "[ info ] near-tied clusters: " << differ << " queries whose flat selection differs (all explained)\n";
}

// Synthetic dumps of every element type (src/synth), as the loader would hand them over.
Layer from_synth(const LayerArrays& a) {
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

TEST(CudaEngine, SynthLayersOfEveryElementType) {
  REQUIRE_GPU();
  for (ElementType t : {ElementType::BF16, ElementType::F16, ElementType::F32, ElementType::FP8_E4M3}) {
    for (int64_t packed : {1, 2}) {
      SynthOptions o;
      o.seq_len = 4096;
      o.heads = 16;
      o.head_dim = 128;
      o.index_topk = 256;
      o.queries = {QueryMode::Sample, 24};
      o.dtype = t;
      o.packed = packed;
      o.seed = 5;
      for (int layer : {0, 1, 2}) {
        const Layer l = from_synth(synth_layer(o, 0, layer));
        SelectionConfig c;
        c.topk = 256;
        c.block_size = 64;
        c.blocks = 8;
        SCOPED_TRACE(std::string(element_type_name(t)) + " packed " + std::to_string(packed) + " layer " + std::to_string(layer));
        const FloatReport r = compare_float(l, c);
        EXPECT_EQ(r.unexplained, 0);
        std::cout << "[ info ] synth " << element_type_name(t) << " packed " << packed << " layer " << layer << ": " << r
                  << "\n";
      }
    }
  }
}

// fp8 operands on the fp8 tensor cores (--fp8-mma): not exact, so selections may differ from the reference only
// between tokens within kFp8MmaParityTolerance of the cut, and every DSA score within that tolerance of the
// reference score. Synthetic fp8 dumps (real scales) and random layers rounded to e4m3, shapes that take the
// fp8 kernel (64 and 32 heads; D = 128 and D = 100 padded to 128) and one that does not (16 heads: the exact
// bf16 path, so the wider tolerance is not needed there).
TEST(CudaEngine, Fp8TensorCoresAgreeUpToTheirTolerance) {
  REQUIRE_GPU();
  int major = 0, minor = 0;
  HISA_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, gpu_device()));
  HISA_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, gpu_device()));
  HISA_CUDA_CHECK(cudaSetDevice(gpu_device()));
  const bool hopper = major == 9 && minor == 0;
  if (hopper) {
    EXPECT_TRUE(cuda::fp8_mma_supported(64));
    EXPECT_TRUE(cuda::fp8_mma_supported(32));
  }
  EXPECT_EQ(cuda::fp8_mma_available(gpu_device()), cuda::fp8_mma_supported(64));
  EXPECT_FALSE(cuda::fp8_mma_supported(16));
  double worst = 0;
  // fp8_expected: the shape takes the fp8 kernel (on a GPU that has it), so the engine must say it used it.
  auto run = [&](const Layer& l, const std::string& what, bool fp8_expected) {
    for (PoolPrecision pool : {PoolPrecision::Fp32, PoolPrecision::Fp8}) {
      SelectionConfig c;
      c.topk = 200;
      c.block_size = 64;
      c.blocks = 8;
      c.pool = pool;
      SCOPED_TRACE(what + " " + describe(c));
      const FloatReport r = compare_float(l, c, true);
      EXPECT_EQ(r.unexplained, 0);
      EXPECT_EQ(r.fp8_scores, fp8_expected && cuda::fp8_mma_supported(64));
      worst = std::max(worst, r.worst_score_error);
      std::cout << "[ info ] fp8 tensor cores, " << what << " " << describe(c) << ": " << r << ", worst score error "
                << r.worst_score_error << " of the magnitude\n";
    }
  };
  for (int64_t heads : {64, 32, 16}) {
    SynthOptions o;
    o.seq_len = 4096;
    o.heads = heads;
    o.head_dim = 128;
    o.index_topk = 200;
    o.queries = {QueryMode::Sample, 24};
    o.dtype = ElementType::FP8_E4M3;
    o.packed = heads == 64 ? 2 : 1;
    o.seed = 9;
    run(from_synth(synth_layer(o, 0, 1)), "synth H=" + std::to_string(heads), heads != 16);
  }
  for (int64_t dim : {128, 100}) {
    Layer l = random_layer({.keys = 3000, .heads = 64, .dim = dim, .queries = 24, .integer = false, .packed = true, .seed = 41});
    round_layer(l, ElementType::FP8_E4M3);
    run(l, "random e4m3 D=" + std::to_string(dim), true);
  }
  // The fp8 MMA's accumulation shows (1e-5 to 1e-4 of the magnitude on an H200), above fp32 rounding (1e-7).
  if (cuda::fp8_mma_supported(64)) {
    EXPECT_GT(worst, 1e-6);
  }
  std::cout << "[ info ] fp8 tensor cores: worst score error " << worst << " of the magnitude (tolerance "
            << kFp8MmaParityTolerance << ")\n";
}

// What the engine accepts as fp8 operands: exactly the e4m3fn values, whose codes round-trip.
TEST(Fp8Codes, ExactnessAcceptsExactlyTheE4m3Values) {
  std::vector<float> e4m3;
  for (int code = 0; code < 256; ++code) {
    const float v = e4m3_to_float(uint8_t(code));
    if (!std::isnan(v)) e4m3.push_back(v);
  }
  cuda::Exactness yes;
  yes.reset(e4m3.data(), e4m3.size());
  EXPECT_TRUE(yes.e4m3());
  for (float off : {0.3f, 449.0f, 1.0625f, 0x1p-10f, -500.0f}) {
    std::vector<float> v = e4m3;
    v.push_back(off);
    cuda::Exactness no;
    no.reset(v.data(), v.size());
    EXPECT_FALSE(no.e4m3()) << off;
  }
  // A row's codes: one byte each, zero-padded to 128 bytes (64 16-bit units).
  std::vector<uint16_t> row(size_t(cuda::coded_dim(cuda::ValueType::E4M3, 3)), 0);
  const float values[3] = {1.0f, -448.0f, 0x1p-9f};
  cuda::encode_row(cuda::ValueType::E4M3, values, 3, row.data());
  ASSERT_EQ(64u, row.size());
  const auto* bytes = reinterpret_cast<const uint8_t*>(row.data());
  for (int d = 0; d < 3; ++d) EXPECT_EQ(values[d], e4m3_to_float(bytes[d]));
  for (int d = 3; d < 128; ++d) EXPECT_EQ(0, bytes[d]);
}

TEST(CudaEngine, Deterministic) {
  REQUIRE_GPU();
  LayerSpec s;
  s.integer = false;
  s.keys = 5000;
  s.queries = 40;
  s.heads = 16;
  s.dim = 128;
  Layer l = random_layer(s);
  round_layer(l, ElementType::BF16);
  SelectionConfig c;
  c.topk = 300;
  c.block_size = 64;
  c.blocks = 10;
  auto e = make_cuda_engine(gpu_device());
  e->set_layer(l.keys, c);
  std::vector<QueryAudit> a, b;
  e->audit(l.batch, a);
  e->audit(l.batch, b);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].flat, b[i].flat);
    EXPECT_EQ(a[i].flat_scores, b[i].flat_scores);
    EXPECT_EQ(a[i].hisa, b[i].hisa);
    EXPECT_EQ(a[i].mass_visible, b[i].mass_visible);
    EXPECT_EQ(a[i].mass_hisa, b[i].mass_hisa);
  }
}

// ------------------------------------------------------------------------------------------------------
// The top-k kernel on adversarial rows, against the CPU's topk_range (itself tested against a full sort).

void expect_topk_matches_cpu(const std::vector<std::vector<float>>& rows, int64_t k, const std::string& what) {
  SCOPED_TRACE(what + " k=" + std::to_string(k));
  const int64_t first = 1000;
  const auto got = cuda::topk_rows(rows, first, k, gpu_device());
  ASSERT_EQ(got.size(), rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    std::vector<int64_t> want;
    topk_range(rows[i], first, k, want);
    EXPECT_EQ(got[i], want) << "row " << i << " of length " << rows[i].size();
  }
}

TEST(CudaTopK, AdversarialRows) {
  REQUIRE_GPU();
  const float inf = std::numeric_limits<float>::infinity(), big = std::numeric_limits<float>::max();
  std::mt19937_64 rng(3);
  std::vector<std::vector<float>> rows;
  rows.push_back(std::vector<float>(5000, 1.5f));                 // all equal
  rows.push_back(std::vector<float>(5000, -inf));                 // all -inf
  rows.push_back(std::vector<float>(5000, 0.0f));                 // zeros of both signs
  for (size_t j = 0; j < rows.back().size(); j += 2) rows.back()[j] = -0.0f;
  std::vector<float> huge(7000);
  for (auto& v : huge) v = (rng() & 1 ? big : -big) * float(rng() % 4) / 3.0f;
  rows.push_back(huge);                                           // huge values, heavy ties
  std::vector<float> mixed(9000);
  for (auto& v : mixed) {
    const int x = int(rng() % 7);
    v = x == 0 ? -inf : x == 1 ? inf : x == 2 ? 0.0f : float(int(rng() % 11) - 5) * 1e-30f;
  }
  rows.push_back(mixed);                                          // infinities, tiny values, zeros
  rows.push_back({});                                             // empty
  rows.push_back({2.0f});
  for (int64_t k : {1, 7, 64, 1000, 2048, 4096}) expect_topk_matches_cpu(rows, k, "adversarial");

  // Lengths around k, including exactly k and k ± 1.
  for (int64_t k : {1, 100, 2048, 4096}) {
    std::vector<std::vector<float>> around;
    for (int64_t len : {k - 1, k, k + 1, 2 * k}) {
      if (len < 0) continue;
      std::vector<float> r(static_cast<size_t>(len));
      for (auto& v : r) v = float(int(rng() % 50)) * 0.25f;
      around.push_back(r);
    }
    expect_topk_matches_cpu(around, k, "around k");
  }
}

// HISA's block choice on the GPU (cuda/block_choice.cu) keeps exactly what keep_blocks keeps, on J rows with
// ties, infinities and spans of every size, in both forced modes.
TEST(CudaBlockChoice, KeepsWhatKeepBlocksKeeps) {
  REQUIRE_GPU();
  HISA_CUDA_CHECK(cudaSetDevice(gpu_device()));
  cuda::Stream stream;
  std::mt19937_64 rng(17);
  const float inf = std::numeric_limits<float>::infinity();
  const int width = 300, base = 40, rows = 64;
  std::vector<float> j(size_t(rows) * width);
  std::vector<int> first(rows), last(rows);
  for (int r = 0; r < rows; ++r) {
    const int kind = r % 4;
    for (int b = 0; b < width; ++b) {
      const int x = int(rng() % 9);
      float v = float(int(rng() % 5)) * 0.5f;  // heavy ties
      if (kind == 1) v = 1.0f;                  // all equal
      if (kind == 2) v = x == 0 ? inf : x == 1 ? -inf : v;
      if (kind == 3) v = float(rng() % 100000) * 1e-3f;
      j[size_t(r) * width + b] = v;
    }
    const int len = r < 8 ? r + 1 : 1 + int(rng() % width);  // 1..8 blocks first, then any
    first[r] = base + int(rng() % (width - len + 1));
    last[r] = first[r] + len - 1;
  }
  cuda::DeviceArray<float> dj;
  cuda::DeviceArray<int> dfirst, dlast;
  dj.upload(j.data(), j.size(), stream.get());
  dfirst.upload(first.data(), first.size(), stream.get());
  dlast.upload(last.data(), last.size(), stream.get());
  cuda::BlockChoice choice;
  for (int m : {1, 2, 3, 5, 16, 64, 299}) {
    for (ForcedMode mode : {ForcedMode::InBudget, ForcedMode::Extra}) {
      SCOPED_TRACE("m=" + std::to_string(m) + " forced=" + std::string(forced_mode_name(mode)));
      const cuda::BlockRows br{dj.data(), width, base, dfirst.data(), dlast.data(), rows};
      choice.keep(br, m, mode == ForcedMode::Extra, stream.get());
      const int cap = cuda::BlockChoice::capacity(m);
      std::vector<int> kept(size_t(rows) * cap), count(rows);
      HISA_CUDA_CHECK(cudaMemcpyAsync(kept.data(), choice.kept(), kept.size() * sizeof(int), cudaMemcpyDeviceToHost, stream.get()));
      HISA_CUDA_CHECK(cudaMemcpyAsync(count.data(), choice.kept_count(), count.size() * sizeof(int), cudaMemcpyDeviceToHost, stream.get()));
      stream.synchronize();
      for (int r = 0; r < rows; ++r) {
        const BlockSpan span{first[r], last[r]};
        const std::span<const float> row(j.data() + size_t(r) * width + (first[r] - base), size_t(span.size()));
        std::vector<int64_t> want;
        keep_blocks(row, span, m, mode, want);
        const std::vector<int64_t> got(kept.begin() + size_t(r) * cap, kept.begin() + size_t(r) * cap + count[r]);
        EXPECT_EQ(got, want) << "row " << r << " blocks [" << first[r] << ", " << last[r] << "]";
      }
    }
  }
}

TEST(CudaTopK, LongRows) {
  REQUIRE_GPU();
  std::mt19937_64 rng(9);
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  std::vector<std::vector<float>> rows;
  std::vector<float> r(131072);
  for (auto& v : r) v = gauss(rng);
  rows.push_back(r);  // distinct values
  for (auto& v : r) v = round_to(ElementType::BF16, gauss(rng));
  rows.push_back(r);  // bf16-coarse values: many ties
  for (auto& v : r) v = float(int(rng() % 3));
  rows.push_back(r);  // three levels: the cut-off bucket holds ~44K keys (no shared-memory shortcut)
  for (auto& v : r) v = 1e-3f * float(int(rng() % 100000));
  rows.push_back(r);
  std::vector<float> one_big(131072, 0.5f);
  one_big[77777] = 2.0f;
  rows.push_back(one_big);
  for (int64_t k : {2048, 4096}) expect_topk_matches_cpu(rows, k, "131072-long");
}

TEST(CudaTopK, RandomRowsAgainstCpu) {
  REQUIRE_GPU();
  std::mt19937_64 rng(11);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<std::vector<float>> rows;
    const int64_t k = std::uniform_int_distribution<int64_t>(1, 600)(rng);
    for (int i = 0; i < 10; ++i) {
      const int64_t n = std::uniform_int_distribution<int64_t>(0, 3000)(rng);
      const int levels = std::uniform_int_distribution<int>(1, 50)(rng);
      std::vector<float> row(static_cast<size_t>(n));
      for (auto& v : row) {
        const int x = std::uniform_int_distribution<int>(-levels, levels)(rng);
        v = x == 0 ? (rng() & 1 ? -0.0f : 0.0f) : (x == -levels ? -INFINITY : float(x) * 0.37f);
      }
      rows.push_back(row);
    }
    expect_topk_matches_cpu(rows, k, "trial " + std::to_string(trial));
  }
}

TEST(CudaEngine, FactoryCreatesTheCudaEngine) {
  REQUIRE_GPU();
  auto e = make_engine("cuda", 1);
  EXPECT_EQ(e->name().rfind("cuda", 0), 0u) << e->name();
  auto a = make_engine("auto", 1);
  EXPECT_EQ(a->name().rfind("cuda", 0), 0u) << a->name();
  std::cout << "[ info ] engine: " << e->name() << "\n";
}

}  // namespace
}  // namespace hisa
