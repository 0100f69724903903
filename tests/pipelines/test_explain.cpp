// hisa explain and the audit's worst-query list, causes and certified method, end to end.
#include <gtest/gtest.h>

#include <algorithm>

#include "pipelines/audit.hpp"
#include "render/audit_output.hpp"
#include "pipelines/explain.hpp"
#include "render/explain_output.hpp"
#include "synth/synth.hpp"
#include "test_util.hpp"

namespace hisa {
namespace {

std::string write_small_dump(const test::TempDir& dir) {
  SynthOptions s;
  s.output = dir.file("d.h5");
  s.seq_len = 4096;
  s.layers = 3;
  s.heads = 4;
  s.head_dim = 64;
  s.index_topk = 64;
  s.queries = parse_query_selection("sample:16");
  write_synth_dump(s);
  return s.output;
}

SelectionConfig small_config() {
  SelectionConfig c;
  c.block_size = 32;
  c.blocks = 4;
  return c;
}

TEST(Explain, MissesAreExactlyDsaMinusHisaWithCauses) {
  test::TempDir dir;
  const std::string path = write_small_dump(dir);
  int64_t explained_misses = 0;
  for (int layer = 0; layer < 3; ++layer) {
    for (int64_t q : {0, 7, 15}) {
      ExplainOptions o;
      o.file = path;
      o.sample = "sample_0";
      o.layer = layer;
      o.query = q;
      o.config = small_config();
      Explanation e = explain_query(o);
      std::vector<int64_t> missing;
      std::set_difference(e.audit.flat.begin(), e.audit.flat.end(), e.audit.hisa.begin(), e.audit.hisa.end(),
                          std::back_inserter(missing));
      ASSERT_EQ(e.misses.size(), missing.size());
      int64_t by_cause = 0;
      for (int64_t c : e.metrics.miss_causes) by_cause += c;
      EXPECT_EQ(by_cause, int64_t(missing.size()));
      EXPECT_EQ(int64_t(e.row.size()), e.audit.visible);
      for (const auto& m : e.misses) {
        // The row and the engine agree on every score: the explanation shows what the audit used.
        EXPECT_EQ(e.row[size_t(m.position - e.audit.k_start)], m.score);
        EXPECT_EQ(m.distance, e.audit.q_pos - m.position);
      }
      std::ostringstream text;
      write_explanation(text, e);
      EXPECT_NE(text.str().find("kept"), std::string::npos);
      auto j = explanation_json(e);
      EXPECT_EQ(j["misses"].size(), e.misses.size());
      EXPECT_EQ(j["scores"].size(), e.row.size());
      explained_misses += int64_t(e.misses.size());
    }
  }
  EXPECT_GT(explained_misses, 0);  // the small budget really prunes
}

TEST(Explain, BadQueryIsAUsageErrorThroughTheCli) {
  test::TempDir dir;
  const std::string path = write_small_dump(dir);
  auto r = test::run_process({HISA_BINARY, "explain", path, "--sample", "sample_0", "--layer", "0", "--query", "16"},
                             dir.path().string());
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.output.find("--query 16"), std::string::npos) << r.output;
  auto missing = test::run_process({HISA_BINARY, "explain", path, "--sample", "nope", "--layer", "0", "--query", "0"},
                                   dir.path().string());
  EXPECT_EQ(missing.status, 2);
  EXPECT_NE(missing.output.find("/nope"), std::string::npos) << missing.output;
  auto ok = test::run_process({HISA_BINARY, "explain", path, "--sample", "sample_0", "--layer", "2", "--query", "15",
                               "--block-size", "32", "--blocks", "4", "--json", dir.file("e.json")},
                              dir.path().string());
  EXPECT_EQ(ok.status, 0) << ok.output;
  EXPECT_EQ(nlohmann::json::parse(test::read_text(dir.file("e.json")))["query"], 15);
}

TEST(AuditDiagnostics, WorstCausesAndCertifiedMethod) {
  test::TempDir dir;
  AuditOptions o;
  o.files = {write_small_dump(dir)};
  o.config = small_config();
  o.run.device = "cpu";
  o.progress = false;
  o.worst = 3;
  o.certified = true;
  std::map<int, std::vector<double>> ious;
  std::map<int, int64_t> misses;
  AuditResult r = run_audit(o, [&](const QueryRecord& q) {
    ious[q.layer].push_back(q.metrics->hisa.iou);
    misses[q.layer] += int64_t(q.audit->flat.size()) -
                       int64_t(std::count_if(q.audit->flat.begin(), q.audit->flat.end(), [&](int64_t s) {
                         return std::binary_search(q.audit->hisa.begin(), q.audit->hisa.end(), s);
                       }));
  });
  for (const auto& l : r.layers) {
    ASSERT_EQ(l.worst.size(), 3u);
    auto sorted = ious[l.layer];
    std::sort(sorted.begin(), sorted.end());
    for (size_t i = 0; i < 3; ++i) EXPECT_EQ(l.worst[i].iou, sorted[i]);
    int64_t total = 0;
    for (int64_t c : l.miss_causes) total += c;
    EXPECT_EQ(total, misses[l.layer]);
    ASSERT_TRUE(l.certified_exact_share.has_value());
    EXPECT_DOUBLE_EQ(*l.certified_exact_share, 1.0);  // branch and bound reproduces DSA on every query
    EXPECT_LE(*l.certified_scored_share, 1.0);
  }
  auto j = audit_json(r);
  EXPECT_EQ(j["layers"][0]["worst"].size(), 3u);
  EXPECT_TRUE(j["layers"][0]["miss_causes"].contains("dilution"));
}

}  // namespace
}  // namespace hisa
