// Every fast selection path against the reference (src/select/reference.cpp), on exact and
// adversarial inputs, plus the properties docs/definitions.md states.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <set>

#include "random_layer.hpp"
#include "select/engine.hpp"
#include "select/reference.hpp"
#include "select/topk.hpp"

namespace hisa {
namespace {

using test::Layer;
using test::LayerSpec;
using test::configs_for;
using test::random_layer;

// The CPU engine's audit of every query of the layer.
std::vector<QueryAudit> audit_layer(const Layer& l, const SelectionConfig& c, int threads = 2) {
  auto engine = make_cpu_engine(threads);
  engine->set_layer(l.keys, c);
  std::vector<QueryAudit> audit;
  engine->audit(l.batch, audit);
  return audit;
}

// Runs audit and every select method, and checks each against the reference, exactly.
void expect_matches_reference(const Layer& l, const SelectionConfig& c, int threads = 2) {
  auto engine = make_cpu_engine(threads);
  engine->set_layer(l.keys, c);
  std::vector<QueryAudit> audit;
  engine->audit(l.batch, audit);
  std::vector<std::vector<int64_t>> flat, hisa, block;
  engine->select(l.batch, Method::Flat, flat);
  engine->select(l.batch, Method::Hisa, hisa);
  engine->select(l.batch, Method::Block, block);
  for (int64_t i = 0; i < l.batch.count; ++i) {
    SCOPED_TRACE("query " + std::to_string(i) + " B=" + std::to_string(c.block_size) + " m=" +
                 std::to_string(c.blocks) + " k=" + std::to_string(c.topk) + " forced=" +
                 std::string(forced_mode_name(c.forced)));
    const auto ref_flat = reference::flat(l.batch, i, l.keys, c);
    const auto ref_hisa = reference::hisa(l.batch, i, l.keys, c);
    const auto ref_block = reference::block_sparse(l.batch, i, l.keys, c);
    EXPECT_EQ(audit[size_t(i)].flat, ref_flat);
    EXPECT_EQ(audit[size_t(i)].hisa, ref_hisa);
    EXPECT_EQ(audit[size_t(i)].block, ref_block);
    EXPECT_EQ(audit[size_t(i)].hisa_blocks, reference::hisa_blocks(l.batch, i, l.keys, c, c.blocks, c.forced));
    EXPECT_EQ(flat[size_t(i)], ref_flat);
    EXPECT_EQ(hisa[size_t(i)], ref_hisa);
    EXPECT_EQ(block[size_t(i)], ref_block);
  }
}

TEST(Selection, MatchesReferenceOnExactInputs) {
  for (uint64_t seed : {1, 2, 3}) {
    LayerSpec s;
    s.seed = seed;
    s.keys = 173;  // partial last block for every B > 1
    Layer l = random_layer(s);
    for (const auto& c : configs_for(12)) expect_matches_reference(l, c);
  }
}

TEST(Selection, ExactTiesResolveToLowerPositions) {
  LayerSpec s;
  s.value_range = 1;  // values in {-1, 0, 1}: scores collide constantly
  s.dim = 4;
  s.heads = 2;
  Layer l = random_layer(s);
  for (const auto& c : configs_for(20)) expect_matches_reference(l, c);
  // Identical keys everywhere: every score ties, so the k lowest visible positions win.
  for (int64_t p = 1; p < l.keys.count; ++p) std::copy_n(l.keys.row(0), l.keys.dim, l.keys.k.data() + p * l.keys.dim);
  SelectionConfig c;
  c.topk = 5;
  c.block_size = 8;
  c.blocks = 2;
  auto engine = make_cpu_engine(1);
  engine->set_layer(l.keys, c);
  std::vector<std::vector<int64_t>> flat;
  engine->select(l.batch, Method::Flat, flat);
  const int64_t last = l.batch.count - 1;
  EXPECT_EQ(flat[size_t(last)], (std::vector<int64_t>{0, 1, 2, 3, 4}));
}

TEST(Selection, AllZeroScoresAndNegativeWeights) {
  LayerSpec s;
  Layer l = random_layer(s);
  // Every query head is negative along a positive key direction: ReLU zeroes every dot product.
  for (auto& v : l.keys.k) v = std::fabs(v) + 1.0f;
  for (auto& v : l.batch.q) v = -std::fabs(v) - 1.0f;
  for (const auto& c : configs_for(7)) expect_matches_reference(l, c);
  auto engine = make_cpu_engine(1);
  SelectionConfig c;
  c.topk = 7;
  engine->set_layer(l.keys, c);
  std::vector<std::vector<int64_t>> flat;
  engine->select(l.batch, Method::Flat, flat);
  EXPECT_EQ(flat.back(), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6}));
  // Only negative weights: every score is <= 0, and the best are the zeros.
  Layer n = random_layer(s);
  for (auto& v : n.batch.w) v = -std::fabs(v) - 1.0f;
  for (const auto& cfg : configs_for(9)) expect_matches_reference(n, cfg);
}

