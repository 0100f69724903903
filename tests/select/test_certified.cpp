// Score bounds, certificates and the certified (branch-and-bound) selection.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "metrics/diagnosis.hpp"
#include "random_layer.hpp"
#include "select/bounds.hpp"
#include "select/certified.hpp"
#include "select/engine.hpp"
#include "select/reference.hpp"

namespace hisa {
namespace {

using test::Layer;
using test::LayerSpec;
using test::random_layer;

std::vector<Layer> layers_to_try() {
  std::vector<Layer> out;
  for (uint64_t seed : {1, 2}) {
    LayerSpec s;
    s.seed = seed;
    s.keys = 523;
    out.push_back(random_layer(s));  // exact integers, negative weights
    s.integer = false;
    s.packed = true;
    s.scales = true;
    out.push_back(random_layer(s));  // floats, k_start > 0, key scales
  }
  LayerSpec zeros;
  Layer z = random_layer(zeros);
  for (auto& v : z.batch.w) v = -std::fabs(v) - 1.0f;  // every score <= 0
  out.push_back(z);
  out.push_back(test::overflow_layer());  // scores of +inf, and NaN (-inf), from fp32 overflow
  return out;
}

TEST(Bounds, BoundEveryTokenScoreInTheBlock) {
  for (const Layer& l : layers_to_try()) {
    for (int64_t B : {1, 7, 32}) {
      BlockBounds bounds(l.keys, B);
      for (int64_t i = 0; i < l.batch.count; ++i) {
        for (int64_t s = 0; s < l.keys.count; ++s) {
          ASSERT_GE(bounds.score_bound(l.batch, i, s / B), reference::score(l.batch, i, l.keys, s))
              << "query " << i << " key " << s << " B " << B;
        }
      }
    }
  }
}

// The exact dot product of q = 2^64·(1, 1, 1, 1) and k = 2^63·(1, 1, -1, -1) is 0, but in dimension order fp32
// reaches 2^127 + 2^127 = +inf first and stays there. Where a partial sum can reach FLT_MAX no finite number
// bounds the computed score, so the bound is +inf (and no block holding such a key is ever pruned or certified).
TEST(Bounds, NoFiniteBoundWhereTheFp32ScoreMayOverflow) {
  constexpr float big = 18446744073709551616.0f;  // 2^64
  Layer l;
  l.keys.count = 2;
  l.keys.dim = 4;
  l.keys.k = {big / 2, big / 2, -big / 2, -big / 2, 1, 1, 1, 1};
  l.keys.k_scale = {1.0f, 1.0f};
  l.batch.count = 1;
  l.batch.heads = 1;
  l.batch.dim = 4;
  l.batch.q = {big, big, big, big};
  l.batch.w = {1.0f};
  l.batch.q_pos = {1};
  l.batch.k_start = {0};
  ASSERT_EQ(reference::score(l.batch, 0, l.keys, 0), std::numeric_limits<float>::infinity());
  EXPECT_EQ(BlockBounds(l.keys, 1).score_bound(l.batch, 0, 0), std::numeric_limits<float>::infinity());
  EXPECT_EQ(BlockBounds(l.keys, 2).score_bound(l.batch, 0, 0), std::numeric_limits<float>::infinity());
  // The small key alone: no overflow is possible, so its bound is finite and still a bound.
  const float small = BlockBounds(l.keys, 1).score_bound(l.batch, 0, 1);
  EXPECT_TRUE(std::isfinite(small));
  EXPECT_GE(small, reference::score(l.batch, 0, l.keys, 1));
}

TEST(Certified, EqualsFlatOnEveryQuery) {
  for (const Layer& l : layers_to_try()) {
    for (int64_t B : {4, 16, 64}) {
      for (int64_t k : {1, 10, 50, 1000}) {
        SelectionConfig c;
        c.topk = k;
        c.block_size = B;
        auto engine = make_cpu_engine(2);
        engine->set_layer(l.keys, c);
        std::vector<std::vector<int64_t>> flat;
        engine->select(l.batch, Method::Flat, flat);
        CertifiedResult r = certified_select(l.keys, BlockBounds(l.keys, B), l.batch, k, 2);
        for (int64_t i = 0; i < l.batch.count; ++i) {
          EXPECT_EQ(r.selections[size_t(i)], flat[size_t(i)]) << "query " << i << " B " << B << " k " << k;
          EXPECT_LE(r.keys_scored[size_t(i)], l.batch.q_pos[size_t(i)] - l.batch.k_start[size_t(i)] + 1);
        }
      }
    }
  }
}

// Bounds prune only where blocks are clearly weaker than the k-th score: a layer whose first half is
// quiet (keys 100x smaller) must be selected without scoring most of that half.
TEST(Certified, PrunesBlocksThatCannotCompete) {
  LayerSpec s;
  s.integer = false;
  s.negative_weights = false;
  s.keys = 4096;
  s.queries = 8;
  Layer l = random_layer(s);
  for (int64_t p = 0; p < l.keys.count / 2; ++p) {
    for (int64_t d = 0; d < l.keys.dim; ++d) l.keys.k[size_t(p * l.keys.dim + d)] *= 0.01f;
  }
  for (auto& v : l.batch.q_pos) v = l.keys.count - 1;
  CertifiedResult r = certified_select(l.keys, BlockBounds(l.keys, 32), l.batch, 64, 2);
  auto engine = make_cpu_engine(2);
  SelectionConfig c;
  c.topk = 64;
  engine->set_layer(l.keys, c);
  std::vector<std::vector<int64_t>> flat;
  engine->select(l.batch, Method::Flat, flat);
  for (int64_t i = 0; i < l.batch.count; ++i) {
    EXPECT_EQ(r.selections[size_t(i)], flat[size_t(i)]);
    EXPECT_LT(r.keys_scored[size_t(i)], l.keys.count * 3 / 4);
  }
}

TEST(Certificate, ImpliesHisaEqualsDsa) {
  int64_t certified = 0, total = 0;
  for (const Layer& l : layers_to_try()) {
    for (int64_t B : {4, 16}) {
      for (int64_t m : {2, 4, 40}) {
        SelectionConfig c;
        c.topk = 12;
        c.block_size = B;
        c.blocks = m;
        auto engine = make_cpu_engine(2);
        engine->set_layer(l.keys, c);
        std::vector<QueryAudit> audit;
        engine->audit(l.batch, audit);
        const BlockBounds bounds(l.keys, B);
        for (size_t i = 0; i < audit.size(); ++i) {
          const QueryAudit& a = audit[i];
          const BlockBound bound = [&](int64_t block) { return bounds.score_bound(l.batch, int64_t(i), block); };
          ++total;
          if (certify_hisa(a, c, bound)) {
            ++certified;
            EXPECT_EQ(a.hisa, a.flat);
          }
          if (int64_t(a.block_scores.size()) <= m) {
            EXPECT_TRUE(certify_hisa(a, c, bound)) << "nothing pruned";
          }
        }
      }
    }
  }
  EXPECT_GT(certified, 0);
  EXPECT_LT(certified, total);
}

// The engine interface's bounds (what audits of layers on a GPU and explanations use): per query, each eligible
// block's BlockBounds::score_bound, index 0 the block of k_start, whatever the thread count.
TEST(EngineBounds, AreBlockBoundsOverEachQuerysEligibleBlocks) {
  for (const Layer& l : layers_to_try()) {
    for (int64_t B : {1, 7, 32}) {
      SelectionConfig c;
      c.topk = 12;
      c.block_size = B;
      c.blocks = 2;
      const BlockBounds bounds(l.keys, B);
      for (int threads : {1, 2}) {
        auto engine = make_cpu_engine(threads);
        engine->set_layer(l.keys, c);
        std::vector<std::vector<float>> got;
        engine->block_bounds(l.batch, got);
        ASSERT_EQ(got.size(), size_t(l.batch.count));
        for (int64_t i = 0; i < l.batch.count; ++i) {
          const int64_t first = l.batch.k_start[size_t(i)] / B, last = l.batch.q_pos[size_t(i)] / B;
          ASSERT_EQ(int64_t(got[size_t(i)].size()), last - first + 1) << "query " << i << " B " << B;
          for (int64_t j = 0; j <= last - first; ++j) {
            EXPECT_EQ(got[size_t(i)][size_t(j)], bounds.score_bound(l.batch, i, first + j)) << "query " << i << " block " << first + j;
          }
        }
      }
    }
  }
}

// The engine's score row: the visible keys' scores, those of the audit's selection among them.
TEST(EngineScoreRow, HoldsTheVisibleKeysScores) {
  for (const Layer& l : layers_to_try()) {
    SelectionConfig c;
    c.topk = 12;
    c.block_size = 8;
    c.blocks = 2;
    auto engine = make_cpu_engine(1);
    engine->set_layer(l.keys, c);
    std::vector<QueryAudit> audit;
    engine->audit(l.batch, audit);
    std::vector<float> row;
    for (int64_t i = 0; i < l.batch.count; ++i) {
      engine->score_row(l.batch, i, row);
      const int64_t from = l.batch.k_start[size_t(i)];
      ASSERT_EQ(int64_t(row.size()), l.batch.q_pos[size_t(i)] - from + 1) << "query " << i;
      const QueryAudit& a = audit[size_t(i)];
      for (size_t j = 0; j < a.flat.size(); ++j) {
        EXPECT_EQ(row[size_t(a.flat[j] - from)], a.flat_scores[j]) << "query " << i << " key " << a.flat[j];
      }
      for (size_t s = 0; s < row.size(); ++s) {  // every score the reference's, up to the order of fp32 sums
        const float want = reference::score(l.batch, i, l.keys, from + int64_t(s));
        if (std::isfinite(want)) {
          EXPECT_NEAR(row[s], want, 1e-5f * (1.0f + std::fabs(want))) << "query " << i << " key " << from + int64_t(s);
        } else {
          EXPECT_EQ(row[s], want) << "query " << i << " key " << from + int64_t(s);
        }
      }
    }
  }
}

}  // namespace
}  // namespace hisa
