// Judging topk_ref (metrics/ref_judge.hpp) with the CUDA engine's exact selections: the same class for every token
// as with the CPU engine's, for the rule itself and every planted defect, when the run's HISA setting is the
// rule's and when the rule is audited apart.
#include <gtest/gtest.h>

#include "metrics/ref_cases.hpp"
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

}  // namespace
}  // namespace hisa
