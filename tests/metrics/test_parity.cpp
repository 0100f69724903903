// metrics/parity: which differences between two engines' selections count as near-ties, and --parity through
// the audit (CPU against CPU: no differences at all).
#include <gtest/gtest.h>

#include <map>

#include "metrics/parity.hpp"
#include "pipelines/audit.hpp"
#include "render/audit_output.hpp"
#include "synth_dump.hpp"
#include "test_util.hpp"

namespace hisa {
namespace {

TEST(Parity, OnlyNearTiesAtTheCutAreExplained) {
  // Reference scores: position p scores s[p]; magnitudes all 100, so the tolerance is 1e-5 · 200 = 2e-3.
  const std::map<int64_t, double> s{{0, 9.0}, {1, 5.0}, {2, 4.0}, {3, 4.001}, {4, 1.0}};
  auto score = [&](int64_t p) { return s.at(p); };
  auto abs = [](int64_t) { return 100.0; };
  const std::vector<int64_t> want{0, 1, 3};  // k = 3: the cut is position 3 (4.001)
  EXPECT_EQ(unexplained_differences(want, want, score, abs), 0);
  EXPECT_EQ(unexplained_differences(std::vector<int64_t>{0, 1, 2}, want, score, abs), 0);  // 4.0 vs 4.001: a near-tie
  EXPECT_EQ(unexplained_differences(std::vector<int64_t>{0, 1, 4}, want, score, abs), 1);  // 1.0 is not (3 is the cut)
  EXPECT_EQ(unexplained_differences(std::vector<int64_t>{0, 3, 4}, want, score, abs), 2);  // 5.0 dropped, 1.0 taken
  EXPECT_EQ(unexplained_differences(std::vector<int64_t>{0, 1}, want, score, abs), 1);     // one fewer: the size
  // The fp8 tensor cores' tolerance, 2^-10 · 200 ≈ 0.195: 4.0 and 4.001 are still near-ties, 5.0 and 1.0 are not.
  EXPECT_EQ(parity_tolerance(false), kParityTolerance);
  const double fp8 = parity_tolerance(true);
  EXPECT_EQ(unexplained_differences(std::vector<int64_t>{0, 1, 2}, want, score, abs, fp8), 0);
  EXPECT_EQ(unexplained_differences(std::vector<int64_t>{0, 1, 4}, want, score, abs, fp8), 1);
  // A gap of 0.1 is a near-tie only under fp8's tolerance.
  const std::map<int64_t, double> s2{{0, 9.0}, {1, 4.1}, {2, 4.0}};
  auto score2 = [&](int64_t p) { return s2.at(p); };
  const std::vector<int64_t> want2{0, 1};
  EXPECT_EQ(unexplained_differences(std::vector<int64_t>{0, 2}, want2, score2, abs), 1);  // 2 (the cut itself is 0 away)
  EXPECT_EQ(unexplained_differences(std::vector<int64_t>{0, 2}, want2, score2, abs, fp8), 0);
}

TEST(Parity, AbsScoreIsTheMagnitudeOfEveryTerm) {
  QueryBatch b;
  b.count = 1, b.heads = 2, b.dim = 2;
  b.q = {1, -2, -3, 4};
  b.w = {0.5f, -1};
  const float key[2] = {-1, 2};
  // |0.5|·(|1·-1| + |-2·2|) + |-1|·(|-3·-1| + |4·2|) = 2.5 + 11, times |scale| 2.
  EXPECT_DOUBLE_EQ(abs_score(b, 0, key, -2.0f), 27.0);
}

TEST(Parity, AuditCountsTheComparedQueries) {
  test::TempDir dir;
  AuditOptions o;
  o.files = {test::write_synth(dir.file("a.h5"), {.queries = "sample:20"})};
  o.run.device = "cpu";
  o.progress = false;
  o.parity = 7;
  const AuditResult r = run_audit(o);
  ASSERT_EQ(r.layers.size(), 2u);
  for (const auto& l : r.layers) {
    ASSERT_TRUE(l.parity.has_value());
    EXPECT_EQ(l.parity->queries, 7);
    EXPECT_EQ(l.parity->flat_differ, 0);  // the CPU engine against itself
    EXPECT_EQ(l.parity->hisa_differ, 0);
    EXPECT_EQ(l.parity->unexplained, 0);
  }
  EXPECT_EQ(audit_json(r)["layers"][0]["parity"]["queries"], 7);
  std::ostringstream csv;
  write_layer_csv(csv, r);
  EXPECT_NE(csv.str().find(",parity_queries,parity_flat_differ,parity_hisa_differ,parity_unexplained,ref_method"), std::string::npos);
  EXPECT_NE(csv.str().find(",7,0,0,0,"), std::string::npos) << csv.str();
  o.parity = 0;
  EXPECT_FALSE(run_audit(o).layers[0].parity.has_value());
}

}  // namespace
}  // namespace hisa
