// Recall and IoU for every budget m from one audit: by hand, and against audits run at each m.
#include <gtest/gtest.h>

#include <map>

#include "analysis/budget_curve.hpp"
#include "pipelines/audit.hpp"
#include "synth/synth.hpp"
#include "test_util.hpp"

namespace hisa {
namespace {

// Query at position 79 (k_start 0), B = 10, k = 4: eligible blocks 0..7, forced 0 and 7. DSA holds one
// token in each of blocks 3, 4, 5, 6; J ranks the non-forced blocks 1, 2, 3, 4, 5, 6.
QueryAudit hand_case() {
  QueryAudit a;
  a.q_pos = 79;
  a.k_start = 0;
  a.visible = 80;
  a.block_scores = {0.0f, 9.0f, 8.0f, 7.0f, 6.0f, 1.0f, 0.5f, 0.0f};
  a.flat = {35, 45, 55, 65};
  return a;
}

SelectionConfig hand_config(ForcedMode mode) {
  SelectionConfig c;
  c.topk = 4;
  c.block_size = 10;
  c.forced = mode;
  return c;
}

TEST(BudgetCurve, InBudgetByHand) {
  const auto curve = budget_curve(hand_case(), hand_config(ForcedMode::InBudget));
  ASSERT_EQ(curve.size(), 8u);
  // Keep order 0, 7, 1, 2 (no DSA token), then 3, 4, 5, 6 (one each). HISA always holds k = 4 tokens.
  for (int m = 1; m <= 4; ++m) {
    EXPECT_EQ(curve[size_t(m - 1)].recall, 0.0) << m;
    EXPECT_EQ(curve[size_t(m - 1)].iou, 0.0) << m;
  }
  EXPECT_EQ(curve[4].recall, 0.25);
  EXPECT_EQ(curve[4].iou, 1.0 / 7.0);  // |H∩D| = 1, |H∪D| = 4 + 4 - 1
  EXPECT_EQ(curve[5].iou, 2.0 / 6.0);
  EXPECT_EQ(curve[6].recall, 0.75);
  EXPECT_EQ(curve[7].recall, 1.0);
  EXPECT_EQ(curve[7].iou, 1.0);
}

TEST(BudgetCurve, ForcedExtraKeepsTheForcedBlocksOnTop) {
  const auto curve = budget_curve(hand_case(), hand_config(ForcedMode::Extra));
  // Forced 0 and 7 always, plus the best m by J: 1, 2, 3, 4, 5, 6, then 0 and 7 themselves.
  const double want[] = {0, 0, 0.25, 0.5, 0.75, 1, 1, 1};
  for (size_t i = 0; i < 8; ++i) EXPECT_EQ(curve[i].recall, want[i]) << "m = " << i + 1;
}

TEST(BudgetCurve, FewerThanKCandidatesCountAsFewerTokens) {
  // m = 1 keeps one block of 10 tokens while k = 40: HISA holds 10 tokens, not k.
  QueryAudit a = hand_case();
  a.flat.clear();
  for (int64_t s = 0; s < 40; ++s) a.flat.push_back(s);  // DSA = blocks 0..3
  SelectionConfig c = hand_config(ForcedMode::InBudget);
  c.topk = 40;
  const auto curve = budget_curve(a, c);
  EXPECT_EQ(curve[0].recall, 10.0 / 40.0);  // block 0
  EXPECT_EQ(curve[0].iou, 10.0 / 40.0);     // H = 10 tokens, all in D
  EXPECT_EQ(curve[1].iou, 10.0 / 50.0);     // + block 7: H = 20 tokens, 10 of them in D; union 20 + 40 - 10
}

TEST(BudgetCurve, AccumulatorCarriesShortCurvesToLargerBudgets) {
  BudgetCurveAccumulator acc;
  acc.add({{0.5, 0.25}, {1.0, 1.0}});
  acc.add({{0.0, 0.0}, {0.5, 0.5}, {0.75, 0.5}, {1.0, 1.0}});
  const auto mean = acc.mean();
  ASSERT_EQ(mean.size(), 4u);
  EXPECT_EQ(acc.queries(), 2);
  EXPECT_DOUBLE_EQ(mean[0].recall, 0.25);
  EXPECT_DOUBLE_EQ(mean[1].recall, 0.75);
  EXPECT_DOUBLE_EQ(mean[2].recall, (1.0 + 0.75) / 2);  // the short curve keeps its last value
  EXPECT_DOUBLE_EQ(mean[3].iou, 1.0);
  EXPECT_EQ(smallest_budget_reaching(mean, 0.75), 2);
  EXPECT_EQ(smallest_budget_reaching(mean, 0.9), 4);
  EXPECT_EQ(smallest_budget_reaching(mean, 1.1), 0);
}

struct Key {
  int layer;
  int64_t query;
  bool operator<(const Key& o) const { return layer != o.layer ? layer < o.layer : query < o.query; }
};

// The claim the report rests on: one audit's curve at m is what an audit run at m reports, exactly, per
// query and per layer, in both forced modes, with partial blocks (packed sequences start mid-block).
TEST(BudgetCurve, EqualsAuditsRunAtEachBudget) {
  test::TempDir dir;
  SynthOptions s;
  s.output = dir.file("packed.h5");
  s.seq_len = 2048;
  s.layers = 3;
  s.heads = 4;
  s.head_dim = 64;
  s.index_topk = 64;
  s.packed = 2;  // the second sequence starts at k_start = 1024
  s.queries = parse_query_selection("sample:32");
  write_synth_dump(s);
  for (ForcedMode mode : {ForcedMode::InBudget, ForcedMode::Extra}) {
    SCOPED_TRACE(std::string(forced_mode_name(mode)));
    AuditOptions o;
    o.files = {s.output};
    o.run.device = "cpu";
    o.progress = false;
    o.config.block_size = 24;  // 1024 is not a multiple: first blocks are partial for k_start = 1024
    o.config.blocks = 5;
    o.config.forced = mode;
    std::map<Key, std::vector<BudgetPoint>> curves;
    std::map<int, BudgetCurveAccumulator> per_layer;
    run_audit(o, [&](const QueryRecord& q) {
      curves[{q.layer, q.metrics->query}] = budget_curve(*q.audit, *q.config);
      per_layer[q.layer].add(curves[{q.layer, q.metrics->query}]);
    });
    int64_t checked = 0, partial = 0;
    for (int64_t m : {1, 2, 3, 4, 7, 16, 40, 100}) {
      o.config.blocks = m;
      AuditResult r = run_audit(o, [&](const QueryRecord& q) {
        const auto& curve = curves.at({q.layer, q.metrics->query});
        const BudgetPoint p = curve[size_t(std::min<int64_t>(m, int64_t(curve.size())) - 1)];
        EXPECT_EQ(p.recall, q.metrics->hisa.recall) << "layer " << q.layer << " query " << q.metrics->query << " m " << m;
        EXPECT_EQ(p.iou, q.metrics->hisa.iou) << "layer " << q.layer << " query " << q.metrics->query << " m " << m;
        partial += q.audit->k_start % 24 != 0;
        ++checked;
      });
      for (const auto& l : r.layers) {
        const auto mean = per_layer.at(l.layer).mean();
        const BudgetPoint p = mean[size_t(std::min<int64_t>(m, int64_t(mean.size())) - 1)];
        EXPECT_NEAR(p.recall, l.hisa.recall.mean, 1e-12) << "layer " << l.layer << " m " << m;
        EXPECT_NEAR(p.iou, l.hisa.iou.mean, 1e-12) << "layer " << l.layer << " m " << m;
      }
    }
    EXPECT_EQ(checked, 8 * 3 * 32);
    EXPECT_GT(partial, 0);  // some queries start mid-block
  }
}

}  // namespace
}  // namespace hisa
