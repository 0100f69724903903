// docs/definitions.md, "Edge cases", as a user meets them: every command on the tiny edge dumps (tests/io/edge_dumps.hpp) ends
// with exit status 0 and the exact result, or exit status 2 and a message naming the file, the HDF5 path and the
// row; never a crash, never NaN in the output.
#include <gtest/gtest.h>

#include <map>

#include <nlohmann/json.hpp>

#include "io/bad_dumps.hpp"
#include "io/edge_dumps.hpp"
#include "cli/run_hisa.hpp"
#include "test_util.hpp"

namespace hisa {
namespace {

using test::EdgeDump;
using test::TempDir;
using test::run_hisa;
using test::with;

// Runs a command that must succeed; its output must hold no NaN.
std::string run_ok(const std::vector<std::string>& args, const TempDir& dir) {
  test::ProcessResult r = run_hisa(args, dir);
  EXPECT_TRUE(r.exited) << "killed by signal " << r.status << "\n" << r.output;
  EXPECT_EQ(0, r.status) << args[0] << ": " << r.output;
  EXPECT_EQ(std::string::npos, r.output.find("nan")) << args[0] << ": " << r.output;
  return r.output;
}

// A JSON output file, parsed (nlohmann writes NaN as null: callers check that their fields are numbers).
nlohmann::json read_json(const std::string& path) { return nlohmann::json::parse(test::read_text(path)); }

const std::vector<std::string> kSmallBlocks{"--block-size", "4", "--blocks", "2"};

// Every command that reads a dump, on one file: inspect --check, audit (table and JSON), sweep (JSON), select for
// each method; returns the audit JSON.
nlohmann::json run_every_command(const std::string& path, const TempDir& dir) {
  EXPECT_NE(run_ok({"inspect", "--check", path}, dir).find("check: every value read and validated"), std::string::npos);
  run_ok(with({"audit", path, "--json", dir.file("audit.json"), "--csv", dir.file("audit.csv"), "--per-query",
               dir.file("q.csv"), "--device", "cpu", "--worst", "2"},
              kSmallBlocks),
         dir);
  run_ok({"sweep", path, "--block-sizes", "4,8", "--blocks", "1,2", "--json", dir.file("sweep.json")}, dir);
  read_json(dir.file("sweep.json"));
  for (const char* m : {"flat", "hisa", "block", "certified"}) {
    run_ok(with({"select", path, "--method", m, "-o", dir.file(std::string(m) + ".h5"), "--device", "cpu"}, kSmallBlocks),
           dir);
  }
  return read_json(dir.file("audit.json"));
}

TEST(CliEdgeCases, OneKeyLayer) {
  TempDir dir;
  const std::string path = dir.file("one-key.h5");
  test::write_edge_dump(path, EdgeDump::OneKey);
  const nlohmann::json j = run_every_command(path, dir);
  EXPECT_EQ(j["layers"][0]["queries"], 1);
  EXPECT_EQ(j["layers"][0]["hisa"]["iou"]["mean"], 1.0);
  for (const char* m : {"flat", "hisa", "block", "certified"}) {
    EXPECT_EQ(test::read_selections(dir.file(std::string(m) + ".h5"), "/s0/layer_0"),
              (std::vector<std::vector<int64_t>>{{0}}))
        << m;
  }
  const std::string text = run_ok({"explain", path, "--sample", "s0", "--layer", "0", "--query", "0"}, dir);
  EXPECT_NE(text.find("HISA holds every DSA token"), std::string::npos) << text;
}

TEST(CliEdgeCases, KLargerThanEveryRow) {
  TempDir dir;
  const std::string path = dir.file("short-rows.h5");
  test::write_edge_dump(path, EdgeDump::ShortRows);
  run_every_command(path, dir);
  DumpReader reader(path);
  const QueryBatch b = reader.open_layer("s0", 0).read_queries(0, 5);
  const auto flat = test::read_selections(dir.file("flat.h5"), "/s0/layer_0");
  ASSERT_EQ(flat.size(), 5u);
  for (int64_t i = 0; i < b.count; ++i) {
    EXPECT_EQ(int64_t(flat[size_t(i)].size()), b.q_pos[size_t(i)] - b.k_start[size_t(i)] + 1);
    EXPECT_EQ(flat[size_t(i)].front(), b.k_start[size_t(i)]);
    EXPECT_EQ(flat[size_t(i)].back(), b.q_pos[size_t(i)]);
  }
  EXPECT_EQ(test::read_selections(dir.file("certified.h5"), "/s0/layer_0"), flat);
}

TEST(CliEdgeCases, OneHeadOddHeadDims) {
  for (EdgeDump kind : {EdgeDump::OneHeadD7, EdgeDump::OneHeadD13}) {
    TempDir dir;
    const std::string path = dir.file("odd.h5");
    test::write_edge_dump(path, kind);
    const nlohmann::json j = run_every_command(path, dir);
    EXPECT_EQ(j["layers"][0]["queries"], 9);
    // The branch-and-bound selection is exact by construction: it must equal the flat scan on every query.
    EXPECT_EQ(test::read_selections(dir.file("certified.h5"), "/s0/layer_0"),
              test::read_selections(dir.file("flat.h5"), "/s0/layer_0"));
    run_ok(with({"explain", path, "--sample", "s0", "--layer", "0", "--query", "8"}, kSmallBlocks), dir);
  }
}

TEST(CliEdgeCases, ZeroQueryLayerAndSampleWithoutLayers) {
  TempDir dir;
  const std::string path = dir.file("no-queries.h5");
  test::write_edge_dump(path, EdgeDump::NoQueries);
  const nlohmann::json j = run_every_command(path, dir);
  ASSERT_EQ(j["layers"].size(), 2u);
  EXPECT_EQ(j["layers"][0]["queries"], 0);
  EXPECT_TRUE(j["layers"][0]["hisa"]["iou"]["mean"].is_null());
  EXPECT_EQ(j["layers"][1]["queries"], 3);
  EXPECT_EQ(test::read_selections(dir.file("hisa.h5"), "/s0/layer_0").size(), 0u);
  const std::string table = run_ok(with({"audit", path, "--device", "cpu"}, kSmallBlocks), dir);
  EXPECT_NE(table.find("no queries in the selected samples"), std::string::npos) << table;
  EXPECT_NE(table.find("layer 0 is absent from: empty"), std::string::npos) << table;
  // --min-iou judges only layers that hold queries: the empty layer neither passes nor fails it.
  test::ProcessResult strict = run_hisa(with({"audit", path, "--device", "cpu", "--min-iou", "0"}, kSmallBlocks), dir);
  EXPECT_EQ(0, strict.status) << strict.output;
  run_ok({"report", path, "-o", dir.file("report.html"), "--device", "cpu", "--block-size", "4", "--blocks", "2"}, dir);
  EXPECT_NE(test::read_text(dir.file("report.html")).find("no queries in the selected samples"), std::string::npos);

  test::ProcessResult explain = run_hisa({"explain", path, "--sample", "s0", "--layer", "0", "--query", "0"}, dir);
  ASSERT_TRUE(explain.exited) << explain.output;
  EXPECT_EQ(2, explain.status) << explain.output;
  EXPECT_NE(explain.output.find(path + ": /s0/layer_0 (the layer holds no queries)"), std::string::npos)
      << explain.output;

  const std::string bare = dir.file("only-empty.h5");
  test::write_edge_dump(bare, EdgeDump::OnlyEmpty);
  const nlohmann::json none = run_every_command(bare, dir);
  EXPECT_TRUE(none["layers"].empty());
  EXPECT_NE(run_ok({"audit", bare}, dir).find("no layers"), std::string::npos);
}

TEST(CliEdgeCases, OverflowedScores) {
  TempDir dir;
  const std::string path = dir.file("overflow.h5");
  test::write_edge_dump(path, EdgeDump::Overflow);
  const nlohmann::json j = run_every_command(path, dir);
  EXPECT_DOUBLE_EQ(j["layers"][0]["flat"]["coverage_mean"].get<double>(), (0.75 + 0.5 + 0.75) / 3.0);
  EXPECT_TRUE(j["layers"][0]["hisa"]["coverage_ratio"]["mean"].is_number());
  const std::vector<std::vector<int64_t>> expected{{4, 5, 6, 7, 8, 9}, {0, 1, 2, 3, 12, 13}, {4, 5, 6, 7, 8, 9}};
  EXPECT_EQ(test::read_selections(dir.file("flat.h5"), "/s0/layer_0"), expected);
  EXPECT_EQ(test::read_selections(dir.file("certified.h5"), "/s0/layer_0"), expected);
  for (const char* q : {"0", "1", "2"}) {
    run_ok(with({"explain", path, "--sample", "s0", "--layer", "0", "--query", q, "--json", dir.file("x.json")},
                kSmallBlocks),
           dir);
    EXPECT_TRUE(read_json(dir.file("x.json"))["metrics"]["coverage"].is_number()) << "query " << q;
  }
}

// Non-finite inputs are not scores that overflowed: every command refuses them, naming file, path and row.
TEST(CliEdgeCases, NonFiniteInputsAreErrorsInEveryCommand) {
  // The bad value's query row, so that explain (which reads one query) meets it too; keys are read whole.
  const std::map<std::string, std::string> row_of{{"NaNInQ", "2"}, {"NaNInW", "1"}, {"InfInK", "0"}};
  for (const test::BadCase& c : test::bad_cases()) {
    if (!row_of.count(c.name)) continue;
    TempDir dir;
    const std::string path = dir.file(c.name + ".h5");
    c.make(path);
    const std::vector<std::vector<std::string>> commands{
        {"audit", path, "--device", "cpu"},
        {"sweep", path, "--block-sizes", "4", "--blocks", "2"},
        {"select", path, "--method", "hisa", "-o", dir.file("sel.h5"), "--device", "cpu"},
        {"explain", path, "--sample", "s0", "--layer", "0", "--query", row_of.at(c.name)},
    };
    for (const auto& args : commands) {
      test::ProcessResult r = run_hisa(args, dir);
      ASSERT_TRUE(r.exited) << c.name << " " << args[0] << ": killed by signal " << r.status << "\n" << r.output;
      EXPECT_EQ(2, r.status) << c.name << " " << args[0] << ": " << r.output;
      const std::string prefix = "hisa: error: " + path + ": " + c.hdf5_path + ": ";
      EXPECT_NE(r.output.find(prefix), std::string::npos) << c.name << " " << args[0] << ": " << r.output;
      for (const auto& f : c.found) EXPECT_NE(r.output.find(f), std::string::npos) << c.name << " " << args[0] << ": " << r.output;
    }
  }
}

}  // namespace
}  // namespace hisa
