// Metric formulas against hand-computed cases (docs/definitions.md, "Metrics").
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "metrics/layer_stats.hpp"
#include "metrics/query_metrics.hpp"

namespace hisa {
namespace {

// A query at position 9 (k_start 0) whose DSA set is {1, 2, 3, 4} with scores 5, 4, 3, 4.
QueryAudit hand_case() {
  QueryAudit a;
  a.q_pos = 9;
  a.k_start = 0;
  a.visible = 10;
  a.flat = {1, 2, 3, 4};
  a.flat_scores = {5, 4, 3, 4};
  a.hisa = {2, 3, 5, 6};
  a.block = {0, 1, 2, 3, 4, 5, 6, 7};
  a.mass_visible = 10.0;
  a.mass_flat = 8.0;
  a.mass_hisa = 4.0;
  a.mass_block = 9.0;
  return a;
}

TEST(QueryMetrics, IouRecallCoverage) {
  QueryMetrics m = compute_query_metrics(hand_case(), 7, std::nullopt);
  EXPECT_EQ(m.query, 7);
  EXPECT_DOUBLE_EQ(m.hisa.iou, 2.0 / 6.0);  // {2,3} over {1,2,3,4,5,6}
  EXPECT_DOUBLE_EQ(m.hisa.recall, 0.5);
  EXPECT_DOUBLE_EQ(m.hisa.coverage, 0.4);
  EXPECT_DOUBLE_EQ(m.hisa.coverage_ratio, 0.5);
  EXPECT_DOUBLE_EQ(m.coverage_flat, 0.8);
  EXPECT_DOUBLE_EQ(m.block.iou, 4.0 / 8.0);
  EXPECT_DOUBLE_EQ(m.block.recall, 1.0);
  EXPECT_DOUBLE_EQ(m.block.coverage_ratio, 9.0 / 8.0);
  EXPECT_FALSE(m.block.first_miss_rank.has_value());
  EXPECT_FALSE(m.needle_recall_flat.has_value());
  EXPECT_FALSE(m.ref_iou.has_value());
}

TEST(QueryMetrics, DsaRanksFollowTheTieRule) {
  // Scores 5, 4, 3, 4 at 1, 2, 3, 4: position 2 beats position 4 on the tie.
  EXPECT_EQ(dsa_ranks(hand_case()), (std::vector<int64_t>{1, 2, 4, 3}));
  QueryMetrics m = compute_query_metrics(hand_case(), 0, std::nullopt);
  EXPECT_EQ(m.hisa.first_miss_rank, 1);  // HISA misses 1 (rank 1) and 4 (rank 3)
  QueryAudit a = hand_case();
  a.hisa = {1, 2, 3};
  EXPECT_EQ(compute_query_metrics(a, 0, std::nullopt).hisa.first_miss_rank, 3);
}

// best_rank_not_held is the smallest dsa_ranks entry among the entries not held, on rows with heavy ties, both
// zeros (one key) and infinities, for every kind of held pattern (none, all, random).
TEST(QueryMetrics, BestRankNotHeldIsTheSmallestRankAmongTheMissed) {
  std::mt19937_64 rng(5);
  for (int trial = 0; trial < 300; ++trial) {
    QueryAudit a;
    const size_t n = size_t(rng() % 40);
    for (size_t i = 0; i < n; ++i) {
      a.flat.push_back(int64_t(3 * i + rng() % 3));
      const int x = int(rng() % 9);
      a.flat_scores.push_back(x == 0 ? -0.0f : x == 1 ? 0.0f : x == 2 ? INFINITY : x == 3 ? -INFINITY : float(x % 3) - 1.0f);
    }
    const int pattern = trial % 3;  // 0: none held, 1: all held, 2: random
    std::vector<char> held(n);
    for (size_t i = 0; i < n; ++i) held[i] = pattern == 1 || (pattern == 2 && rng() % 2 == 0);
    const std::vector<int64_t> ranks = dsa_ranks(a);
    std::optional<int64_t> want;
    for (size_t i = 0; i < n; ++i) {
      if (!held[i] && (!want || ranks[i] < *want)) want = ranks[i];
    }
    EXPECT_EQ(best_rank_not_held(a, held), want) << "trial " << trial;
  }
}

TEST(QueryMetrics, NeedleRecallCountsVisibleNeedleTokens) {
  QueryAudit a = hand_case();
  a.q_pos = 5;
  a.visible = 6;
  a.hisa = {3, 5};
  // Needle [3, 7): tokens 3, 4, 5 are visible at q_pos 5.
  QueryMetrics m = compute_query_metrics(a, 0, NeedleRange{3, 7});
  EXPECT_DOUBLE_EQ(*m.hisa.needle_recall, 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(*m.needle_recall_flat, 2.0 / 3.0);  // flat holds 3 and 4
  EXPECT_DOUBLE_EQ(*m.block.needle_recall, 1.0);
  // A needle after the query is not visible: no value.
  EXPECT_FALSE(compute_query_metrics(a, 0, NeedleRange{8, 9}).hisa.needle_recall.has_value());
}

TEST(QueryMetrics, RefPositionsDropPaddingOrderAndDuplicates) {
  std::vector<int32_t> ref{4, -1, 2, 2, 9, -1};
  EXPECT_EQ(ref_positions(ref), (std::vector<int64_t>{2, 4, 9}));
}

TEST(QueryMetrics, EmptySetsAreFullAgreement) {
  QueryAudit a;
  a.visible = 1;
  a.mass_visible = 1;
  QueryMetrics m = compute_query_metrics(a, 0, std::nullopt);
  EXPECT_DOUBLE_EQ(m.hisa.iou, 1.0);
  EXPECT_DOUBLE_EQ(m.hisa.recall, 1.0);
}

TEST(LayerStats, SummaryMatchesNumpyDefinitions) {
  Distribution d = summarize({4, 0, 2, 1, 3});
  EXPECT_EQ(d.count, 5);
  EXPECT_DOUBLE_EQ(d.mean, 2.0);
  EXPECT_DOUBLE_EQ(d.stderr_, std::sqrt(2.5) / std::sqrt(5.0));
  EXPECT_DOUBLE_EQ(d.min, 0.0);
  EXPECT_DOUBLE_EQ(d.max, 4.0);
  EXPECT_DOUBLE_EQ(d.p50, 2.0);
  EXPECT_NEAR(d.p5, 0.2, 1e-12);  // numpy.percentile([0..4], 5) = 0.2
  EXPECT_NEAR(d.p1, 0.04, 1e-12);
  EXPECT_EQ(summarize({}).count, 0);
  EXPECT_DOUBLE_EQ(summarize({0.5}).stderr_, 0.0);
}

TEST(LayerStats, DistanceBuckets) {
  EXPECT_EQ(distance_bucket(0), 0);
  EXPECT_EQ(distance_bucket(1), 1);
  EXPECT_EQ(distance_bucket(2), 2);
  EXPECT_EQ(distance_bucket(3), 2);
  EXPECT_EQ(distance_bucket(4), 3);
  EXPECT_EQ(distance_bucket(7), 3);
  EXPECT_EQ(distance_bucket(8), 4);
  EXPECT_EQ(distance_bucket_label(0), "0");
  EXPECT_EQ(distance_bucket_label(1), "1");
  EXPECT_EQ(distance_bucket_label(3), "4-7");
}

TEST(LayerStats, CoveragePatternsAndExactShare) {
  LayerAccumulator acc(3, 4);  // B = 4
  QueryAudit a = hand_case();  // q_pos 9: DSA {1,2,3,4} at distances 8,7,6,5; HISA misses 1 and 4
  acc.add(a, compute_query_metrics(a, 0, std::nullopt));
  QueryAudit b = hand_case();
  b.hisa = b.flat;
  b.mass_hisa = b.mass_flat;
  acc.add(b, compute_query_metrics(b, 1, std::nullopt));
  LayerStats s = acc.finish();
  EXPECT_EQ(s.layer, 3);
  EXPECT_EQ(s.queries, 2);
  EXPECT_DOUBLE_EQ(s.hisa.iou.mean, (1.0 / 3.0 + 1.0) / 2.0);
  EXPECT_DOUBLE_EQ(s.hisa.exact_share, 0.5);
  // DSA tokens: distance 8 -> bucket 4, distances 5..7 -> bucket 3.
  ASSERT_EQ(s.dsa.distance_share.size(), 5u);
  EXPECT_DOUBLE_EQ(s.dsa.distance_share[3], 0.75);
  EXPECT_DOUBLE_EQ(s.dsa.distance_share[4], 0.25);
  // Blocks of 4: sink block 0 holds 1,2,3; the query's block 2 holds none; DSA touches blocks 0 and 1.
  EXPECT_DOUBLE_EQ(s.dsa.sink_block_share, 0.75);
  EXPECT_DOUBLE_EQ(s.dsa.own_block_share, 0.0);
  EXPECT_DOUBLE_EQ(s.dsa.blocks_touched_p50, 2.0);
  // HISA's misses: 1 (block 0, distance 8) and 4 (block 1, distance 5), only in the first query.
  EXPECT_EQ(s.hisa_misses.tokens, 2);
  EXPECT_DOUBLE_EQ(s.hisa_misses.distance_share[3], 0.5);
  EXPECT_DOUBLE_EQ(s.hisa_misses.distance_share[4], 0.5);
  EXPECT_DOUBLE_EQ(s.hisa_misses.blocks_touched_p50, 1.0);  // median of {2, 0}
  EXPECT_DOUBLE_EQ(*s.hisa.first_miss_rank_median, 1.0);
}

// The patterns computed with the metrics (what the audit does, in parallel) add up to what the accumulator computes
// itself from the selections.
TEST(LayerStats, PatternsFromTheMetricsEqualThoseOfTheSelections) {
  SelectionConfig c;
  c.block_size = 4;
  c.blocks = 2;
  c.topk = 4;
  LayerAccumulator with(3, 4), without(3, 4);
  QueryAudit a = hand_case();
  a.block_scores = {1.0f, 0.5f, 0.25f};  // blocks 0..2 for q_pos 9
  a.block_best = {1.0f, 1.0f, 1.0f};
  a.hisa_scores = {4, 3, 1, 1};
  a.kth_score = 3;
  a.hisa_blocks = {0, 2};
  const QueryMetrics m = compute_query_metrics(a, 0, std::nullopt, &c);
  ASSERT_TRUE(m.dsa_pattern && m.miss_pattern);
  EXPECT_EQ(m.dsa_pattern->tokens, 4);
  EXPECT_EQ(m.dsa_pattern->top_bucket, 4);
  EXPECT_EQ(m.miss_pattern->tokens, 2);
  with.add(a, m);
  QueryMetrics bare = m;
  bare.dsa_pattern.reset();
  bare.miss_pattern.reset();
  without.add(a, bare);
  const LayerStats x = with.finish(), y = without.finish();
  EXPECT_EQ(x.dsa.distance_share, y.dsa.distance_share);
  EXPECT_EQ(x.dsa.sink_block_share, y.dsa.sink_block_share);
  EXPECT_EQ(x.dsa.own_block_share, y.dsa.own_block_share);
  EXPECT_EQ(x.dsa.blocks_touched_p50, y.dsa.blocks_touched_p50);
  EXPECT_EQ(x.hisa_misses.distance_share, y.hisa_misses.distance_share);
  EXPECT_EQ(x.hisa_misses.tokens, y.hisa_misses.tokens);
  EXPECT_EQ(x.hisa_misses.blocks_touched_p95, y.hisa_misses.blocks_touched_p95);
}

}  // namespace
}  // namespace hisa
