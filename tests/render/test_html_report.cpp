// hisa report: the page's structure, that it loads nothing, that text is escaped, that its numbers are the
// audit's, and the SVG helpers it is drawn with.
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <sstream>

#include "core/error.hpp"
#include "pipelines/crosslayer.hpp"
#include "render/crosslayer_output.hpp"
#include "render/html_report.hpp"
#include "pipelines/sweep.hpp"
#include "render/sweep_output.hpp"
#include "render/svg.hpp"
#include "synth/synth.hpp"
#include "test_util.hpp"

namespace hisa {
namespace {

std::string write_dump(const test::TempDir& dir, const std::string& name) {
  SynthOptions s;
  s.output = dir.file(name);
  s.seq_len = 4096;
  s.layers = 3;
  s.heads = 4;
  s.head_dim = 64;
  s.index_topk = 64;
  s.queries = parse_query_selection("sample:24");
  write_synth_dump(s);
  return s.output;
}

ReportOptions options_for(const std::string& path) {
  ReportOptions o;
  o.audit.files = {path};
  o.audit.run.device = "cpu";
  o.audit.progress = false;
  o.audit.config.block_size = 32;
  o.audit.config.blocks = 4;
  o.audit.worst = 5;
  o.pictures = 2;
  return o;
}

std::string html_of(const ReportData& d) {
  std::ostringstream out;
  write_html_report(out, d);
  return out.str();
}

int64_t count(const std::string& text, const std::string& what) {
  int64_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) ++n;
  return n;
}

TEST(HtmlReport, EverySectionAndOnlyInlineContent) {
  test::TempDir dir;
  const ReportData d = collect_report(options_for(write_dump(dir, "d.h5")));
  const std::string html = html_of(d);
  for (const auto& h : report_headings()) EXPECT_EQ(count(html, "<h2>" + h + "</h2>"), 1) << h;
  // Nothing to fetch: no scripts, no links, no URLs. The one "http" is the Content-Security-Policy tag
  // that tells the browser to fetch nothing.
  for (const char* banned : {"<script", "<link", "<img", "<iframe", " src=", "url(", "@import", "xmlns"}) {
    EXPECT_EQ(count(html, banned), 0) << banned;
  }
  EXPECT_EQ(count(html, "http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'"), 1);
  EXPECT_EQ(count(html, "http"), 1);
  // One bar chart, a histogram and a budget curve per layer, the cause bars, one picture per drawn query.
  ASSERT_EQ(d.audit.layers.size(), 3u);
  ASSERT_EQ(d.pictures.size(), 2u);
  EXPECT_EQ(count(html, "<svg"), 1 + 3 + 3 + 1 + 2);
  EXPECT_EQ(count(html, "</svg>"), count(html, "<svg"));
  EXPECT_EQ(count(html, "hisa explain "), 2);
  EXPECT_EQ(count(html, "<details"), 3);  // one worst-query table per layer
  EXPECT_EQ(html.substr(0, 15), "<!DOCTYPE html>");
  EXPECT_NE(html.find("</html>"), std::string::npos);
}

TEST(HtmlReport, NumbersAreTheAudits) {
  test::TempDir dir;
  ReportOptions o = options_for(write_dump(dir, "d.h5"));
  const ReportData d = collect_report(o);
  const AuditResult plain = run_audit(o.audit);
  ASSERT_EQ(d.layers.size(), plain.layers.size());
  for (size_t i = 0; i < d.layers.size(); ++i) {
    const LayerStats& l = plain.layers[i];
    EXPECT_EQ(d.audit.layers[i].hisa.iou.mean, l.hisa.iou.mean);
    EXPECT_EQ(int64_t(d.layers[i].hisa_iou.size()), l.queries);
    EXPECT_EQ(int64_t(d.layers[i].block_iou.size()), l.queries);
    // The budget curve at the audited m is the audit.
    const auto& curve = d.layers[i].budget;
    ASSERT_GE(int64_t(curve.size()), o.audit.config.blocks);
    EXPECT_NEAR(curve[size_t(o.audit.config.blocks - 1)].recall, l.hisa.recall.mean, 1e-12);
    EXPECT_NEAR(curve[size_t(o.audit.config.blocks - 1)].iou, l.hisa.iou.mean, 1e-12);
    EXPECT_NEAR(curve.back().recall, 1.0, 1e-12);  // every eligible block kept: HISA = DSA
  }
  const std::string html = html_of(d);
  EXPECT_NE(html.find(svg::escape(std::to_string(plain.layers[0].queries))), std::string::npos);
  char mean[32];
  std::snprintf(mean, sizeof mean, "%.4f ± ", plain.layers[2].hisa.iou.mean);
  EXPECT_NE(html.find(mean), std::string::npos) << "the table shows layer 2's mean IoU";
  // The pictures are the worst queries, re-scored: the same IoU as the audit found, a miss per tick.
  for (const auto& p : d.pictures) {
    const auto& worst = d.audit.layers[size_t(p.layer)].worst;
    const auto it = std::find_if(worst.begin(), worst.end(), [&](const WorstQuery& w) { return w.query == p.query; });
    ASSERT_NE(it, worst.end());
    EXPECT_EQ(p.iou, it->iou);
    EXPECT_LT(p.iou, 1.0);
    int64_t misses = 0;
    for (int64_t c : p.miss_causes) misses += c;
    EXPECT_EQ(int64_t(p.missed.size()), misses);
    EXPECT_EQ(int64_t(p.column_max.size()), std::min<int64_t>(kPictureColumns, p.q_pos - p.k_start + 1));
  }
  // Each layer's worst query first: two pictures come from two layers.
  EXPECT_NE(d.pictures[0].layer, d.pictures[1].layer);
}

// With --sweep, the page shows the sweep's recommendation: one row per layer with its (B, m), as in the JSON.
TEST(HtmlReport, ShowsTheSweepRecommendation) {
  test::TempDir dir;
  const std::string path = write_dump(dir, "d.h5");
  SweepOptions so;
  so.files = {path};
  so.block_sizes = {16, 32};
  so.blocks = {2, 4, 8, 16, 64};
  so.progress = false;
  const nlohmann::json sweep = sweep_json(run_sweep(so));
  const std::string json_path = dir.file("sweep.json");
  std::ofstream(json_path) << sweep.dump();
  ReportOptions o = options_for(path);
  o.sweep_json = json_path;
  const std::string html = html_of(collect_report(o));
  const auto& layers = sweep["recommendations"][0]["layers"];
  ASSERT_EQ(layers.size(), 3u);
  for (const auto& l : layers) {
    const std::string row = "<tr><td>" + std::to_string(l["layer"].get<int>()) + "</td><td>" +
                            std::to_string(l["block_size"].get<int64_t>()) + "</td><td>" +
                            std::to_string(l["blocks"].get<int64_t>()) + "</td>";
    EXPECT_NE(html.find(row), std::string::npos) << row;
  }
  EXPECT_EQ(html.find("No sweep was given"), std::string::npos);
  EXPECT_NE(html_of(collect_report(options_for(path))).find("No sweep was given"), std::string::npos);
  // A file that is not a sweep's JSON is a usage error before anything runs.
  std::ofstream(dir.file("bad.json")) << R"({"layers": []})";
  o.sweep_json = dir.file("bad.json");
  EXPECT_THROW(collect_report(o), UsageError);
}

// With --crosslayer, the page shows the pooled pairs as a table and the plans, as in the JSON.
TEST(HtmlReport, ShowsTheCrosslayerSection) {
  test::TempDir dir;
  const std::string path = write_dump(dir, "d.h5");
  CrosslayerOptions co;
  co.files = {path};
  co.run.device = "cpu";
  co.progress = false;
  co.reuse_every = 2;
  const nlohmann::json cl = crosslayer_json(run_crosslayer(co));
  const std::string json_path = dir.file("crosslayer.json");
  std::ofstream(json_path) << cl.dump();
  ReportOptions o = options_for(path);
  o.crosslayer_json = json_path;
  const std::string html = html_of(collect_report(o));
  EXPECT_EQ(html.find("No cross-layer analysis was given"), std::string::npos);
  for (const auto& p : cl["plans"]) {
    const std::string cell = std::string(">").append(p["name"].get<std::string>()).append("</td>");
    EXPECT_NE(html.find(cell), std::string::npos) << cell;
  }
  const double r01 = cl["pooled"][0]["recall_mean"].get<double>();
  char cell[32];
  std::snprintf(cell, sizeof cell, ">%.3f</td>", r01);
  EXPECT_NE(html.find(cell), std::string::npos) << cell;
  EXPECT_NE(html_of(collect_report(options_for(path))).find("No cross-layer analysis was given"), std::string::npos);
  // A file that is not a crosslayer's JSON (a sweep's, say) is a usage error before anything runs.
  std::ofstream(dir.file("bad.json")) << R"({"layers": [0, 1], "pooled": []})";
  o.crosslayer_json = dir.file("bad.json");
  EXPECT_THROW(collect_report(o), UsageError);
}

TEST(HtmlReport, FileNamesAreEscaped) {
  test::TempDir dir;
  const std::string odd = "we<b>ird&\"name'.h5";
  const ReportData d = collect_report(options_for(write_dump(dir, odd)));
  const std::string html = html_of(d);
  EXPECT_EQ(html.find("we<b>ird"), std::string::npos);
  EXPECT_NE(html.find("we&lt;b&gt;ird&amp;&quot;name&#39;.h5"), std::string::npos);
}

TEST(HtmlReport, WorstZeroLeavesTheSectionEmpty) {
  test::TempDir dir;
  ReportOptions o = options_for(write_dump(dir, "d.h5"));
  o.audit.worst = 0;
  const ReportData d = collect_report(o);
  EXPECT_TRUE(d.pictures.empty());
  const std::string html = html_of(d);
  EXPECT_EQ(count(html, "<h2>Worst queries</h2>"), 1);
  EXPECT_EQ(count(html, "<svg"), 1 + 3 + 3 + 1);
}

TEST(HtmlReport, CliWritesTheFileAndRejectsBadOutput) {
  test::TempDir dir;
  const std::string dump = write_dump(dir, "d.h5");
  const std::string out = dir.file("r.html");
  auto r = test::run_process({HISA_BINARY, "report", dump, "-o", out, "--block-size", "32", "--blocks", "4", "--worst",
                              "3", "--pictures", "1", "--layers", "0,2", "--device", "cpu"},
                             dir.path().string());
  ASSERT_EQ(r.status, 0) << r.output;
  const std::string html = test::read_text(out);
  EXPECT_EQ(count(html, "<svg"), 1 + 2 + 2 + 1 + 1);
  EXPECT_NE(html.find("--worst 3"), std::string::npos) << "the command line is recorded";
  auto bad = test::run_process({HISA_BINARY, "report", dump, "-o", dir.file("no/such/dir/r.html")}, dir.path().string());
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.output.find("-o: " + dir.file("no/such/dir/r.html") + ": the directory"), std::string::npos) << bad.output;
  auto missing = test::run_process({HISA_BINARY, "report", dump}, dir.path().string());
  EXPECT_EQ(missing.status, 2);  // -o is required
  auto cuda = test::run_process({HISA_BINARY, "report", dump, "-o", out, "--device", "cuda"}, dir.path().string());
  EXPECT_EQ(cuda.status, 2);
}

