// `hisa inspect` as a user runs it: every bad input ends with exit status 2 and a message naming the file and
// the HDF5 path (never a crash); a good file gives exit status 0, and --json output parses.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "io/bad_dumps.hpp"
#include "io/dump_helpers.hpp"
#include "cli/run_hisa.hpp"
#include "test_util.hpp"

namespace hisa {
namespace {

using test::TempDir;

test::ProcessResult run_hisa_without_plugins(const std::vector<std::string>& args, const TempDir& dir) {
  // Filter plugins installed on this machine must not rescue a file that names an absent filter.
  std::filesystem::create_directories(dir.path() / "no-plugins");
  return test::run_hisa(args, dir, {"HDF5_PLUGIN_PATH=" + (dir.path() / "no-plugins").string()});
}

class CliBadInput : public ::testing::TestWithParam<test::BadCase> {};

TEST_P(CliBadInput, InspectCheckExitsWithStatus2AndNamesThePath) {
  const test::BadCase& c = GetParam();
  TempDir dir;
  const std::string path = dir.file(c.name + ".h5");
  c.make(path);
  for (bool json : {false, true}) {
    std::vector<std::string> args{"inspect", "--check", path};
    if (json) args.push_back("--json");
    test::ProcessResult r = run_hisa_without_plugins(args, dir);
    ASSERT_TRUE(r.exited) << "killed by signal " << r.status << "\n" << r.output;
    EXPECT_EQ(2, r.status) << r.output;
    const std::string prefix = "hisa: error: " + path + ": " + (c.hdf5_path.empty() ? "" : c.hdf5_path + ": ");
    EXPECT_NE(r.output.find(prefix), std::string::npos) << "'" << prefix << "' not in: " << r.output;
    for (const auto& f : c.found) EXPECT_NE(r.output.find(f), std::string::npos) << "'" << f << "' not in: " << r.output;
  }
}

INSTANTIATE_TEST_SUITE_P(Cli, CliBadInput, ::testing::ValuesIn(test::bad_cases()),
                         [](const ::testing::TestParamInfo<test::BadCase>& info) { return info.param.name; });

TEST(Cli, GoodFileExitsWithStatus0) {
  TempDir dir;
  const std::string path = dir.file("good.h5");
  test::write_base_file(path, test::BaseKind::Fp8);
  for (const auto& args : std::vector<std::vector<std::string>>{{"inspect", path}, {"inspect", "--check", path}}) {
    test::ProcessResult r = run_hisa_without_plugins(args, dir);
    ASSERT_TRUE(r.exited) << r.output;
    EXPECT_EQ(0, r.status) << r.output;
    EXPECT_NE(r.output.find("sample s0"), std::string::npos) << r.output;
    EXPECT_EQ(std::string::npos, r.output.find("error")) << r.output;
  }
  test::ProcessResult checked = run_hisa_without_plugins({"inspect", "--check", path}, dir);
  EXPECT_NE(checked.output.find("check: every value read and validated"), std::string::npos) << checked.output;
}

TEST(Cli, JsonOutputParsesAndDescribesTheFile) {
  TempDir dir;
  const std::string path = dir.file("good.h5");
  test::write_base_file(path, test::BaseKind::Bf16Custom);
  test::ProcessResult r = run_hisa_without_plugins({"inspect", "--check", "--json", path}, dir);
  ASSERT_TRUE(r.exited);
  ASSERT_EQ(0, r.status) << r.output;
  nlohmann::json j = nlohmann::json::parse(r.output);  // throws (failing the test) when not JSON
  EXPECT_EQ(path, j["file"]);
  EXPECT_EQ("hisa-dump", j["attributes"]["format"]);
  EXPECT_EQ(1, j["attributes"]["format_version"]);
  EXPECT_EQ(2, j["attributes"]["n_heads"]);
  EXPECT_EQ(true, j["checked"]);
  ASSERT_EQ(1u, j["samples"].size());
  const auto& s = j["samples"][0];
  EXPECT_EQ("s0", s["name"]);
  EXPECT_EQ(40, s["attributes"]["seq_len"]);
  ASSERT_EQ(1u, s["layers"].size());
  const auto& l = s["layers"][0];
  EXPECT_EQ(0, l["layer"]);
  EXPECT_EQ(40, l["keys"]);
  EXPECT_EQ(3, l["queries"]);
  EXPECT_EQ("bf16", l["q_type"]);
  EXPECT_EQ("bf16", l["k_type"]);
  EXPECT_EQ(4, l["ref_width"]);
  EXPECT_EQ("bfloat16", l["datasets"][0]["stored_type"]);
  EXPECT_TRUE(j["warnings"].is_array());
}

TEST(Cli, UsageErrorsExitWithStatus2) {
  TempDir dir;
  for (const auto& args : std::vector<std::vector<std::string>>{{}, {"inspect"}, {"inspect", "--bogus", "x.h5"}}) {
    test::ProcessResult r = run_hisa_without_plugins(args, dir);
    ASSERT_TRUE(r.exited) << r.output;
    EXPECT_EQ(2, r.status) << r.output;
  }
}

// --fp8-mma asks for the GPU's fp8 tensor cores: with --device cpu it is a usage error, on every command that
// takes it (audit, select, sweep, report); with auto on a machine without a GPU the run goes on, exact, and the fallback note says so.
TEST(Cli, Fp8MmaNeedsTheCudaEngine) {
  TempDir dir;
  const std::string path = dir.file("fp8.h5");
  test::write_base_file(path, test::BaseKind::Fp8);
  for (const char* command : {"audit", "select", "sweep", "report"}) {
    std::vector<std::string> args{command, path, "--device", "cpu", "--fp8-mma"};
    if (std::string(command) == "select") args.insert(args.end(), {"--output", dir.file("sel.h5")});
    if (std::string(command) == "report") args.insert(args.end(), {"--output", dir.file("r.html")});
    test::ProcessResult r = run_hisa_without_plugins(args, dir);
    ASSERT_TRUE(r.exited) << r.output;
    EXPECT_EQ(2, r.status) << command << ": " << r.output;
    EXPECT_NE(r.output.find("--fp8-mma scores on a GPU's fp8 tensor cores: it needs --device cuda or auto"),
              std::string::npos)
        << command << ": " << r.output;
  }
  test::ProcessResult r = run_hisa_without_plugins({"audit", path, "--device", "auto", "--fp8-mma"}, dir);
  ASSERT_TRUE(r.exited) << r.output;
  EXPECT_EQ(0, r.status) << r.output;
  if (r.output.find("using the CPU engine") != std::string::npos) {  // always so without a GPU (CI)
    EXPECT_NE(r.output.find("using the CPU engine (no fp8 tensor cores there: the scores are exact)"),
              std::string::npos)
        << r.output;
  }
}

// The library names options by its own names; the CLI's message names the flag the user typed, exit status 2.
TEST(Cli, LibraryErrorsNameTheFlags) {
  TempDir dir;
  const std::string path = dir.file("base.h5");
  test::write_base_file(path, test::BaseKind::F32);
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"synth", "-o", dir.file("s.h5"), "--head-dim", "32"}, "--head-dim must be at least 64"},
      {{"synth", "-o", dir.file("s.h5"), "--scale-fmt", "ue8m0"}, "--scale-fmt ue8m0 needs --dtype fp8"},
      {{"audit", path, "--device", "cpu", "--topk", "0"}, "--topk must be at least 1 (got 0)"},
      {{"audit", path, "--device", "cpu", "--gpus", "0"}, "--gpus needs --device cuda or auto"},
      {{"audit", path, "--device", "cpu", "--resume"}, "--resume needs --checkpoint DIR"},
      {{"audit", path, "--device", "cpu", "--layers", "7-3"}, "--layers: range \"7-3\" runs backwards"},
      {{"sweep", path, "--device", "cpu", "--pool-precision", ","}, "--pool-precision: empty list"},
      {{"sweep", path, "--device", "cpu", "--block-sizes", "0"}, "--block-sizes: cannot read \"0\""},
      {{"explain", path, "--sample", "s0", "--layer", "0", "--query", "99"}, "--query 99 is outside"},
      {{"report", path, "--device", "cpu", "--sweep", dir.file("none.json"), "-o", dir.file("r.html")},
       "--sweep: cannot read"},
  };
  for (const auto& [args, message] : cases) {
    test::ProcessResult r = run_hisa_without_plugins(args, dir);
    ASSERT_TRUE(r.exited) << r.output;
    EXPECT_EQ(2, r.status) << args.front() << ": " << r.output;
    EXPECT_NE(r.output.find("hisa: error: " + message), std::string::npos) << args.front() << ": " << r.output;
  }
}

