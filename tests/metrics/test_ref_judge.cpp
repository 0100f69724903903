// Judging topk_ref (metrics/ref_judge.hpp) on layers whose stack selection is made with one planted defect
// (ref_cases.hpp), against the CPU engine's exact audit.
#include <gtest/gtest.h>

#include <tuple>

#include "metrics/ref_cases.hpp"
#include "metrics/ref_judge.hpp"
#include "select/engine.hpp"
#include "select/score_cpu.hpp"

namespace hisa {
namespace {

struct Totals {
  int64_t queries = 0, tie_swaps = 0, near_ties = 0, block_flips = 0, unexplained = 0, queries_unexplained = 0;
  double iou_min = 1;
};

// Two judgements of one row the same, token by token.
void expect_same_judgement(const RefJudgement& a, const RefJudgement& b, int64_t i) {
  EXPECT_EQ(a.iou, b.iou) << "query " << i;
  EXPECT_EQ(std::tie(a.tie_swaps, a.near_ties, a.block_flips, a.unexplained),
            std::tie(b.tie_swaps, b.near_ties, b.block_flips, b.unexplained)) << "query " << i;
  EXPECT_EQ(std::tie(a.cut_position, a.cut_score, a.cut_block, a.cut_J), std::tie(b.cut_position, b.cut_score, b.cut_block, b.cut_J))
      << "query " << i;
  ASSERT_EQ(a.differences.size(), b.differences.size()) << "query " << i;
  for (size_t n = 0; n < a.differences.size(); ++n) {
    const RefDifference &x = a.differences[n], &y = b.differences[n];
    EXPECT_EQ(std::tie(x.position, x.in_ref, x.cls, x.score, x.block, x.block_J, x.why),
              std::tie(y.position, y.in_ref, y.cls, y.score, y.block, y.block_J, y.why)) << "query " << i;
  }
}

// Every query judged, on the host and again by the engine's scores (engine_ref_scorer, what layers on a GPU are
// judged with): the CPU engine's scores are the host's, so the judgements are the same.
Totals judge_all(const test::RefLayerData& d, const RefRule& rule, double tolerance = kDefaultRefTolerance) {
  auto engine = make_cpu_engine(1);
  engine->set_layer(d.keys, rule.config);
  std::vector<QueryAudit> audits;
  engine->audit(d.batch, audits);
  const RefLayer layer = make_ref_layer(d.keys, rule, tolerance);
  Totals t;
  for (int64_t i = 0; i < d.batch.count; ++i) {
    const std::span<const int32_t> row(d.arrays.topk_ref.data() + i * d.arrays.ref_width, size_t(d.arrays.ref_width));
    const RefJudgement j = judge_ref_row(layer, d.batch, i, audits[size_t(i)], row);
    const RefScorer scorer = engine_ref_scorer(*engine, d.batch, i, rule.config.block_size);
    expect_same_judgement(judge_ref_row(layer, d.batch, i, audits[size_t(i)], row, &scorer), j, i);
    EXPECT_EQ(int64_t(j.differences.size()), j.tie_swaps + j.near_ties + j.block_flips + j.unexplained);
    ++t.queries;
    t.tie_swaps += j.tie_swaps, t.near_ties += j.near_ties, t.block_flips += j.block_flips;
    t.unexplained += j.unexplained, t.queries_unexplained += j.unexplained > 0;
    t.iou_min = std::min(t.iou_min, j.iou);
  }
  return t;
}

RefRule hisa_rule(int64_t k, int64_t B, int64_t m, ForcedMode forced = ForcedMode::InBudget) {
  RefRule r;
  r.method = Method::Hisa;
  r.config.topk = k, r.config.block_size = B, r.config.blocks = m, r.config.forced = forced;
  return r;
}

constexpr int64_t kL = 2048, kQ = 24, kH = 4, kD = 32, kK = 96, kB = 32, kM = 12;

TEST(RefJudge, ScorePositionsSumsAsTheReference) {
  const auto d = test::ref_layer(300, 3, kH, kD, 0, 5);
  const std::vector<int64_t> positions{7, 0, 299, 13, 13, 150, 42, 8, 9, 10, 11};
  std::vector<float> got(positions.size());
  for (int64_t i = 0; i < 3; ++i) {
    score_positions(d.batch.q_row(i, 0), d.batch.w_row(i), kH, kD, d.keys.k.data(), d.keys.k_scale.data(), positions, got.data());
    for (size_t n = 0; n < positions.size(); ++n) EXPECT_EQ(got[n], reference::score(d.batch, i, d.keys, positions[n]));
  }
}

TEST(RefJudge, TheRuleItselfHasNoDifferences) {
  for (Method method : {Method::Flat, Method::Hisa, Method::Block}) {
    auto d = test::ref_layer(kL, kQ, kH, kD, 0, 1);
    RefRule rule = hisa_rule(kK, kB, kM);
    rule.method = method;
    if (method == Method::Block) rule.config.blocks = rule.config.block_sparse_blocks();
    test::attach_ref(d, method, rule.config, {}, {});
    const Totals t = judge_all(d, rule);
    EXPECT_EQ(t.iou_min, 1.0) << ref_method_name(method);
    EXPECT_EQ(t.tie_swaps + t.near_ties + t.block_flips + t.unexplained, 0) << ref_method_name(method);
  }
}

TEST(RefJudge, TiesBrokenTowardHigherPositionsAreTieSwapsOnly) {
  auto d = test::ref_layer(kL, kQ, kH, kD, 40, 2);
  const RefRule rule = hisa_rule(kK, kB, kM);
  test::Defect f;
  f.ties_to_higher = true;
  test::attach_ref(d, Method::Hisa, rule.config, f, {});
  const Totals t = judge_all(d, rule);
  EXPECT_GT(t.tie_swaps, 0);
  EXPECT_EQ(t.near_ties + t.block_flips + t.unexplained, 0);
}

TEST(RefJudge, ATieCapThatDropsTiesIsUnexplained) {
  auto d = test::ref_layer(kL, kQ, kH, kD, 40, 2);
  const RefRule rule = hisa_rule(kK, kB, kM);
  test::Defect f;
  f.tie_cap = 1;
  test::attach_ref(d, Method::Hisa, rule.config, f, {});
  const Totals t = judge_all(d, rule);
  EXPECT_GT(t.queries_unexplained, t.queries / 2);
}

TEST(RefJudge, PerturbedScoresGiveNearTiesOnly) {
  // Keys that nearly tie (one ulp apart), scores perturbed by 1e-7 relative: the stack orders them by its noise.
  auto d = test::ref_layer(kL, kQ, kH, kD, 40, 3, true);
  const RefRule rule = hisa_rule(kK, kB, kM);
  test::Defect f;
  f.perturb = 1e-7;
  test::attach_ref(d, Method::Hisa, rule.config, f, {});
  const Totals t = judge_all(d, rule);
  EXPECT_GT(t.near_ties, t.tie_swaps);
  EXPECT_EQ(t.block_flips + t.unexplained, 0);
}

TEST(RefJudge, Fp8PoolingJudgedAsFp32GivesBlockFlips) {
  auto d = test::ref_layer(kL, kQ, kH, kD, 0, 4);
  const RefRule rule = hisa_rule(kK, kB, kM);
  test::Defect f;
  f.pool = PoolPrecision::Fp8;
  test::attach_ref(d, Method::Hisa, rule.config, f, {});
  const Totals t = judge_all(d, rule, 1.0 / 16);
  EXPECT_GT(t.block_flips, 0);
  EXPECT_EQ(t.unexplained, 0);
}

TEST(RefJudge, PlantedDefectsAreUnexplainedOnMostQueries) {
  struct Case {
    const char* name;
    test::Defect defect;
  };
  test::Defect no_relu, not_forced, extra, future;
  no_relu.block_relu = false;
  not_forced.force_blocks = false;
  extra.extra_forced = true;
  future.future_token = true;
  for (const Case& c : {Case{"no ReLU", no_relu}, Case{"not forced", not_forced}, Case{"extra as in-budget", extra},
                        Case{"future token", future}}) {
    auto d = test::ref_layer(kL, kQ, kH, kD, 0, 6);
    const RefRule rule = hisa_rule(kK, kB, kM);
    test::attach_ref(d, Method::Hisa, rule.config, c.defect, {});
    const Totals t = judge_all(d, rule);
    EXPECT_GT(t.queries_unexplained, t.queries / 2) << c.name;
  }
}

// A selection that merely lacks one kept block's tokens is not pooling drift, even when that block is the cut
// block (whose J is trivially within the tolerance of its own): each missing token is unexplained.
TEST(RefJudge, MissingABlocksTokensIsNotABlockFlip) {
  const auto d = test::ref_layer(kL, kQ, kH, kD, 0, 8);
  const RefRule rule = hisa_rule(kK, kB, kM);
  auto engine = make_cpu_engine(1);
  engine->set_layer(d.keys, rule.config);
  std::vector<QueryAudit> audits;
  engine->audit(d.batch, audits);
  const RefLayer layer = make_ref_layer(d.keys, rule, kDefaultRefTolerance);
  int64_t judged = 0;
  for (int64_t i = 0; i < d.batch.count; ++i) {
    const QueryAudit& x = audits[size_t(i)];
    const BlockSpan span = eligible_blocks(x.k_start, x.q_pos, kB);
    for (int64_t blk : x.hisa_blocks) {
      if (blk == span.first || blk == span.last) continue;
      std::vector<int32_t> row;
      int64_t missing = 0;
      for (int64_t s : x.hisa) {
        if (s / kB == blk) {
          ++missing;
        } else {
          row.push_back(int32_t(s));
        }
      }
      if (missing == 0) continue;
      row.resize(size_t(kK), -1);
      const RefJudgement j = judge_ref_row(layer, d.batch, i, x, row);
      EXPECT_EQ(j.block_flips, 0) << "query " << i << " block " << blk;
      EXPECT_EQ(j.unexplained, missing) << "query " << i << " block " << blk;
      ++judged;
    }
  }
  EXPECT_GT(judged, 0);
}

TEST(RefJudge, EmptyAndPaddedRows) {
  auto d = test::ref_layer(64, 2, 2, 8, 0, 7);
  const RefRule rule = hisa_rule(8, 8, 2);
  auto engine = make_cpu_engine(1);
  engine->set_layer(d.keys, rule.config);
  std::vector<QueryAudit> audits;
  engine->audit(d.batch, audits);
  const RefLayer layer = make_ref_layer(d.keys, rule, kDefaultRefTolerance);
  // All padding: every token of the rule's selection is missing, none is a tie (nothing to swap with).
  const std::vector<int32_t> empty(8, -1);
  const RefJudgement j = judge_ref_row(layer, d.batch, 0, audits[0], empty);
  EXPECT_EQ(j.iou, 0.0);
  EXPECT_EQ(j.unexplained, int64_t(audits[0].hisa.size()));
  // The exact selection, shuffled, padded and with a duplicate: no difference.
  std::vector<int32_t> row;
  for (auto it = audits[1].hisa.rbegin(); it != audits[1].hisa.rend(); ++it) row.push_back(int32_t(*it));
  row.push_back(row.front());
  row.push_back(-1);
  const RefJudgement same = judge_ref_row(layer, d.batch, 1, audits[1], row);
  EXPECT_EQ(same.iou, 1.0);
  EXPECT_TRUE(same.differences.empty());
}

}  // namespace
}  // namespace hisa