TEST(Selection, RowsShorterThanKSelectEverything) {
  LayerSpec s;
  s.keys = 40;
  Layer l = random_layer(s);
  SelectionConfig c;
  c.topk = 64;
  c.block_size = 4;
  c.blocks = 2;
  expect_matches_reference(l, c);
  for (const auto& a : audit_layer(l, c, 1)) {
    EXPECT_EQ(int64_t(a.flat.size()), a.visible);
    EXPECT_TRUE(std::isinf(a.kth_score));
  }
}

// docs/definitions.md, "Edge cases": a one-key layer (L = 1) has one visible key for its only query, so every method selects
// position 0, whatever k, B and m.
TEST(Selection, OneKeyLayerSelectsPositionZero) {
  LayerSpec s;
  s.keys = 1;
  s.queries = 1;
  Layer l = random_layer(s);
  for (const auto& c : configs_for(4)) {
    expect_matches_reference(l, c);
    const std::vector<QueryAudit> audit = audit_layer(l, c, 1);
    ASSERT_EQ(audit.size(), 1u);
    const std::vector<int64_t> zero{0};
    EXPECT_EQ(audit[0].flat, zero);
    EXPECT_EQ(audit[0].hisa, zero);
    EXPECT_EQ(audit[0].block, zero);
    EXPECT_EQ(audit[0].hisa_blocks, zero);
    EXPECT_EQ(audit[0].mass_visible, 1.0);
  }
}

// H = 1 and head dimensions that are no multiple of 8 (nor of any SIMD width): the GEMM tiles' remainders.
TEST(Selection, OneHeadAndOddHeadDimsMatchReference) {
  for (int64_t dim : {1, 7, 13}) {
    for (int64_t heads : {1, 3}) {
      SCOPED_TRACE("D=" + std::to_string(dim) + " H=" + std::to_string(heads));
      LayerSpec s;
      s.keys = 97;
      s.dim = dim;
      s.heads = heads;
      s.packed = true;
      s.scales = true;
      Layer l = random_layer(s);
      for (const auto& c : configs_for(9)) expect_matches_reference(l, c);
      SelectionConfig fp8;
      fp8.topk = 9;
      fp8.block_size = 8;
      fp8.blocks = 3;
      fp8.pool = PoolPrecision::Fp8;
      expect_matches_reference(l, fp8);
    }
  }
}

