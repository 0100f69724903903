// docs/definitions.md, "Edge cases", through the library's runs (audit, select, sweep, explain) on tiny dumps written to disk:
// each gives the exact result the Definitions ask for, or a clear error; a layer without queries and a sample
// without layers are reported as such, never as made-up numbers or NaN.
#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>

#include "core/error.hpp"
#include "io/edge_dumps.hpp"
#include "pipelines/audit.hpp"
#include "render/audit_output.hpp"
#include "pipelines/explain.hpp"
#include "render/explain_output.hpp"
#include "pipelines/select.hpp"
#include "pipelines/sweep.hpp"
#include "render/sweep_output.hpp"
#include "select/reference.hpp"
#include "test_util.hpp"

namespace hisa {
namespace {

using test::EdgeDump;
using test::TempDir;

AuditOptions audit_of(const std::string& path) {
  AuditOptions o;
  o.files = {path};
  o.config.block_size = 4;
  o.config.blocks = 2;
  o.run.device = "cpu";
  o.progress = false;
  return o;
}

// certified: flat DSA by branch and bound.
std::vector<std::vector<int64_t>> select_all(const std::string& dump, Method m, const TempDir& dir,
                                             const std::string& group = "/s0/layer_0", bool certified = false) {
  SelectOptions o;
  o.input = audit_of(dump);
  o.method = m;
  o.certified = certified;
  o.output = dir.file(std::string(certified ? "certified" : method_name(m)) + ".sel.h5");
  run_select(o);
  return test::read_selections(o.output, group);
}

std::vector<std::vector<int64_t>> select_certified(const std::string& dump, const TempDir& dir) {
  return select_all(dump, Method::Flat, dir, "/s0/layer_0", true);
}

TEST(EdgeCases, OneKeyLayerSelectsPositionZeroEverywhere) {
  TempDir dir;
  const std::string path = dir.file("one-key.h5");
  test::write_edge_dump(path, EdgeDump::OneKey);
  for (Method m : {Method::Flat, Method::Hisa, Method::Block}) {
    EXPECT_EQ(select_all(path, m, dir), (std::vector<std::vector<int64_t>>{{0}})) << method_name(m);
  }
  EXPECT_EQ(select_certified(path, dir), (std::vector<std::vector<int64_t>>{{0}}));
  const AuditResult r = run_audit(audit_of(path));
  ASSERT_EQ(r.layers.size(), 1u);
  EXPECT_EQ(r.layers[0].queries, 1);
  EXPECT_EQ(r.layers[0].hisa.iou.mean, 1.0);
  EXPECT_EQ(r.layers[0].coverage_flat_mean, 1.0);
  EXPECT_EQ(r.layers[0].certified_share, 1.0);
  ExplainOptions e;
  e.file = path;
  e.sample = "s0";
  const Explanation x = explain_query(e);
  EXPECT_EQ(x.audit.flat, (std::vector<int64_t>{0}));
  EXPECT_EQ(x.audit.hisa, (std::vector<int64_t>{0}));
}

TEST(EdgeCases, KLargerThanEveryRowSelectsEveryVisibleKey) {
  TempDir dir;
  const std::string path = dir.file("short-rows.h5");
  test::write_edge_dump(path, EdgeDump::ShortRows);
  DumpReader reader(path);
  LayerReader lr = reader.open_layer("s0", 0);
  const QueryBatch b = lr.read_queries(0, lr.shape().queries);
  const auto flat = select_all(path, Method::Flat, dir);
  const auto block = select_all(path, Method::Block, dir);
  ASSERT_EQ(int64_t(flat.size()), b.count);
  for (int64_t i = 0; i < b.count; ++i) {
    std::vector<int64_t> visible;
    for (int64_t s = b.k_start[size_t(i)]; s <= b.q_pos[size_t(i)]; ++s) visible.push_back(s);
    EXPECT_EQ(flat[size_t(i)], visible) << "query " << i;
    // Block-sparse keeps m = ceil(100 / 4) = 25 blocks of 4: more than any row's, so every visible key.
    EXPECT_EQ(block[size_t(i)], visible) << "query " << i;
  }
  const AuditResult r = run_audit(audit_of(path));
  EXPECT_EQ(r.config.topk, 100);
  EXPECT_EQ(r.layers[0].block.recall.min, 1.0);
}

TEST(EdgeCases, OneHeadAndOddHeadDimsEqualTheReference) {
  for (EdgeDump kind : {EdgeDump::OneHeadD7, EdgeDump::OneHeadD13}) {
    TempDir dir;
    const std::string path = dir.file("odd.h5");
    test::write_edge_dump(path, kind);
    DumpReader reader(path);
    LayerReader lr = reader.open_layer("s0", 0);
    const LayerKeys keys = lr.read_keys();
    const QueryBatch b = lr.read_queries(0, lr.shape().queries);
    ASSERT_EQ(b.heads, 1);
    SelectionConfig c = audit_of(path).config;
    c.topk = 4;
    const auto flat = select_all(path, Method::Flat, dir);
    const auto hisa = select_all(path, Method::Hisa, dir);
    const auto block = select_all(path, Method::Block, dir);
    for (int64_t i = 0; i < b.count; ++i) {
      EXPECT_EQ(flat[size_t(i)], reference::flat(b, i, keys, c)) << "D=" << b.dim << " query " << i;
      EXPECT_EQ(hisa[size_t(i)], reference::hisa(b, i, keys, c)) << "D=" << b.dim << " query " << i;
      EXPECT_EQ(block[size_t(i)], reference::block_sparse(b, i, keys, c)) << "D=" << b.dim << " query " << i;
    }
  }
}

// A layer with Nq = 0 and a sample with no layers: every run finishes; the layer is reported with 0 queries
// and no statistics (null in JSON, empty in CSV, "no queries" in the table), never zeros or NaN.
TEST(EdgeCases, ZeroQueryLayersAndEmptySamplesAreReportedAsSuch) {
  TempDir dir;
  const std::string path = dir.file("no-queries.h5");
  test::write_edge_dump(path, EdgeDump::NoQueries);
  const AuditResult r = run_audit(audit_of(path));
  ASSERT_EQ(r.layers.size(), 2u);
  EXPECT_EQ(r.layers[0].queries, 0);
  EXPECT_EQ(r.layers[1].queries, 3);
  EXPECT_EQ(r.layers[0].missing_samples, std::vector<std::string>{"empty"});
  const nlohmann::json j = audit_json(r);
  const auto& empty = j["layers"][0];
  EXPECT_EQ(empty["queries"], 0);
  EXPECT_EQ(empty["hisa"]["iou"]["count"], 0);
  EXPECT_TRUE(empty["hisa"]["iou"]["mean"].is_null());
  EXPECT_TRUE(empty["hisa"]["exact_share"].is_null());
  EXPECT_TRUE(empty["flat"]["coverage_mean"].is_null());
  EXPECT_TRUE(empty["certified_share"].is_null());
  EXPECT_TRUE(j["layers"][1]["hisa"]["iou"]["mean"].is_number());
  std::ostringstream table, csv;
  write_audit_table(table, r);
  EXPECT_NE(table.str().find("    0       0 | no queries in the selected samples"), std::string::npos) << table.str();
  write_layer_csv(csv, r);
  std::string header, row0;
  std::istringstream lines(csv.str());
  std::getline(lines, header);
  std::getline(lines, row0);
  EXPECT_EQ(std::count(header.begin(), header.end(), ','), std::count(row0.begin(), row0.end(), ','));
  EXPECT_EQ(row0.rfind("0,0,,", 0), 0u) << row0;

  // select writes an empty [0, k] selection for the layer; explain says the layer has no query to explain.
  const auto none = select_all(path, Method::Hisa, dir);
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(select_all(path, Method::Flat, dir, "/s0/layer_1").size(), 3u);
  ExplainOptions e;
  e.file = path;
  e.sample = "s0";
  EXPECT_THROW(explain_query(e), UsageError);

  SweepOptions so;
  so.files = {path};
  so.progress = false;
  so.block_sizes = {4, 8};
  so.blocks = {1, 2};
  const SweepResult sr = run_sweep(so);
  ASSERT_EQ(sr.layers.size(), 2u);
  EXPECT_EQ(sr.layers[0].all.queries, 0);
  EXPECT_EQ(sr.layers[1].all.queries, 3);
  std::ostringstream sweep_text;
  write_sweep_table(sweep_text, sr);
  EXPECT_NE(sweep_text.str().find("    0     4       0 | no queries in the selected samples"), std::string::npos)
      << sweep_text.str();
  EXPECT_NE(sweep_text.str().find("Layers without queries: 0"), std::string::npos) << sweep_text.str();
  EXPECT_EQ(sweep_json(sr)["curves"][0]["queries"], 0);
  // Not a layer the grid fails, and not part of the uniform setting's cost.
  for (const auto& m : sr.recommendations) {
    EXPECT_EQ(std::count(m.unmet.begin(), m.unmet.end(), 0), 0);
    if (m.uniform) {
      EXPECT_EQ(m.uniform->lowest_layer, 1);
    }
  }

  // A file whose only sample holds no layers: nothing to audit, said so, exit normally.
  const std::string bare = dir.file("only-empty.h5");
  test::write_edge_dump(bare, EdgeDump::OnlyEmpty);
  const AuditResult none_r = run_audit(audit_of(bare));
  EXPECT_TRUE(none_r.layers.empty());
  std::ostringstream none_table;
  write_audit_table(none_table, none_r);
  EXPECT_NE(none_table.str().find("no layers"), std::string::npos) << none_table.str();
}

// Scores that overflow fp32 (finite inputs): +inf first, NaN as -inf, coverage a finite share.
TEST(EdgeCases, OverflowedScoresThroughTheAudit) {
  TempDir dir;
  const std::string path = dir.file("overflow.h5");
  test::write_edge_dump(path, EdgeDump::Overflow);
  EXPECT_EQ(select_all(path, Method::Flat, dir),
            (std::vector<std::vector<int64_t>>{{4, 5, 6, 7, 8, 9}, {0, 1, 2, 3, 12, 13}, {4, 5, 6, 7, 8, 9}}));
  EXPECT_EQ(select_certified(path, dir), select_all(path, Method::Flat, dir));
  const AuditResult r = run_audit(audit_of(path));
  ASSERT_EQ(r.layers.size(), 1u);
  // DSA's coverage per query: 6/8, 6/12, 6/8 (docs/definitions.md, "Edge cases": a score equal to the row's maximum counts 1).
  EXPECT_DOUBLE_EQ(r.layers[0].coverage_flat_mean, (0.75 + 0.5 + 0.75) / 3.0);
  // nlohmann writes NaN as null: the coverage numbers must all be there.
  const nlohmann::json j = audit_json(r);  // named: a range-for over a temporary's member would dangle
  for (const auto& l : j["layers"]) {
    EXPECT_TRUE(l["flat"]["coverage_mean"].is_number());
    for (const char* m : {"hisa", "block"}) {
      EXPECT_TRUE(l[m]["coverage"]["mean"].is_number()) << m;
      EXPECT_TRUE(l[m]["coverage_ratio"]["mean"].is_number()) << m;
      EXPECT_TRUE(l[m]["coverage"]["min"].is_number()) << m;
    }
  }
  ExplainOptions e;
  e.file = path;
  e.sample = "s0";
  e.query = 2;  // every visible score -inf
  e.config.block_size = 4;
  e.config.blocks = 2;
  const Explanation x = explain_query(e);
  EXPECT_DOUBLE_EQ(x.metrics.coverage_flat, 0.75);
  std::ostringstream text;
  write_explanation(text, x);
  EXPECT_NE(text.str().find("no finite score"), std::string::npos) << text.str();
  EXPECT_EQ(text.str().find("nan"), std::string::npos) << text.str();
}

}  // namespace
}  // namespace hisa