// --verbose says on stderr which engine takes each layer (and, on a GPU, the kernel that scores its keys).
TEST(Cli, VerboseSaysWhatTheRunDecided) {
  TempDir dir;
  const std::string path = dir.file("base.h5");
  test::write_base_file(path, test::BaseKind::F32);
  for (const std::string command : {"audit", "sweep", "select"}) {
    for (bool verbose : {true, false}) {
      std::vector<std::string> args{command, path, "--device", "cpu"};
      if (command == "select") args.insert(args.end(), {"-o", dir.file("sel.h5")});
      if (verbose) args.push_back("--verbose");
      test::ProcessResult r = run_hisa_without_plugins(args, dir);
      ASSERT_TRUE(r.exited) << r.output;
      EXPECT_EQ(0, r.status) << r.output;
      EXPECT_EQ(r.output.find("hisa: cpu: layer 0 of s0\n") != std::string::npos, verbose) << command << ": " << r.output;
    }
  }
}

TEST(Cli, VersionExitsWithStatus0) {
  TempDir dir;
  test::ProcessResult r = run_hisa_without_plugins({"--version"}, dir);
  ASSERT_TRUE(r.exited);
  EXPECT_EQ(0, r.status);
  EXPECT_NE(r.output.find("format v1"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace hisa