// docs/definitions.md, "Edge cases": scores that overflow fp32 follow the Definitions: +inf ranks first, a NaN (inf - inf)
// is -inf, ties by lower position; coverage stays a share in [0, 1] (a score equal to the row's maximum
// counts 1 in the softmax mass, also when the maximum is infinite).
TEST(Selection, OverflowedScoresFollowTheNanPolicy) {
  const Layer l = test::overflow_layer();
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(reference::score(l.batch, 0, l.keys, 4), inf);
  EXPECT_EQ(reference::score(l.batch, 0, l.keys, 0), 1.5f * 73786976294838206464.0f);  // 1.5 · 2^66
  EXPECT_EQ(reference::score(l.batch, 1, l.keys, 4), -inf);   // inf - inf = NaN
  EXPECT_EQ(reference::score(l.batch, 1, l.keys, 16), 0.0f);  // ReLU(-inf) = 0
  SelectionConfig c;
  c.topk = 6;
  c.block_size = 4;
  c.blocks = 2;
  const std::vector<QueryAudit> audit = audit_layer(l, c);
  ASSERT_EQ(audit.size(), 3u);
  EXPECT_EQ(audit[0].flat, (std::vector<int64_t>{4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(audit[1].flat, (std::vector<int64_t>{0, 1, 2, 3, 12, 13}));
  EXPECT_EQ(audit[2].flat, (std::vector<int64_t>{4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(audit[0].row_max, inf);
  EXPECT_EQ(audit[2].row_max, -inf);
  // Query 0: the mass is on the eight +inf keys. Query 1: on the twelve zeros. Query 2: eight equal -inf.
  EXPECT_EQ(audit[0].mass_visible, 8.0);
  EXPECT_EQ(audit[0].mass_flat, 6.0);
  EXPECT_EQ(audit[1].mass_visible, 12.0);
  EXPECT_EQ(audit[1].mass_flat, 6.0);
  EXPECT_EQ(audit[2].mass_visible, 8.0);
  EXPECT_EQ(audit[2].mass_flat, 6.0);
  for (const auto& a : audit) {
    for (double mass : {a.mass_hisa, a.mass_block}) {
      EXPECT_TRUE(std::isfinite(mass));
      EXPECT_LE(mass, a.mass_visible);
    }
  }
  // No summation order changes a score here: the engine equals the reference exactly.
  for (const auto& cfg : configs_for(6)) expect_matches_reference(l, cfg);
}

TEST(Selection, HisaEqualsDsaWhenBudgetCoversTheRow) {
  LayerSpec s;
  s.keys = 256;
  Layer l = random_layer(s);
  SelectionConfig c;
  c.topk = 16;
  c.block_size = 16;
  c.blocks = 16;  // m·B = 256 ≥ every visible length
  for (const auto& a : audit_layer(l, c)) EXPECT_EQ(a.hisa, a.flat);
}

TEST(Selection, PackedSequencesAndScales) {
  LayerSpec s;
  s.packed = true;
  s.scales = true;
  s.keys = 211;
  for (uint64_t seed : {4, 5}) {
    s.seed = seed;
    Layer l = random_layer(s);
    for (const auto& c : configs_for(10)) expect_matches_reference(l, c);
  }
}

TEST(Selection, Fp8PoolingMatchesReference) {
  LayerSpec s;
  s.keys = 128;  // whole blocks only, so the pooled means are exact before quantisation
  Layer l = random_layer(s);
  for (auto c : configs_for(10)) {
    c.pool = PoolPrecision::Fp8;
    expect_matches_reference(l, c);
  }
}

TEST(Selection, DsaTokenInKeptBlockIsAlwaysInHisa) {
  for (uint64_t seed : {7, 8, 9}) {
    LayerSpec s;
    s.integer = false;
    s.seed = seed;
    s.keys = 700;
    s.queries = 30;
    Layer l = random_layer(s);
    for (const auto& c : configs_for(24)) {
      auto engine = make_cpu_engine(2);
      engine->set_layer(l.keys, c);
      std::vector<QueryAudit> audit;
      engine->audit(l.batch, audit);
      for (const auto& a : audit) {
        std::set<int64_t> kept(a.hisa_blocks.begin(), a.hisa_blocks.end());
        std::set<int64_t> hisa(a.hisa.begin(), a.hisa.end());
        int64_t in_kept = 0, common = 0;
        for (int64_t s : a.flat) {
          if (kept.count(s / c.block_size)) {
            ++in_kept;
            EXPECT_TRUE(hisa.count(s)) << "DSA token " << s << " in a kept block is missing from HISA";
          }
          common += hisa.count(s);
        }
        EXPECT_EQ(common, in_kept);
        if (int64_t(a.flat.size()) == c.topk && int64_t(a.hisa.size()) == c.topk) {
          const double r = double(common) / double(c.topk);
          const double iou = double(common) / double(2 * c.topk - common);
          EXPECT_NEAR(iou, r / (2 - r), 1e-12);
        }
      }
    }
  }
}

TEST(Selection, ResultsDoNotDependOnThreadCount) {
  LayerSpec s;
  s.integer = false;
  s.keys = 3000;
  s.queries = 40;
  s.heads = 8;
  s.dim = 32;
  Layer l = random_layer(s);
  SelectionConfig c;
  c.topk = 64;
  c.block_size = 32;
  c.blocks = 8;
  std::vector<QueryAudit> one, two;
  auto e1 = make_cpu_engine(1), e2 = make_cpu_engine(2);
  e1->set_layer(l.keys, c);
  e2->set_layer(l.keys, c);
  e1->audit(l.batch, one);
  e2->audit(l.batch, two);
  for (size_t i = 0; i < one.size(); ++i) {
    EXPECT_EQ(one[i].flat, two[i].flat);
    EXPECT_EQ(one[i].hisa, two[i].hisa);
    EXPECT_EQ(one[i].block, two[i].block);
    EXPECT_EQ(one[i].flat_scores, two[i].flat_scores);
    EXPECT_EQ(one[i].mass_visible, two[i].mass_visible);
  }
}

// An engine is prepared for audit/select (set_layer) or for the sweep (set_sweep_layer), and says so when used for
// the other; the sweep's DSA sets are the audit's.
TEST(Selection, EnginePreparedForOneUseRefusesTheOther) {
  LayerSpec s;
  s.keys = 200;
  s.queries = 5;
  Layer l = random_layer(s);
  SelectionConfig c;
  c.topk = 16;
  c.block_size = 8;
  c.blocks = 4;
  auto e = make_cpu_engine(1);
  std::vector<QueryAudit> audit;
  std::vector<SweepScores> sweep;
  std::vector<std::vector<int64_t>> flat;
  EXPECT_THROW(e->audit(l.batch, audit), std::logic_error);
  EXPECT_THROW(e->sweep(l.batch, sweep), std::logic_error);
  e->set_layer(l.keys, c);
  e->audit(l.batch, audit);
  EXPECT_THROW(e->sweep(l.batch, sweep), std::logic_error);
  const std::vector<PoolVariant> variants{{8, PoolPrecision::Fp32}};
  e->set_sweep_layer(l.keys, c.topk, variants);
  e->sweep(l.batch, sweep);
  EXPECT_THROW(e->audit(l.batch, audit), std::logic_error);
  EXPECT_THROW(e->select(l.batch, Method::Flat, flat), std::logic_error);
  ASSERT_EQ(sweep.size(), audit.size());
  for (size_t i = 0; i < audit.size(); ++i) {
    EXPECT_EQ(sweep[i].flat, audit[i].flat);
    EXPECT_EQ(sweep[i].J.front(), audit[i].block_scores);
  }
}

// On Gaussian inputs the fast path sums in another order than the reference; a difference is allowed
// only between tokens whose reference scores lie within a relative 1e-5 of the k-th score.
TEST(Selection, FloatInputsAgreeUpToNearTies) {
  LayerSpec s;
  s.integer = false;
  s.keys = 1500;
  s.queries = 16;
  s.dim = 64;
  Layer l = random_layer(s);
  SelectionConfig c;
  c.topk = 50;
  c.block_size = 64;
  c.blocks = 6;
  auto engine = make_cpu_engine(2);
  engine->set_layer(l.keys, c);
  std::vector<std::vector<int64_t>> flat;
  engine->select(l.batch, Method::Flat, flat);
  for (int64_t i = 0; i < l.batch.count; ++i) {
    auto ref = reference::flat(l.batch, i, l.keys, c);
    if (ref == flat[size_t(i)]) continue;
    float kth = INFINITY;
    for (int64_t p : ref) kth = std::min(kth, reference::score(l.batch, i, l.keys, p));
    std::vector<int64_t> diff;
    std::set_symmetric_difference(ref.begin(), ref.end(), flat[size_t(i)].begin(), flat[size_t(i)].end(),
                                  std::back_inserter(diff));
    for (int64_t p : diff) {
      float sc = reference::score(l.batch, i, l.keys, p);
      EXPECT_LE(std::fabs(sc - kth), 1e-5f * std::fabs(kth) + 1e-6f) << "query " << i << " position " << p;
    }
  }
}

TEST(TopK, TieRuleAndShortRows) {
  std::vector<float> scores{1, 3, 3, 2, 3, 0};
  std::vector<int64_t> out;
  topk_range(scores, 10, 2, out);
  EXPECT_EQ(out, (std::vector<int64_t>{11, 12}));
  out.clear();
  topk_range(scores, 10, 4, out);
  EXPECT_EQ(out, (std::vector<int64_t>{11, 12, 13, 14}));
  out.clear();
  topk_range(scores, 0, 10, out);
  EXPECT_EQ(out.size(), 6u);
  out.clear();
  topk_range({}, 0, 3, out);
  EXPECT_TRUE(out.empty());
  // -0 and +0 are the same score: the lower position wins.
  std::vector<float> zeros{-0.0f, 0.0f, -0.0f};
  out.clear();
  topk_range(zeros, 0, 1, out);
  EXPECT_EQ(out, (std::vector<int64_t>{0}));
  EXPECT_EQ(kth_score(scores, 3), 3.0f);
  EXPECT_EQ(kth_score(scores, 4), 2.0f);
  EXPECT_TRUE(std::isinf(kth_score(scores, 7)));
}

}  // namespace
}  // namespace hisa

namespace hisa {
namespace {

// Radix-select top-k against a full sort, on rows with heavy ties, negatives, zeros of both signs, -inf.
TEST(TopK, MatchesFullSortOnRandomRows) {
  std::mt19937_64 rng(11);
  for (int trial = 0; trial < 200; ++trial) {
    const int64_t n = std::uniform_int_distribution<int64_t>(0, 3000)(rng);
    const int64_t k = std::uniform_int_distribution<int64_t>(1, 600)(rng);
    const int levels = std::uniform_int_distribution<int>(1, 50)(rng);
    std::vector<float> row(static_cast<size_t>(n));
    for (auto& v : row) {
      int x = std::uniform_int_distribution<int>(-levels, levels)(rng);
      v = x == 0 ? (rng() & 1 ? -0.0f : 0.0f) : (x == -levels ? -INFINITY : float(x) * 0.37f);
    }
    std::vector<int64_t> order(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) order[size_t(i)] = i;
    std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return ranks_before(row[size_t(a)], a, row[size_t(b)], b); });
    order.resize(size_t(std::min(n, k)));
    std::vector<int64_t> expected;
    for (int64_t i : order) expected.push_back(i + 100);
    std::sort(expected.begin(), expected.end());
    std::vector<int64_t> got;
    topk_range(row, 100, k, got);
    ASSERT_EQ(got, expected) << "trial " << trial;
  }
}

}  // namespace
}  // namespace hisa
