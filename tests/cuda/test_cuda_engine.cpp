// The CUDA engine against the CPU engine and the reference (select/reference.cpp): exact inputs give identical
// audits and selections on every path and chunking; float inputs agree up to near-ties.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdio>
#include <random>
#include <utility>

#include "cuda/device_buffer.hpp"
#include "pipelines/audit.hpp"
#include "../synth_dump.hpp"

#include "gpu_test_util.hpp"

namespace hisa {
namespace {

using namespace gpu_test;

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

// 23 queries, some of packed sequences, over 300 keys: with a 6 KiB chunk budget, many chunks of their own key ranges.
Layer many_chunk_layer(uint64_t seed, bool scales = false) {
  LayerSpec s;
  s.packed = true;
  s.scales = scales;
  s.keys = 300;
  s.queries = 23;
  s.seed = seed;
  return random_layer(s);
}

TEST(CudaEngine, ManySmallChunksGiveTheSameResults) {
  REQUIRE_GPU();
  // A device-memory budget of a few rows per chunk: queries are split into many chunks, each with its own
  // key range, and the results must not change.
  Layer l = many_chunk_layer(12, true);
  for (auto c : configs_for(12)) {
    if (c.blocks != 3) continue;
    expect_identical(l, c, 6 * 1024);
    c.pool = PoolPrecision::Fp8;
    expect_identical(l, c, 6 * 1024);
  }
}

// select() takes host queries as exact in bf16 and checks each chunk's values as it encodes them (QueryStore):
// one value off the bf16 grid, in the chunk that runs first, last or between, sends the batch back to the
// check-first path (257: f16; 4097: fp32), and the selections are the reference's. Were the value encoded
// unchecked, it would be scored as 256 or 4096.
TEST(CudaEngine, QueriesOffTheBf16GridAreCaughtInAnyChunk) {
  REQUIRE_GPU();
  for (const int64_t query : {0, 11, 22}) {
    for (const float value : {257.0f, 4097.0f}) {
      SCOPED_TRACE("query " + std::to_string(query) + " holds " + std::to_string(value));
      Layer l = many_chunk_layer(31);
      l.batch.q[size_t(query * l.batch.heads * l.batch.dim + 5)] = value;
      for (auto c : configs_for(13)) {
        if (c.blocks == 3) expect_identical(l, c, 6 * 1024);
      }
    }
  }
}

// select() overwrites the caller's rows in place (it resizes them rather than clearing them first): rows left from
// an earlier call, longer or shorter than this call's, and rows past the batch, leave nothing behind.
TEST(CudaEngine, SelectOverwritesTheCallersRowsWhateverTheyHeld) {
  REQUIRE_GPU();
  const Layer l = many_chunk_layer(41);
  SelectionConfig c = configs_for(13).front();
  auto gpu = make_cuda_engine(gpu_device(), 6 * 1024);
  gpu->set_layer(l.keys, c);
  for (const Method method : {Method::Flat, Method::Hisa, Method::Block}) {
    std::vector<std::vector<int64_t>> out(size_t(l.batch.count + 5));
    for (size_t i = 0; i < out.size(); ++i) out[i].assign(i % 3 == 0 ? 40 : i % 3, int64_t(-7));
    gpu->select(l.batch, method, out);
    ASSERT_EQ(out.size(), size_t(l.batch.count));
    for (int64_t i = 0; i < l.batch.count; ++i) {
      const auto want = method == Method::Flat   ? reference::flat(l.batch, i, l.keys, c)
                        : method == Method::Hisa ? reference::hisa(l.batch, i, l.keys, c)
                                                 : reference::block_sparse(l.batch, i, l.keys, c);
      EXPECT_EQ(out[size_t(i)], want) << "query " << i << " " << method_name(method);
    }
  }
}

// A batch that carries its queries' bf16 codes (QueryBatch::q_bf16) is selected from the codes: pageable codes
// through the pinned pieces; pinned codes by the copy engine straight from the caller's memory when no row needs
// padding (8 or 64 heads, D a multiple of 16; 64 heads and D = 128 take the wgmma kernel), through the pieces
// when one does (5 heads, or D = 20); in one chunk or many. The codes are another layer's queries, so the
// selections follow the codes, not the floats beside them; only the 16 values the engine spot-checks against q
// (evenly spaced, QueryStore::check_codes_sample) agree.
TEST(CudaEngine, Bf16CodesOfTheQueriesAreWhatIsScored) {
  REQUIRE_GPU();
  for (const auto& [heads, dim] : {std::pair<int64_t, int64_t>{8, 16}, {5, 16}, {8, 20}, {64, 128}}) {
    for (const bool pinned : {false, true}) {
      for (const size_t budget : {size_t(0), size_t(6 * 1024)}) {
        SCOPED_TRACE("heads " + std::to_string(heads) + " dim " + std::to_string(dim) + (pinned ? " pinned" : " pageable") +
                     " budget " + std::to_string(budget));
        LayerSpec s;
        s.heads = heads;
        s.dim = dim;
        s.packed = true;
        s.queries = 23;
        s.seed = 51;
        const Layer scored = random_layer(s);  // whose queries' codes are handed over
        s.seed = 52;
        const Layer floats = random_layer(s);  // whose queries' floats go beside them
        std::vector<uint16_t> pageable(scored.batch.q.size());
        cuda::PinnedArray<uint16_t> locked;
        uint16_t* codes = pinned ? locked.reserve(pageable.size()) : pageable.data();
        for (size_t i = 0; i < pageable.size(); ++i) codes[i] = uint16_t(std::bit_cast<uint32_t>(scored.batch.q[i]) >> 16);
        QueryBatch b = scored.batch;  // its positions and weights, the other layer's floats
        b.q = floats.batch.q;
        const size_t n = b.q.size();
        for (size_t j = 0; j < 16; ++j) b.q[j * (n - 1) / 15] = scored.batch.q[j * (n - 1) / 15];
        b.q_bf16 = codes;
        const SelectionConfig c = configs_for(13).front();
        auto gpu = make_cuda_engine(gpu_device(), budget);
        gpu->set_layer(scored.keys, c);
        for (const Method method : {Method::Flat, Method::Hisa}) {
          std::vector<std::vector<int64_t>> out;
          gpu->select(b, method, out);
          ASSERT_EQ(out.size(), size_t(b.count));
          for (int64_t i = 0; i < b.count; ++i) {
            const auto want = method == Method::Flat ? reference::flat(scored.batch, i, scored.keys, c)
                                                     : reference::hisa(scored.batch, i, scored.keys, c);
            EXPECT_EQ(out[size_t(i)], want) << "query " << i << " " << method_name(method);
          }
        }
      }
    }
  }
}

// Codes that are not q's values where the engine looks (a batch copied, then its q edited) are refused, and the
// caller's rows are left empty.
TEST(CudaEngine, Bf16CodesThatAreNotTheQueriesAreRefused) {
  REQUIRE_GPU();
  LayerSpec s;
  s.heads = 8;
  const Layer l = random_layer(s);
  std::vector<uint16_t> codes(l.batch.q.size());
  for (size_t i = 0; i < codes.size(); ++i) codes[i] = uint16_t(std::bit_cast<uint32_t>(l.batch.q[i]) >> 16);
  QueryBatch b = l.batch;
  b.q_bf16 = codes.data();
  b.q.back() += 1.0f;  // the last value is always checked
  auto gpu = make_cuda_engine(gpu_device());
  gpu->set_layer(l.keys, configs_for(13).front());
  std::vector<std::vector<int64_t>> out(3, std::vector<int64_t>{1, 2});
  EXPECT_THROW(gpu->select(b, Method::Flat, out), std::invalid_argument);
  EXPECT_TRUE(out.empty());
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

// Every stage an audit and a select run on the GPU is timed; times add up over calls, so a call's are a difference.
// The GPU's block bounds (what an audit of a layer on the GPU certifies with): BlockBounds' formulas summed in
// another order, so each bound is the CPU's or one float step from it, and each bounds every visible score of its
// block. Exact layers, Gaussian ones with key scales and k_start > 0, and fp32 overflow (+inf bounds).
TEST(CudaEngine, BlockBoundsAreTheCpusToTheLastBit) {
  REQUIRE_GPU();
  std::vector<Layer> layers;
  for (bool integer : {true, false}) {
    LayerSpec s;
    s.keys = 1500;
    s.heads = 40;  // more heads than a warp's lanes
    s.dim = 72;
    s.queries = 30;
    s.integer = integer;
    s.packed = !integer;
    s.scales = !integer;
    layers.push_back(random_layer(s));
  }
  layers.push_back(test::overflow_layer());
  int64_t bounds = 0, off_by_a_step = 0;
  for (const Layer& l : layers) {
    for (int64_t B : {1, 16, 128}) {
      SelectionConfig c;
      c.topk = 16;
      c.block_size = B;
      c.blocks = 4;
      auto cpu = make_cpu_engine(2);
      auto gpu = make_cuda_engine(gpu_device());
      cpu->set_layer(l.keys, c);
      gpu->set_layer(l.keys, c);
      std::vector<std::vector<float>> want, got;
      cpu->block_bounds(l.batch, want);
      gpu->block_bounds(l.batch, got);
      std::vector<QueryAudit> audits;
      gpu->audit(l.batch, audits);
      ASSERT_EQ(got.size(), want.size());
      for (size_t i = 0; i < got.size(); ++i) {
        ASSERT_EQ(got[i].size(), want[i].size()) << "query " << i << " B " << B;
        ASSERT_EQ(got[i].size(), audits[i].block_best.size()) << "query " << i << " B " << B;
        for (size_t j = 0; j < got[i].size(); ++j) {
          const float g = got[i][j], w = want[i][j];
          ++bounds;
          if (g != w) {
            ++off_by_a_step;
            EXPECT_TRUE(g == std::nextafter(w, INFINITY) || g == std::nextafter(w, -INFINITY))
                << "query " << i << " block " << j << " B " << B << ": " << g << " against " << w;
          }
          EXPECT_GE(g, audits[i].block_best[j]) << "query " << i << " block " << j << " B " << B;
        }
      }
    }
  }
  std::printf("GPU block bounds: %lld of %lld one float step from the CPU's, none further\n", (long long)off_by_a_step,
              (long long)bounds);
  EXPECT_LT(off_by_a_step * 100, bounds);  // the summation order moves the rare bound, not the many
}

// The GPU's score row (what the report's pictures of a layer on the GPU draw): the CPU's up to fp32 rounding.
TEST(CudaEngine, ScoreRowIsTheCpusUpToRounding) {
  REQUIRE_GPU();
  for (bool integer : {true, false}) {
    LayerSpec s;
    s.keys = 2000;
    s.heads = 40;
    s.dim = 72;
    s.queries = 6;
    s.integer = integer;
    s.packed = true;
    s.scales = true;
    const Layer l = random_layer(s);
    SelectionConfig c;
    c.topk = 16, c.block_size = 32, c.blocks = 4;
    auto cpu = make_cpu_engine(1);
    auto gpu = make_cuda_engine(gpu_device());
    cpu->set_layer(l.keys, c);
    gpu->set_layer(l.keys, c);
    std::vector<float> want, got;
    for (int64_t i = 0; i < l.batch.count; ++i) {
      cpu->score_row(l.batch, i, want);
      gpu->score_row(l.batch, i, got);
      ASSERT_EQ(got.size(), want.size()) << "query " << i;
      for (size_t k = 0; k < got.size(); ++k) {
        if (integer) {
          EXPECT_EQ(got[k], want[k]) << "query " << i << " key " << k;  // exact sums in any order
          continue;
        }
        // fp32 sums in two orders differ by a few roundings of the magnitude Σ_h |w|·|q·k|·scale, not of the
        // score (which cancels across heads of either sign).
        const int64_t s_key = l.batch.k_start[size_t(i)] + int64_t(k);
        double magnitude = 0;
        for (int64_t h = 0; h < l.batch.heads; ++h) {
          double dot = 0;
          for (int64_t d = 0; d < l.batch.dim; ++d) dot += double(l.batch.q_row(i, h)[d]) * double(l.keys.row(s_key)[d]);
          magnitude += std::fabs(double(l.batch.w_row(i)[h]) * dot);
        }
        magnitude *= double(l.keys.k_scale[size_t(s_key)]);
        EXPECT_NEAR(got[k], want[k], 1e-6 * magnitude + 1e-30) << "query " << i << " key " << k;
      }
    }
  }
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
  const StageTimes t = e->times();
  EXPECT_GT(t.pooling, 0.0);
  EXPECT_GT(t.token_scores, 0.0);
  EXPECT_GT(t.block_scores, 0.0);
  EXPECT_GT(t.topk, 0.0);
  EXPECT_GT(t.masses, 0.0);
  EXPECT_GT(t.block_choice, 0.0);
  EXPECT_GE(t.calls, t.block_choice);
  std::vector<std::vector<int64_t>> hisa;
  e->select(l.batch, Method::Hisa, hisa);
  const StageTimes d = e->times() - t;
  EXPECT_GT(d.calls, 0.0);
  EXPECT_GT(d.block_choice, 0.0);
  EXPECT_GT(d.token_scores, 0.0);
  EXPECT_EQ(d.masses, 0.0);  // select() computes no masses
  EXPECT_EQ(d.pooling, 0.0);
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