TEST(Svg, EscapesText) {
  EXPECT_EQ(svg::escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&#39;");
  svg::HistogramSpec spec;
  spec.frame.title = "<script>alert(1)</script>";
  spec.label = "x&y";
  const std::vector<double> values = {0.5};
  const std::string s = svg::histogram(values, {}, spec);
  EXPECT_EQ(s.find("<script"), std::string::npos);
  EXPECT_NE(s.find("&lt;script&gt;"), std::string::npos);
  EXPECT_NE(s.find("x&amp;y"), std::string::npos);
}

TEST(Svg, BinsAndPooling) {
  const std::vector<double> v = {0.0, 0.04, 0.05, 0.5, 1.0, 1.5, -0.1};
  const auto counts = svg::bin_counts(v, 0, 1, 20);
  EXPECT_EQ(counts[0], 2);   // 0 and 0.04
  EXPECT_EQ(counts[1], 1);   // 0.05 starts bin 1
  EXPECT_EQ(counts[10], 1);  // 0.5
  EXPECT_EQ(counts[19], 1);  // 1.0 is in the last, closed bin; 1.5 and -0.1 are outside
  // An isolated high token survives pooling 10000 positions into 100 columns.
  std::vector<float> row(10000, 0.0f);
  row[1234] = 5.0f;
  const auto pooled = svg::max_pool(row, 100);
  ASSERT_EQ(pooled.size(), 100u);
  EXPECT_EQ(pooled[12], 5.0f);
  EXPECT_EQ(*std::max_element(pooled.begin(), pooled.end()), 5.0f);
  EXPECT_EQ(svg::max_pool(std::vector<float>{1, 2, 3}, 10).size(), 3u);  // never more columns than values
}

TEST(Svg, ChartsAreWellFormed) {
  svg::LineChartSpec spec;
  spec.x_min = 1;
  spec.x_max = 256;
  spec.log2_x = true;
  spec.markers = {{64, "m=64"}};
  const std::string s = svg::line_chart({{"recall", "#000", {1, 2, 256}, {0.1, 0.5, 1.0}, false}}, spec);
  EXPECT_EQ(count(s, "<svg"), 1);
  EXPECT_EQ(count(s, "<polyline"), 1);
  EXPECT_NE(s.find(">256<"), std::string::npos);  // a power-of-two tick
  EXPECT_NE(s.find("m=64"), std::string::npos);
  const std::string bars = svg::stacked_share_bars({{"layer 0", {1, 0, 3, 0}}, {"layer 1", {0, 0, 0, 0}}},
                                                   {"a", "b", "c", "d"}, {"#111", "#222", "#333", "#444"});
  EXPECT_EQ(count(bars, "<rect"), 2 + 1 + 0);  // two parts of layer 0, the empty row's background
  EXPECT_NE(bars.find("no misses"), std::string::npos);
}

}  // namespace
}  // namespace hisa
