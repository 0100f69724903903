// Judging topk_ref (metrics/ref_judge.hpp) with the CUDA engine's exact selections: the same class for every token
// as with the CPU engine's, for the rule itself and every planted defect, when the run's HISA setting is the
// rule's and when the rule is audited apart.
#include <gtest/gtest.h>

#include "metrics/ref_cases.hpp"
#include "metrics/ref_judge.hpp"
#include "test_util.hpp"
#include "pipelines/audit.hpp"

#include "gpu_test_util.hpp"

namespace hisa {
namespace {

using namespace gpu_test;

struct QueryClasses {
  double iou;
  int64_t tie_swaps, near_ties, block_flips, unexplained;
  bool operator==(const QueryClasses&) const = default;
};

std::vector<QueryClasses> audit_classes(const std::string& path, const std::string& device, int64_t run_block_size,
                                        double tolerance) {
  AuditOptions o;
  o.files = {path};
  o.run.device = device;
  o.config.block_size = run_block_size;
  o.config.blocks = 12;
  o.ref.tolerance = tolerance;
  o.progress = false;
  std::vector<QueryClasses> out;
  run_audit(o, [&](const QueryRecord& q) {
    const QueryMetrics& m = *q.metrics;
    out.push_back({*m.ref_iou, *m.ref_tie_swaps, *m.ref_near_ties, *m.ref_block_flips, *m.ref_unexplained});
  });
  return out;
}

TEST(CudaRefJudge, TheCpuAndCudaEnginesGiveTheSameClasses) {
  REQUIRE_GPU();
  test::TempDir dir;
  struct Case {
    const char* name;
    int64_t clusters;
    test::Defect defect;
    double tolerance;
  };
  std::vector<Case> cases(8, Case{"", 0, {}, kDefaultRefTolerance});
  cases[0].name = "the rule";
  cases[1].name = "ties to higher", cases[1].clusters = 40, cases[1].defect.ties_to_higher = true;
  cases[2].name = "tie cap", cases[2].clusters = 40, cases[2].defect.tie_cap = 1;
  cases[3].name = "perturbed", cases[3].clusters = 40, cases[3].defect.perturb = 1e-7;
  cases[4].name = "fp8 pooling", cases[4].defect.pool = PoolPrecision::Fp8, cases[4].tolerance = 1.0 / 16;
  cases[5].name = "no ReLU", cases[5].defect.block_relu = false;
  cases[6].name = "extra as in-budget", cases[6].defect.extra_forced = true;
  cases[7].name = "future token", cases[7].defect.future_token = true;
  SelectionConfig c;
  c.topk = 96, c.block_size = 32, c.blocks = 12;
  int64_t differing = 0;
  for (const Case& k : cases) {
    auto d = test::ref_layer(4096, 24, 8, 64, k.clusters, 21);
    test::attach_ref(d, Method::Hisa, c, k.defect, test::declare("hisa", 32, 12, "in-budget", "fp32"));
    const std::string path = test::write_ref_dump(dir.file("ref.h5"), d, c.topk);
    for (int64_t run_block_size : {32, 64}) {  // the rule's own setting, and one audited apart
      SCOPED_TRACE(std::string(k.name) + ", run B = " + std::to_string(run_block_size));
      const auto cpu = audit_classes(path, "cpu", run_block_size, k.tolerance);
      const auto gpu = audit_classes(path, "cuda", run_block_size, k.tolerance);
      ASSERT_EQ(cpu.size(), 24u);
      EXPECT_TRUE(cpu == gpu);
      for (const auto& q : cpu) differing += q.tie_swaps + q.near_ties + q.block_flips + q.unexplained;
    }
  }
  EXPECT_GT(differing, 0);
}

// Judging with the CUDA engine's scores (engine_ref_scorer: how topk_ref of a layer on the GPU is judged) gives
// every token the class the host's scores give it, but for ties: the GPU sums in another order, so two nearly
// tied scores may come out exactly tied there, or the reverse (a tie swap for a near tie).
TEST(CudaRefJudge, TheCudaEnginesScoresGiveTheHostsClasses) {
  REQUIRE_GPU();
  struct Case {
    const char* name;
    int64_t clusters;
    bool nudge;
    test::Defect defect;
    double tolerance;
  };
  std::vector<Case> cases(6, Case{"", 0, false, {}, kDefaultRefTolerance});
  cases[0].name = "the rule";
  cases[1].name = "ties to higher", cases[1].clusters = 40, cases[1].defect.ties_to_higher = true;
  cases[2].name = "tie cap", cases[2].clusters = 40, cases[2].defect.tie_cap = 1;
  cases[3].name = "perturbed", cases[3].clusters = 40, cases[3].nudge = true, cases[3].defect.perturb = 1e-7;
  cases[4].name = "fp8 pooling", cases[4].defect.pool = PoolPrecision::Fp8, cases[4].tolerance = 1.0 / 16;
  cases[5].name = "no ReLU", cases[5].defect.block_relu = false;
  RefRule rule;
  rule.method = Method::Hisa;
  rule.config.topk = 96, rule.config.block_size = 32, rule.config.blocks = 12;
  auto tied = [](RefClass c) { return c == RefClass::TieSwap || c == RefClass::NearTie; };
  int64_t differences = 0;
  for (const Case& k : cases) {
    SCOPED_TRACE(k.name);
    auto d = test::ref_layer(4096, 24, 8, 64, k.clusters, 21, k.nudge);
    test::attach_ref(d, Method::Hisa, rule.config, k.defect, {});
    auto engine = make_cuda_engine(gpu_device());
    engine->set_layer(d.keys, rule.config);
    std::vector<QueryAudit> audits;
    engine->audit(d.batch, audits);
    const RefLayer layer = make_ref_layer(d.keys, rule, k.tolerance);
    for (int64_t i = 0; i < d.batch.count; ++i) {
      const std::span<const int32_t> row(d.arrays.topk_ref.data() + i * d.arrays.ref_width, size_t(d.arrays.ref_width));
      const RefJudgement want = judge_ref_row(layer, d.batch, i, audits[size_t(i)], row);
      const RefScorer scorer = engine_ref_scorer(*engine, d.batch, i, rule.config.block_size);
      const RefJudgement got = judge_ref_row(layer, d.batch, i, audits[size_t(i)], row, &scorer);
      EXPECT_EQ(got.iou, want.iou) << "query " << i;
      EXPECT_EQ(got.tie_swaps + got.near_ties, want.tie_swaps + want.near_ties) << "query " << i;
      EXPECT_EQ(got.block_flips, want.block_flips) << "query " << i;
      EXPECT_EQ(got.unexplained, want.unexplained) << "query " << i;
      ASSERT_EQ(got.differences.size(), want.differences.size()) << "query " << i;
      for (size_t n = 0; n < got.differences.size(); ++n) {
        const RefDifference &g = got.differences[n], &w = want.differences[n];
        EXPECT_EQ(g.position, w.position);
        EXPECT_EQ(g.in_ref, w.in_ref);
        EXPECT_TRUE(g.cls == w.cls || (tied(g.cls) && tied(w.cls))) << "query " << i << " position " << g.position << ": "
                                                                  << ref_class_name(g.cls) << " against " << ref_class_name(w.cls);
      }
      differences += int64_t(want.differences.size());
    }
  }
  EXPECT_GT(differences, 0);
}

}  // namespace
}  // namespace hisa
