// Inputs as an adversarial user gives them (issue 18, items 8, 10 and 11): what reaches outside the file is refused
// by every command (exit 2, naming the object and its target, the file untouched) unless --allow-external; a FIFO
// is refused at once; a file given twice is counted once with a warning; control characters from a file never
// reach the terminal raw; CSV fields a spreadsheet would run as formulas are defused.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <sstream>

#include <nlohmann/json.hpp>

#include "io/bad_dumps.hpp"
#include "io/dump_helpers.hpp"
#include "io/external_dumps.hpp"
#include "cli/run_hisa.hpp"
#include "test_util.hpp"

namespace hisa {
namespace {

using test::TempDir;
using test::with;

// The binary, under `timeout` so that a hang fails the test (exit 124) instead of stopping the suite.
// Under `timeout 60`: an input that blocks (a FIFO) must fail the test, not hang it.
test::ProcessResult run_hisa_within_a_minute(const std::vector<std::string>& args, const TempDir& dir) {
  std::vector<std::string> argv{"timeout", "60", HISA_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  return test::run_process(argv, dir.path().string());
}

const std::vector<std::string> kSmall{"--block-size", "4", "--blocks", "2", "--device", "cpu"};

// Every command that reads a dump, on `path`, writing its outputs into dir.
std::vector<std::vector<std::string>> every_command(const std::string& path, const TempDir& dir) {
  return {{"inspect", "--check", path},
          with({"audit", path}, kSmall),
          with({"select", path, "-o", dir.file("sel.h5")}, kSmall),
          {"explain", path, "--sample", "s0", "--layer", "0", "--query", "2", "--block-size", "4", "--blocks", "2"},
          {"sweep", path, "--block-sizes", "4", "--blocks", "2", "--device", "cpu"},
          with({"report", path, "-o", dir.file("report.html"), "--pictures", "1"}, kSmall)};
}

using Files = test::LinkedDumps;

void expect_refused(const test::ProcessResult& r, const std::string& prefix, const std::vector<std::string>& args) {
  ASSERT_TRUE(r.exited) << r.output;
  EXPECT_EQ(2, r.status) << args[0] << ": " << r.output;
  EXPECT_NE(r.output.find(prefix), std::string::npos) << args[0] << ": '" << prefix << "' not in: " << r.output;
}

// ----- Item 8: outside the file ----------------------------------------------------------------------------------

TEST(CliInputs, ExternalLinkAsSampleIsRefusedByEveryCommandAndTheFileIsUnchanged) {
  Files f;
  test::make_external_link(f.main, "/s1", f.other, "/s0");
  const std::string before = test::read_text(f.main);
  for (const auto& args : every_command(f.main, f.dir)) {
    const test::ProcessResult r = run_hisa_within_a_minute(args, f.dir);
    expect_refused(r, "hisa: error: " + f.main + ": /s1: external link to " + f.other + ":/s0", args);
    EXPECT_NE(r.output.find("--allow-external"), std::string::npos) << r.output;
    EXPECT_EQ(before, test::read_text(f.main)) << args[0] << " changed its input";
  }
  EXPECT_FALSE(std::filesystem::exists(f.dir.file("sel.h5")));
}

TEST(CliInputs, AllowExternalFollowsTheLinkInEveryCommand) {
  Files f;
  test::make_external_link(f.main, "/s1", f.other, "/s0");
  for (auto args : every_command(f.main, f.dir)) {
    args.push_back("--allow-external");
    const test::ProcessResult r = run_hisa_within_a_minute(args, f.dir);
    ASSERT_TRUE(r.exited) << r.output;
    EXPECT_EQ(0, r.status) << args[0] << ": " << r.output;
  }
  // Both samples are audited: s1's queries count.
  const test::ProcessResult audit =
      run_hisa_within_a_minute(with({"audit", f.main, "--allow-external", "--json", f.dir.file("a.json")}, kSmall), f.dir);
  ASSERT_EQ(0, audit.status) << audit.output;
  const nlohmann::json j = nlohmann::json::parse(test::read_text(f.dir.file("a.json")));
  EXPECT_EQ(6, j["layers"][0]["queries"]);
}

TEST(CliInputs, InspectListsWhatLiesOutsideWithOrWithoutAllowExternal) {
  Files f;
  test::make_external_link(f.main, "/s1", f.other, "/s0");
  const test::ProcessResult listed = run_hisa_within_a_minute({"inspect", f.main}, f.dir);
  ASSERT_EQ(0, listed.status) << listed.output;
  EXPECT_NE(listed.output.find("outside the file (not followed or read; --allow-external follows them):\n  /s1: "
                               "external link to " + f.other + ":/s0"),
            std::string::npos)
      << listed.output;
  EXPECT_EQ(std::string::npos, listed.output.find("sample s1")) << listed.output;
  const test::ProcessResult followed = run_hisa_within_a_minute({"inspect", f.main, "--allow-external"}, f.dir);
  ASSERT_EQ(0, followed.status) << followed.output;
  EXPECT_NE(followed.output.find("sample s1"), std::string::npos) << followed.output;
  EXPECT_NE(followed.output.find("outside the file (followed: --allow-external)"), std::string::npos) << followed.output;
  const test::ProcessResult json = run_hisa_within_a_minute({"inspect", f.main, "--json"}, f.dir);
  ASSERT_EQ(0, json.status) << json.output;
  const nlohmann::json j = nlohmann::json::parse(json.output);
  ASSERT_EQ(1u, j["external"].size());
  EXPECT_EQ("/s1", j["external"][0]["path"]);
  EXPECT_EQ("external link to " + f.other + ":/s0", j["external"][0]["target"]);
  EXPECT_EQ(false, j["external_followed"]);
}

TEST(CliInputs, DanglingExternalLinkAsLayerIsAnErrorNotAWarning) {
  Files f;
  const std::string missing = f.dir.file("missing.h5");
  test::make_external_link(f.main, "/s0/layer_1", missing, "/s0/layer_0");
  const std::string link = "hisa: error: " + f.main + ": /s0/layer_1: external link to " + missing + ":/s0/layer_0";
  expect_refused(run_hisa_within_a_minute(with({"audit", f.main}, kSmall), f.dir), link, {"audit"});
  const test::ProcessResult allowed = run_hisa_within_a_minute(with({"audit", f.main, "--allow-external"}, kSmall), f.dir);
  expect_refused(allowed, link + " cannot be followed", {"audit --allow-external"});
  EXPECT_EQ(std::string::npos, allowed.output.find("ignored")) << allowed.output;
}

TEST(CliInputs, ExternalRawStorageIsShownRefusedAndFollowed) {
  Files f;
  const std::string raw = f.dir.file("keys.bin");
  test::move_to_external_raw_file(f.main, "/s0/layer_0/k", raw);
  const std::string before = test::read_text(f.main), raw_before = test::read_text(raw);
  const test::ProcessResult inspect = run_hisa_within_a_minute({"inspect", f.main}, f.dir);
  ASSERT_EQ(0, inspect.status) << inspect.output;
  EXPECT_NE(inspect.output.find("  external raw storage in " + raw + " / chunks"), std::string::npos)
      << inspect.output;  // the k storage column, which used to say "contiguous"
  const nlohmann::json j = nlohmann::json::parse(run_hisa_within_a_minute({"inspect", f.main, "--json"}, f.dir).output);
  EXPECT_EQ("external raw storage in " + raw, j["samples"][0]["layers"][0]["datasets"][0]["external"]);
  const std::string refused = "hisa: error: " + f.main + ": /s0/layer_0/k: external raw storage in " + raw;
  expect_refused(run_hisa_within_a_minute({"inspect", "--check", f.main}, f.dir), refused, {"inspect --check"});
  expect_refused(run_hisa_within_a_minute(with({"audit", f.main}, kSmall), f.dir), refused, {"audit"});
  const test::ProcessResult followed = run_hisa_within_a_minute(with({"audit", f.main, "--allow-external"}, kSmall), f.dir);
  EXPECT_EQ(0, followed.status) << followed.output;
  EXPECT_EQ(before, test::read_text(f.main));
  EXPECT_EQ(raw_before, test::read_text(raw));
}

TEST(CliInputs, VirtualDatasetIsShownRefusedAndItsMissingSourceNamed) {
  Files f;
  test::make_virtual(f.main, "/s0/layer_0/q", "other.h5", "/s0/layer_0/q");
  const test::ProcessResult inspect = run_hisa_within_a_minute({"inspect", f.main}, f.dir);
  ASSERT_EQ(0, inspect.status) << inspect.output;
  EXPECT_NE(inspect.output.find("/ virtual (sources: other.h5)"), std::string::npos) << inspect.output;
  const std::string refused = "hisa: error: " + f.main + ": /s0/layer_0/q: virtual (sources: other.h5)";
  expect_refused(run_hisa_within_a_minute({"inspect", "--check", f.main}, f.dir), refused, {"inspect --check"});
  expect_refused(run_hisa_within_a_minute(with({"sweep", f.main, "--block-sizes", "4", "--blocks", "2"}, {"--device", "cpu"}), f.dir),
                 refused, {"sweep"});
  EXPECT_EQ(0, run_hisa_within_a_minute({"inspect", "--check", f.main, "--allow-external"}, f.dir).status);
  // A missing source reads as zeros; `inspect --check` used to call them validated.
  std::filesystem::remove(f.other);
  expect_refused(run_hisa_within_a_minute({"inspect", "--check", f.main, "--allow-external"}, f.dir),
                 "hisa: error: " + f.main + ": /s0/layer_0/q: virtual dataset's source file other.h5 is missing",
                 {"inspect --check --allow-external"});
}

// ----- Item 10: FIFOs and files given twice -----------------------------------------------------------------------

TEST(CliInputs, AFifoIsRefusedAtOnce) {
  TempDir dir;
  const std::string fifo = dir.file("dump.h5");
  ASSERT_EQ(0, ::mkfifo(fifo.c_str(), 0600));
  for (const auto& args : std::vector<std::vector<std::string>>{{"inspect", fifo}, with({"audit", fifo}, kSmall),
                                                                 {"sweep", fifo, "--device", "cpu"}}) {
    const auto start = std::chrono::steady_clock::now();
    const test::ProcessResult r = run_hisa_within_a_minute(args, dir);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    expect_refused(r, "hisa: error: " + fifo + ": not a regular file", args);
    EXPECT_LT(seconds, 20.0) << args[0];
  }
}

TEST(CliInputs, AFifoAsTheReportsSweepJsonIsRefusedAtOnce) {
  TempDir dir;
  const std::string dump = dir.file("a.h5"), fifo = dir.file("sweep.json");
  test::write_base_file(dump, test::BaseKind::F32);
  ASSERT_EQ(0, ::mkfifo(fifo.c_str(), 0600));
  const std::vector<std::string> args{"report", dump, "--sweep", fifo, "-o", dir.file("r.html")};
  const test::ProcessResult r = run_hisa_within_a_minute(args, dir);
  expect_refused(r, "hisa: error: --sweep: " + fifo + " is not a regular file", args);
  EXPECT_FALSE(std::filesystem::exists(dir.file("r.html")));
}

TEST(CliInputs, AFileGivenTwiceIsCountedOnceWithAWarning) {
  TempDir dir;
  std::filesystem::create_directory(dir.path() / "dumps");
  const std::string path = dir.file("dumps/a.h5"), hard = dir.file("hard.h5"), soft = dir.file("soft.h5");
  test::write_base_file(path, test::BaseKind::F32);
  std::filesystem::create_hard_link(path, hard);
  std::filesystem::create_symlink(path, soft);
  for (const std::string& again : {path, hard, soft, dir.file("dumps")}) {
    const test::ProcessResult r =
        run_hisa_within_a_minute(with({"audit", path, again, "--json", dir.file("a.json")}, kSmall), dir);
    ASSERT_EQ(0, r.status) << r.output;
    const std::string second = again == dir.file("dumps") ? path : again;
    EXPECT_NE(r.output.find("hisa: warning: " + second + ": the same file as " + path + ", given twice; counted once"),
              std::string::npos)
        << r.output;
    const nlohmann::json j = nlohmann::json::parse(test::read_text(dir.file("a.json")));
    EXPECT_EQ(1u, j["files"].size());
    EXPECT_EQ(3, j["layers"][0]["queries"]);  // not 6
  }
}

// ----- Item 11: text from files on terminals and in spreadsheets ---------------------------------------------------

// A dump whose texts hold escape sequences and newlines: model, source, a task and the sample's name.
std::string write_hostile_texts(const TempDir& dir) {
  const std::string path = dir.file("hostile.h5");
  FileAttributes a = test::small_file_attributes();
  a.model = "m\x1b]0;owned\x07";
  a.source = "s\ncheck: every value read and validated";
  DumpWriter w(path, a);
  SampleAttributes s;
  s.seq_len = 40;
  s.task = "t\r\x1b[2K";
  w.add_sample("\x1b[31mred", s);
  w.add_layer("\x1b[31mred", 0, test::make_layer(40, 3, 2, 8, ElementType::F32, ElementType::F32, 1));
  w.close();
  return path;
}

int lines_starting_with(const std::string& text, const std::string& start) {
  std::istringstream in(text);
  int n = 0;
  for (std::string line; std::getline(in, line);) n += line.rfind(start, 0) == 0 ? 1 : 0;
  return n;
}

TEST(CliInputs, ControlCharactersFromTheFileAreEscapedInInspect) {
  TempDir dir;
  const std::string path = write_hostile_texts(dir);
  const test::ProcessResult r = run_hisa_within_a_minute({"inspect", path}, dir);
  ASSERT_EQ(0, r.status) << r.output;
  for (char c : {'\x1b', '\x07', '\r'}) EXPECT_EQ(std::string::npos, r.output.find(c)) << int(c);
  EXPECT_NE(r.output.find("model     m\\x1b]0;owned\\x07  (n_heads"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("source    s\\ncheck: every value read and validated"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("sample \\x1b[31mred  seq_len 40  task t\\r\\x1b[2K"), std::string::npos) << r.output;
  EXPECT_EQ(0, lines_starting_with(r.output, "check:")) << r.output;  // the newline in `source` forges none
  const test::ProcessResult checked = run_hisa_within_a_minute({"inspect", "--check", path}, dir);
  EXPECT_EQ(1, lines_starting_with(checked.output, "check:")) << checked.output;
  // JSON keeps the values as they are (nlohmann escapes them).
  const nlohmann::json j = nlohmann::json::parse(run_hisa_within_a_minute({"inspect", "--json", path}, dir).output);
  EXPECT_EQ("m\x1b]0;owned\x07", j["attributes"]["model"]);
}

TEST(CliInputs, ControlCharactersFromTheFileAreEscapedInTablesAndErrors) {
  TempDir dir;
  const std::string path = write_hostile_texts(dir);
  const test::ProcessResult audit = run_hisa_within_a_minute(with({"audit", path, "--worst", "1", "--verbose"}, kSmall), dir);
  ASSERT_EQ(0, audit.status) << audit.output;
  EXPECT_EQ(std::string::npos, audit.output.find('\x1b')) << audit.output;
  EXPECT_NE(audit.output.find("\\x1b[31mred"), std::string::npos) << audit.output;
  const test::ProcessResult sweep =
      run_hisa_within_a_minute({"sweep", path, "--block-sizes", "4", "--blocks", "2", "--device", "cpu"}, dir);
  ASSERT_EQ(0, sweep.status) << sweep.output;
  EXPECT_EQ(std::string::npos, sweep.output.find('\x1b')) << sweep.output;
  const test::ProcessResult explain =
      run_hisa_within_a_minute({"explain", path, "--sample", "\x1b[31mred", "--layer", "0", "--query", "2", "--block-size", "4"}, dir);
  ASSERT_EQ(0, explain.status) << explain.output;
  EXPECT_EQ(std::string::npos, explain.output.find('\x1b')) << explain.output;
  // An error that names the sample.
  {
    h5::Handle f = test::open_for_writing(path);
    ASSERT_GE(H5Adelete_by_name(f.get(), "/\x1b[31mred", "seq_len", H5P_DEFAULT), 0);
  }
  const test::ProcessResult error = run_hisa_within_a_minute({"inspect", path}, dir);
  expect_refused(error, "hisa: error: " + path + ": /\\x1b[31mred: missing attribute 'seq_len'", {"inspect"});
  EXPECT_EQ(std::string::npos, error.output.find('\x1b')) << error.output;
}

// Two samples whose names a spreadsheet would run as formulas.
std::string write_formula_names(const TempDir& dir) {
  const std::string path = dir.file("formulas.h5");
  DumpWriter w(path, test::small_file_attributes());
  SampleAttributes s;
  s.seq_len = 40;
  for (const char* name : {"+1", "=cmd|' -C calc'!A0,x"}) {
    w.add_sample(name, s);
    w.add_layer(name, 0, test::make_layer(40, 3, 2, 8, ElementType::F32, ElementType::F32, 1));
  }
  w.close();
  return path;
}

// Each line's first field must not start a formula; the names appear defused.
void expect_defused(const std::string& csv) {
  for (const char* start : {"+", "=", "@", "-", "\"=", "\"+"}) EXPECT_EQ(0, lines_starting_with(csv, start)) << csv;
  EXPECT_GE(lines_starting_with(csv, "'+1,0,"), 1) << csv;  // the numbers after it unchanged
  EXPECT_GE(lines_starting_with(csv, "\"'=cmd|' -C calc'!A0,x\",0,"), 1) << csv;
}

TEST(CliInputs, CsvFieldsThatWouldRunAsFormulasAreDefused) {
  TempDir dir;
  const std::string path = write_formula_names(dir);
  ASSERT_EQ(0, run_hisa_within_a_minute(with({"audit", path, "--per-query", dir.file("q.csv"), "--csv", dir.file("l.csv")}, kSmall), dir)
                   .status);
  expect_defused(test::read_text(dir.file("q.csv")));
  EXPECT_EQ(std::string::npos, test::read_text(dir.file("l.csv")).find("'"));  // per-layer rows hold only numbers
  ASSERT_EQ(0, run_hisa_within_a_minute({"sweep", path, "--block-sizes", "4", "--blocks", "2", "--device", "cpu", "--csv",
                         dir.file("s.csv")},
                        dir)
                   .status);
  expect_defused(test::read_text(dir.file("s.csv")));
}

}  // namespace
}  // namespace hisa
