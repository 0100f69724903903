// A serving stack's topk_ref judged through the CLI (issue #19): declared rules, overrides, the classes in the
// JSON, CSV and table, explain --ref, the --max-ref-unexplained gate, --worst-by ref-iou and bad declarations.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli/run_hisa.hpp"
#include "metrics/ref_cases.hpp"

namespace hisa {
namespace {

using test::run_hisa;

constexpr int64_t kL = 2048, kQ = 16, kH = 4, kD = 32, kK = 96, kB = 32, kM = 12;

SelectionConfig rule_config() {
  SelectionConfig c;
  c.topk = kK, c.block_size = kB, c.blocks = kM;
  return c;
}

std::string dump_with(const test::TempDir& dir, const std::string& name, int64_t clusters, const test::Defect& f,
                      const RefDeclaration& declared, Method method = Method::Hisa, bool nudge = false) {
  auto d = test::ref_layer(kL, kQ, kH, kD, clusters, 11, nudge);
  test::attach_ref(d, method, rule_config(), f, declared);
  return test::write_ref_dump(dir.file(name), d, kK);
}

std::string dump_without_ref(const test::TempDir& dir) {
  return test::write_ref_dump(dir.file("none.h5"), test::ref_layer(256, 2, 2, 8, 0, 1), 8);
}

nlohmann::json audit_json(const test::TempDir& dir, const std::string& dump, std::vector<std::string> more = {}) {
  std::vector<std::string> args{"audit", dump, "--device", "cpu", "--json", dir.file("a.json")};
  args.insert(args.end(), more.begin(), more.end());
  const auto r = run_hisa(args, dir);
  EXPECT_TRUE(r.exited && r.status == 0) << r.output;
  return nlohmann::json::parse(test::read_text(dir.file("a.json")))["layers"][0];
}

const RefDeclaration kHisa = test::declare("hisa", kB, kM, "in-budget", "fp32");

TEST(CliRef, TheDeclaredRuleExactlyHasNoDifferences) {
  test::TempDir dir;
  const std::string dump = dump_with(dir, "ok.h5", 0, {}, kHisa);
  // The run's own HISA differs from the declared rule (B = 64): the rule's selection is audited apart.
  for (const auto& more : {std::vector<std::string>{}, std::vector<std::string>{"--block-size", "64", "--blocks", "4"}}) {
    const auto l = audit_json(dir, dump, more);
    EXPECT_EQ(l["ref_method"], "hisa");
    EXPECT_EQ(l["ref_rule"], "hisa B=32 m=12 in-budget fp32");
    EXPECT_EQ(l["ref_iou_mean"], 1.0);
    for (const char* k : {"ref_tie_swaps", "ref_near_ties", "ref_block_flips", "ref_unexplained", "ref_queries_unexplained"}) {
      EXPECT_EQ(l[k], 0) << k;
    }
  }
  // Judged as flat (what an undeclared topk_ref is), the same selection is mostly unexplained.
  const auto flat = audit_json(dir, dump, {"--ref-method", "flat"});
  EXPECT_EQ(flat["ref_method"], "flat");
  EXPECT_GT(flat["ref_unexplained"].get<int64_t>(), 0);
}

TEST(CliRef, OverridesTakeThePlaceOfTheDeclaration) {
  test::TempDir dir;
  const std::string dump = dump_with(dir, "undeclared.h5", 0, {}, {});
  EXPECT_GT(audit_json(dir, dump)["ref_unexplained"].get<int64_t>(), 0);  // judged as flat
  const auto l = audit_json(dir, dump, {"--ref-method", "hisa", "--ref-block-size", "32", "--ref-blocks", "12"});
  EXPECT_EQ(l["ref_rule"], "hisa B=32 m=12 in-budget fp32");
  EXPECT_EQ(l["ref_unexplained"], 0);
  EXPECT_EQ(l["ref_iou_mean"], 1.0);
}

TEST(CliRef, ClassesReachEveryOutput) {
  test::TempDir dir;
  test::Defect fp8;
  fp8.pool = PoolPrecision::Fp8;
  const std::string dump = dump_with(dir, "fp8.h5", 0, fp8, kHisa);
  const auto r = run_hisa({"audit", dump, "--device", "cpu", "--ref-tolerance", "0.0625", "--csv",
                           dir.file("a.csv"), "--per-query", dir.file("q.csv"), "--json", dir.file("a.json")},
                          dir);
  ASSERT_TRUE(r.exited && r.status == 0) << r.output;
  const auto l = nlohmann::json::parse(test::read_text(dir.file("a.json")))["layers"][0];
  EXPECT_GT(l["ref_block_flips"].get<int64_t>(), 0);
  EXPECT_EQ(l["ref_unexplained"], 0);
  EXPECT_NE(r.output.find("layer 0: topk_ref vs hisa B=32 m=12 in-budget fp32: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(" block flips, 0 unexplained (in 0 queries)"), std::string::npos) << r.output;
  const std::string csv = test::read_text(dir.file("a.csv"));
  EXPECT_NE(csv.find(",ref_method,ref_near_ties,ref_block_flips,ref_queries_unexplained\n"), std::string::npos);
  EXPECT_NE(csv.find(",hisa,"), std::string::npos) << csv;
  EXPECT_NE(test::read_text(dir.file("q.csv")).find(",ref_unexplained,ref_near_ties,ref_block_flips\n"), std::string::npos);
}

// Each planted defect through the CLI: which classes its differences fall in.
TEST(CliRef, EachDefectInItsClass) {
  test::TempDir dir;
  struct Case {
    const char* name;
    int64_t clusters;
    bool nudge;
    test::Defect defect;
    RefDeclaration declared;
    std::vector<std::string> flags;
    const char* nonzero;                // the class the differences must reach
    std::vector<const char*> zero;      // classes that must stay empty
    bool most_queries_unexplained;
  };
  test::Defect perturbed, fp8, higher, no_relu, not_forced, extra, capped, future;
  perturbed.perturb = 1e-7;
  fp8.pool = PoolPrecision::Fp8;
  higher.ties_to_higher = true;
  no_relu.block_relu = false;
  not_forced.force_blocks = false;
  extra.extra_forced = true;
  capped.tie_cap = 1;
  future.future_token = true;
  const std::vector<const char*> all_but_ties{"ref_block_flips", "ref_unexplained"};
  const std::vector<Case> cases{
      {"perturbed by 1e-7", 40, true, perturbed, kHisa, {}, "ref_near_ties", all_but_ties, false},
      {"ties to higher positions", 40, false, higher, kHisa, {}, "ref_tie_swaps", {"ref_near_ties", "ref_block_flips", "ref_unexplained"}, false},
      {"fp8 pooling judged as fp32", 0, false, fp8, kHisa, {"--ref-tolerance", "0.0625"}, "ref_block_flips", {"ref_unexplained"}, false},
      {"no ReLU in J", 0, false, no_relu, kHisa, {}, "ref_unexplained", {}, true},
      {"forced blocks not forced", 0, false, not_forced, kHisa, {}, "ref_unexplained", {}, true},
      {"extra declared as in-budget", 0, false, extra, kHisa, {}, "ref_unexplained", {}, true},
      {"a tie cap", 40, false, capped, kHisa, {}, "ref_unexplained", {}, true},
      {"a future token", 0, false, future, kHisa, {}, "ref_unexplained", {}, true},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string dump = dump_with(dir, "defect.h5", c.clusters, c.defect, c.declared, Method::Hisa, c.nudge);
    const auto l = audit_json(dir, dump, c.flags);
    EXPECT_GT(l[c.nonzero].get<int64_t>(), 0);
    for (const char* z : c.zero) EXPECT_EQ(l[z], 0) << z;
    if (c.most_queries_unexplained) {
      EXPECT_GT(l["ref_queries_unexplained"].get<int64_t>(), kQ / 2);
    }
  }
}

TEST(CliRef, TheGateFailsOnUnexplainedTokensOnly) {
  test::TempDir dir;
  test::Defect ties;
  ties.ties_to_higher = true;
  const std::string swapped = dump_with(dir, "ties.h5", 40, ties, kHisa);
  auto r = run_hisa({"audit", swapped, "--device", "cpu", "--max-ref-unexplained", "0"}, dir);
  EXPECT_TRUE(r.exited && r.status == 0) << r.output;  // tie swaps are not bugs
  test::Defect capped;
  capped.tie_cap = 1;
  const std::string dropped = dump_with(dir, "cap.h5", 40, capped, kHisa);
  r = run_hisa({"audit", dropped, "--device", "cpu", "--max-ref-unexplained", "0"}, dir);
  EXPECT_TRUE(r.exited && r.status == 1) << r.output;
  EXPECT_NE(r.output.find("above --max-ref-unexplained 0"), std::string::npos) << r.output;
  // Nothing to judge is no pass.
  const std::string none = dump_without_ref(dir);
  r = run_hisa({"audit", none, "--device", "cpu", "--max-ref-unexplained", "0"}, dir);
  EXPECT_TRUE(r.exited && r.status == 2) << r.output;
  EXPECT_NE(r.output.find("no audited layer has a topk_ref"), std::string::npos) << r.output;
}

TEST(CliRef, ExplainRefShowsEachDifferenceWithItsClass) {
  test::TempDir dir;
  test::Defect future;
  future.future_token = true;
  const std::string dump = dump_with(dir, "future.h5", 0, future, kHisa);
  const auto r = run_hisa({"explain", dump, "--sample", "s", "--layer", "0", "--query", "3", "--topk", "96", "--block-size",
                           "32", "--blocks", "12", "--ref", "--json", dir.file("e.json")},
                          dir);
  ASSERT_TRUE(r.exited && r.status == 0) << r.output;
  EXPECT_NE(r.output.find("topk_ref vs hisa B=32 m=12 in-budget fp32: IoU"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("outside the query's visible range"), std::string::npos) << r.output;
  const auto j = nlohmann::json::parse(test::read_text(dir.file("e.json")))["ref"];
  ASSERT_EQ(j["differences"].size(), 2u);  // the token dropped, and the future token in its place
  for (const auto& d : j["differences"]) EXPECT_EQ(d["class"], "unexplained");
  EXPECT_EQ(j["differences"][1]["side"], "topk_ref");
  // Without topk_ref, --ref is refused.
  const std::string none = dump_without_ref(dir);
  const auto refused = run_hisa({"explain", none, "--sample", "s", "--layer", "0", "--query", "0", "--ref"}, dir);
  EXPECT_TRUE(refused.exited && refused.status == 2) << refused.output;
  EXPECT_NE(refused.output.find("no topk_ref to judge"), std::string::npos) << refused.output;
}

TEST(CliRef, WorstQueriesByRefIou) {
  test::TempDir dir;
  test::Defect no_relu;
  no_relu.block_relu = false;
  const std::string dump = dump_with(dir, "norelu.h5", 0, no_relu, kHisa);
  const auto l = audit_json(dir, dump, {"--worst", "4", "--worst-by", "ref-iou"});
  ASSERT_EQ(l["worst"].size(), 4u);
  for (size_t n = 1; n < 4; ++n) EXPECT_LE(l["worst"][n - 1]["ref_iou"].get<double>(), l["worst"][n]["ref_iou"].get<double>());
  EXPECT_LE(l["worst"][0]["ref_iou"].get<double>(), l["ref_iou_min"].get<double>());
}

TEST(CliRef, InspectShowsTheDeclaration) {
  test::TempDir dir;
  const std::string dump = dump_with(dir, "ok.h5", 0, {}, kHisa);
  const auto r = run_hisa({"inspect", dump}, dir);
  ASSERT_TRUE(r.exited && r.status == 0) << r.output;
  EXPECT_NE(r.output.find("topk_ref: method hisa, block_size 32, blocks 12, forced in-budget, pool_precision fp32"),
            std::string::npos) << r.output;
  const auto js = run_hisa({"inspect", dump, "--json"}, dir);
  ASSERT_TRUE(js.exited && js.status == 0) << js.output;
  const auto j = nlohmann::json::parse(js.output);
  EXPECT_EQ(j["samples"][0]["layers"][0]["topk_ref"]["method"], "hisa");
  EXPECT_EQ(j["samples"][0]["layers"][0]["topk_ref"]["blocks"], 12);
}

TEST(CliRef, BadDeclarationsAreRefusedWithWhereAndWhat) {
  test::TempDir dir;
  struct Case {
    RefDeclaration declared;
    const char* message;
  };
  RefDeclaration bad_method = test::declare("hisa-v2"), bad_forced = test::declare("hisa", 32, 12, "sometimes"),
                 bad_size = test::declare("hisa");
  bad_size.block_size = 0;
  for (const Case& c : {Case{bad_method, "attribute 'method' is \"hisa-v2\", expected \"flat\" or \"hisa\" or \"block-sparse\""},
                        Case{bad_forced, "attribute 'forced' is \"sometimes\""},
                        Case{bad_size, "attribute 'block_size' is 0, expected 1 to"}}) {
    const std::string dump = dump_with(dir, "bad.h5", 0, {}, c.declared);
    const auto r = run_hisa({"audit", dump, "--device", "cpu"}, dir);
    EXPECT_TRUE(r.exited && r.status == 2) << r.output;
    EXPECT_NE(r.output.find("/s/layer_0/topk_ref"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(c.message), std::string::npos) << r.output;
  }
}

}  // namespace
}  // namespace hisa
