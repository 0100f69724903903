// Miss causes on hand-built cases, one per class, and their invariants on real engine output.
#include <gtest/gtest.h>

#include "metrics/diagnosis.hpp"
#include "select/random_layer.hpp"

namespace hisa {
namespace {

// A query at position 79 (k_start 0) with B = 10: eligible blocks 0..7, forced 0 and 7, m = 4,
// in-budget: blocks ranked 0, 7, then by J. DSA holds one token in each of blocks 3, 4, 5, 6.
QueryAudit hand_case() {
  QueryAudit a;
  a.q_pos = 79;
  a.k_start = 0;
  a.visible = 80;
  a.block_scores = {0.0f, 9.0f, 8.0f, 7.0f, 6.0f, 1.0f, 0.5f, 0.0f};  // J; blocks 1, 2 kept besides 0, 7
  a.block_best = {1, 1, 1, 20, 19, 30, 10.0001f, 1};
  a.hisa_blocks = {0, 1, 2, 7};
  a.flat = {35, 45, 55, 65};
  a.flat_scores = {20, 19, 30, 10.0001f};
  a.kth_score = 10.0001f;
  a.hisa = {15, 25};
  a.hisa_scores = {3, 2};
  return a;
}

SelectionConfig config(ForcedMode mode = ForcedMode::InBudget) {
  SelectionConfig c;
  c.topk = 4;
  c.block_size = 10;
  c.blocks = 4;
  c.forced = mode;
  return c;
}

TEST(Diagnosis, EachCauseByItsCondition) {
  auto misses = diagnose_misses(hand_case(), config());
  ASSERT_EQ(misses.size(), 4u);
  // DSA rank order: 55 (30), 35 (20), 45 (19), 65 (10.0001).
  EXPECT_EQ(misses[0].position, 55);
  EXPECT_EQ(misses[0].dsa_rank, 1);
  // Block 5 (J = 1) is fifth among the others: keep rank 2 + 4 = 6, past m + ⌈m/4⌉ = 5, so dilution.
  EXPECT_EQ(misses[0].block_rank, 6);
  EXPECT_EQ(misses[0].cause, MissCause::MeanDilution);
  EXPECT_NEAR(misses[0].pooled_to_best, 1.0 / 30.0, 1e-9);
  // Block 3 (J = 7): third among non-forced, so kept if forced blocks took no budget (m - 2 <= 2 < m).
  EXPECT_EQ(misses[1].position, 35);
  EXPECT_EQ(misses[1].cause, MissCause::DisplacedByForced);
  // Block 4 (J = 6): fourth among non-forced (rank 3 < m = 4): also displaced by forced blocks.
  EXPECT_EQ(misses[2].position, 45);
  EXPECT_EQ(misses[2].cause, MissCause::DisplacedByForced);
  // Token 65 scores the k-th score itself: a numerical near-tie whatever its block.
  EXPECT_EQ(misses[3].position, 65);
  EXPECT_EQ(misses[3].cause, MissCause::NearTie);
  EXPECT_FLOAT_EQ(misses[3].margin, 0.0f);
  EXPECT_EQ(misses[3].distance, 14);
  // Replacements: the best miss pairs with HISA's best extra.
  EXPECT_EQ(misses[0].replaced_by, 15);
  EXPECT_EQ(misses[1].replaced_by, 25);
  EXPECT_EQ(misses[2].replaced_by, -1);
}

TEST(Diagnosis, ExtraModeHasNoDisplacementAndNearCutoffIsWithinAQuarter) {
  QueryAudit a = hand_case();
  a.hisa_blocks = {0, 1, 2, 3, 4, 7};  // extra: top 4 by J (1, 2, 3, 4) ∪ forced
  a.flat = {55, 65};
  a.flat_scores = {30, 10.0001f};
  auto misses = diagnose_misses(a, config(ForcedMode::Extra));
  ASSERT_EQ(misses.size(), 2u);
  // By J alone block 5 (J = 1) ranks 4: exactly m, inside [m, m + ⌈m/4⌉).
  EXPECT_EQ(misses[0].block_rank, 4);
  EXPECT_EQ(misses[0].cause, MissCause::NearCutoff);
}

TEST(Diagnosis, CertificateNeedsEveryPrunedBoundBelowTheKthScore) {
  const std::vector<float> bounds = {1, 1, 1, 40, 40, 40, 40, 1};
  std::vector<int64_t> asked;
  const BlockBound bound = [&](int64_t block) {
    asked.push_back(block);
    return bounds[size_t(block)];
  };
  QueryAudit a = hand_case();
  a.hisa = {11, 12, 13, 14};
  a.hisa_scores = {50, 50, 50, 41};
  EXPECT_TRUE(certify_hisa(a, config(), bound));  // pruned bounds are 40 < 41
  EXPECT_EQ(asked, (std::vector<int64_t>{3, 4, 5, 6}));  // every pruned block: the highest J (3) first, then in order
  asked.clear();
  a.hisa_scores.back() = 40;  // a pruned token scoring 40 at a lower position could win
  EXPECT_FALSE(certify_hisa(a, config(), bound));
  EXPECT_EQ(asked, (std::vector<int64_t>{3}));  // the first bound settles it
  asked.clear();
  a.hisa.pop_back();
  a.hisa_scores.pop_back();  // fewer than k: pruned blocks with visible tokens would have been chosen
  EXPECT_FALSE(certify_hisa(a, config(), bound));
  EXPECT_TRUE(asked.empty());
  a.hisa_blocks = {0, 1, 2, 3, 4, 5, 6, 7};  // nothing pruned
  EXPECT_TRUE(certify_hisa(a, config(), bound));
}

TEST(Diagnosis, MissedBlocksAreAlwaysPruned) {
  test::LayerSpec s;
  s.integer = false;
  s.keys = 900;
  s.queries = 30;
  test::Layer l = test::random_layer(s);
  for (ForcedMode mode : {ForcedMode::InBudget, ForcedMode::Extra}) {
    SelectionConfig c = config(mode);
    c.topk = 40;
    c.block_size = 16;
    c.blocks = 6;
    auto engine = make_cpu_engine(2);
    engine->set_layer(l.keys, c);
    std::vector<QueryAudit> audit;
    engine->audit(l.batch, audit);
    for (const auto& a : audit) {
      const int64_t kept = int64_t(a.hisa_blocks.size());
      for (const auto& m : diagnose_misses(a, c)) {
        EXPECT_FALSE(std::binary_search(a.hisa_blocks.begin(), a.hisa_blocks.end(), m.block));
        if (mode == ForcedMode::InBudget) {
          EXPECT_GE(m.block_rank, kept);
        }
        EXPECT_GE(m.block_best, m.score);
      }
    }
  }
}

}  // namespace
}  // namespace hisa
