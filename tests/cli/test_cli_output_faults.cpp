// Outputs under faults, as a user meets them through the CLI (issue: nothing lost): an output naming the input is
// refused before any work; a run that fails, is killed, or meets a full disk leaves the input and any previous
// output byte for byte as they were, and no temporary file behind.
#include <gtest/gtest.h>
#include <hdf5.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "synth_dump.hpp"
#include "cli/run_hisa.hpp"
#include "test_util.hpp"

namespace hisa {
namespace {

namespace fs = std::filesystem;
using test::read_text;
using test::TempDir;
using test::run_hisa;

// A shell line, for redirections and limits (`ulimit -f`).
test::ProcessResult run_shell(const std::string& line, const TempDir& dir) {
  return test::run_process({"bash", "-c", line}, dir.path().string());
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

std::set<std::string> names_in(const fs::path& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
  return names;
}

// A directory holding a small dump (2 layers, 32 queries) and nothing else but what a test adds.
struct Workspace {
  TempDir dir;
  fs::path work = dir.path() / "work";
  std::string dump;
  std::string dump_bytes;
  explicit Workspace(const test::SynthShape& shape = {}) {
    fs::create_directory(work);
    dump = test::write_synth((work / "base.h5").string(), shape);
    dump_bytes = read_text(dump);
  }
  std::string file(const std::string& name) const { return (work / name).string(); }
  // The dump is byte for byte what it was.
  void expect_input_unchanged() const { EXPECT_TRUE(read_text(dump) == dump_bytes) << dump << " changed"; }
};

const std::string kHisa = HISA_BINARY;

TEST(CliOutputFaults, AnOutputNamingTheInputIsRefusedBeforeAnyWork) {
  Workspace ws;
  fs::create_hard_link(ws.dump, ws.file("hard.h5"));
  const std::vector<std::vector<std::string>> commands = {
      {"audit", ws.dump, "--max-queries", "2", "--json", ws.dump},
      {"sweep", ws.dump, "--max-queries", "2", "--csv", ws.dump},
      {"explain", ws.dump, "--sample", "sample_0", "--layer", "0", "--query", "0", "--json", ws.dump},
      {"audit", ws.dump, "--max-queries", "2", "--per-query", ws.dump},
      {"report", ws.dump, "-o", ws.dump},
      {"select", ws.dump, "-o", ws.dump},
      {"audit", ws.dump, "--max-queries", "2", "--csv", ws.file("hard.h5")},
      {"select", ws.file("hard.h5"), "-o", ws.dump},
  };
  for (const auto& args : commands) {
    test::ProcessResult r = run_hisa(args, ws.dir);
    ASSERT_TRUE(r.exited) << r.output;
    EXPECT_EQ(2, r.status) << args[0] << ": " << r.output;
    EXPECT_NE(std::string::npos, r.output.find("is an input of this run")) << r.output;
    EXPECT_EQ(std::string::npos, r.output.find("layer 0")) << "the work ran: " << r.output;
    ws.expect_input_unchanged();
  }
  EXPECT_EQ(std::set<std::string>({"base.h5", "hard.h5"}), names_in(ws.work));
}

TEST(CliOutputFaults, OutputsThatAreNoRegularFileAreRefusedBeforeAnyWork) {
  Workspace ws;
  fs::create_directory(ws.file("somedir"));
  write_text(ws.file("precious"), "keep");
  fs::create_symlink(ws.file("precious"), ws.file("link.json"));
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"audit", ws.dump, "--json", ws.file("somedir")}, "is a directory"},
      {{"audit", ws.dump, "--json", "/dev/full"}, "is not a regular file"},
      {{"explain", ws.dump, "--sample", "sample_0", "--layer", "0", "--query", "0", "--json", "/dev/full"},
       "is not a regular file"},
      {{"audit", ws.dump, "--per-query", "/dev/stdout"}, "is a symbolic link"},
      {{"sweep", ws.dump, "--json", ws.file("link.json")}, "is a symbolic link"},
      {{"report", ws.dump, "-o", ws.file("missing/report.html")}, "does not exist"},
      {{"select", ws.dump, "-o", "-"}, "cannot go to standard output"},
      {{"audit", ws.dump, "--json", ws.file("a"), "--csv", ws.file("a")}, "name the same file"},
  };
  for (const auto& [args, message] : cases) {
    test::ProcessResult r = run_hisa(args, ws.dir);
    ASSERT_TRUE(r.exited) << r.output;
    EXPECT_EQ(2, r.status) << r.output;
    EXPECT_NE(std::string::npos, r.output.find(message)) << "'" << message << "' not in: " << r.output;
    EXPECT_EQ(std::string::npos, r.output.find("layer 0")) << "the work ran: " << r.output;
  }
  EXPECT_EQ("keep", read_text(ws.file("precious")));
  EXPECT_TRUE(fs::is_symlink(ws.file("link.json")));
  ws.expect_input_unchanged();
  EXPECT_EQ(std::set<std::string>({"base.h5", "somedir", "precious", "link.json"}), names_in(ws.work));
}

TEST(CliOutputFaults, FilesNamedLikeTheOldFixedTemporariesAreNeverTouched) {
  Workspace ws;
  write_text(ws.file("notes.csv.tmp"), "the user's own notes");
  write_text(ws.file("precious"), "keep");
  fs::create_symlink(ws.file("precious"), ws.file("out.json.tmp"));
  test::ProcessResult r =
      run_hisa({"audit", ws.dump, "--max-queries", "2", "--json", ws.file("out.json"), "--csv", ws.file("notes.csv")}, ws.dir);
  ASSERT_TRUE(r.exited && r.status == 0) << r.output;
  EXPECT_EQ("the user's own notes", read_text(ws.file("notes.csv.tmp")));
  EXPECT_EQ("keep", read_text(ws.file("precious")));
  EXPECT_TRUE(fs::is_symlink(ws.file("out.json.tmp")));
  EXPECT_TRUE(nlohmann::json::accept(read_text(ws.file("out.json"))));
  EXPECT_EQ(std::set<std::string>({"base.h5", "notes.csv.tmp", "precious", "out.json.tmp", "out.json", "notes.csv"}),
            names_in(ws.work));
}

// Sets one value of /sample_0/layer_N/w to NaN, so a run fails when it reaches that layer.
void poison_w(const std::string& path, int layer) {
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  const std::string name = "/sample_0/layer_" + std::to_string(layer) + "/w";
  const hid_t d = H5Dopen2(f, name.c_str(), H5P_DEFAULT);
  ASSERT_GE(d, 0);
  const hid_t space = H5Dget_space(d);
  std::vector<float> w(size_t(H5Sget_simple_extent_npoints(space)));
  ASSERT_GE(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, w.data()), 0);
  w[w.size() / 2] = std::nanf("");
  ASSERT_GE(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, w.data()), 0);
  H5Sclose(space);
  H5Dclose(d);
  H5Fclose(f);
}

TEST(CliOutputFaults, ARunThatFailsPartwayKeepsThePreviousOutputs) {
  Workspace ws;
  poison_w(ws.dump, 1);
  ws.dump_bytes = read_text(ws.dump);
  for (const auto& out : {"o.h5", "o.json", "q.csv", "r.html"}) write_text(ws.file(out), std::string("previous ") + out);
  const std::vector<std::vector<std::string>> commands = {
      {"select", ws.dump, "-o", ws.file("o.h5")},
      {"audit", ws.dump, "--json", ws.file("o.json"), "--per-query", ws.file("q.csv")},
      {"report", ws.dump, "-o", ws.file("r.html")},
  };
  for (const auto& args : commands) {
    test::ProcessResult r = run_hisa(args, ws.dir);
    ASSERT_TRUE(r.exited) << r.output;
    EXPECT_EQ(2, r.status) << r.output;
    EXPECT_NE(std::string::npos, r.output.find("/sample_0/layer_1/w")) << r.output;
  }
  for (const auto& out : {"o.h5", "o.json", "q.csv", "r.html"}) EXPECT_EQ(std::string("previous ") + out, read_text(ws.file(out)));
  ws.expect_input_unchanged();
  EXPECT_EQ(std::set<std::string>({"base.h5", "o.h5", "o.json", "q.csv", "r.html"}), names_in(ws.work));
}

// Past a 4 KiB file-size limit, as `ulimit -f 4` sets it: exit 2 naming the output, the previous output kept, no
// temporary left, no crash (HDF5 used to crash in its clean-up at exit after a failed close). HDF5 1.10 loses its
// buffers when a close fails, which LeakSanitizer would report as a leak of the library's: these runs, and only
// these, go without leak detection (the sanitizer build, scripts/sanitize.sh; other builds ignore the variable).
TEST(CliOutputFaults, AFullDiskIsAnErrorThatKeepsThePreviousOutput) {
  Workspace ws;
  const std::string sample = " --sample sample_0 --layer 0 --query 0";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"o.h5", "select " + ws.dump + " --max-queries 4 -o "},
      {"o.json", "audit " + ws.dump + " --max-queries 4 --json "},
      {"q.csv", "audit " + ws.dump + " --per-query "},
      {"e.json", "explain " + ws.dump + sample + " --json "},
      {"r.html", "report " + ws.dump + " -o "},
      {"d.h5", "synth --seq-len 4096 --layers 2 -o "},
  };
  for (const auto& [out, command] : cases) {
    write_text(ws.file(out), "previous");
    for (const std::string trap : {"", "trap '' XFSZ; "}) {
      const std::string no_leak_check = "export ASAN_OPTIONS=\"${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0\"; ";
      test::ProcessResult r =
          run_shell(no_leak_check + trap + "ulimit -f 4; exec " + kHisa + " " + command + ws.file(out), ws.dir);
      ASSERT_TRUE(r.exited) << command << ": killed by signal " << r.status << "\n" << r.output;
      EXPECT_EQ(2, r.status) << command << ": " << r.output;
      EXPECT_NE(std::string::npos, r.output.find("writing " + ws.file(out) + " failed")) << r.output;
      EXPECT_EQ("previous", read_text(ws.file(out))) << command;
    }
  }
  ws.expect_input_unchanged();
  EXPECT_EQ(std::set<std::string>({"base.h5", "o.h5", "o.json", "q.csv", "e.json", "r.html", "d.h5"}), names_in(ws.work));
}

// Starts `hisa args...` without waiting; its output goes to `log`.
pid_t spawn_hisa(const std::vector<std::string>& args, const std::string& log) {
  std::vector<std::string> argv{kHisa};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> c;
  for (auto& a : argv) c.push_back(a.data());
  c.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    FILE* f = std::freopen(log.c_str(), "w", stdout);
    if (f) ::dup2(::fileno(stdout), 2);
    ::execv(c[0], c.data());
    ::_exit(127);
  }
  return pid;
}

// Whether a hidden temporary of `select` (".NAME.hisa-*.tmp") exists in dir.
bool temporary_exists(const fs::path& dir) {
  for (const auto& name : names_in(dir)) {
    if (name.rfind(".o.h5.hisa-", 0) == 0) return true;
  }
  return false;
}

TEST(CliOutputFaults, SelectKilledMidRunKeepsThePreviousOutput) {
  test::SynthShape shape;
  shape.seq_len = 8192;
  shape.layers = 12;
  shape.heads = 16;
  shape.queries = "sample:512";
  Workspace ws(shape);
  for (int sig : {SIGTERM, SIGINT, SIGKILL}) {
    SCOPED_TRACE(sig);
    write_text(ws.file("o.h5"), "previous");
    const pid_t pid = spawn_hisa({"select", ws.dump, "-o", ws.file("o.h5"), "--threads", "1"}, ws.dir.file("log"));
    ASSERT_GT(pid, 0);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (!temporary_exists(ws.work) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    ASSERT_TRUE(temporary_exists(ws.work)) << read_text(ws.dir.file("log"));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // mid-run: layers written to the temporary
    ::kill(pid, sig);
    int status = 0;
    ASSERT_EQ(pid, ::waitpid(pid, &status, 0));
    ASSERT_TRUE(WIFSIGNALED(status)) << "the run ended before the signal; make the dump larger\n"
                                     << read_text(ws.dir.file("log"));
    EXPECT_EQ(sig, WTERMSIG(status));
    EXPECT_EQ("previous", read_text(ws.file("o.h5")));
    // A stop signal removes the temporary; only SIGKILL, which no process can handle, leaves it.
    if (sig != SIGKILL) {
      EXPECT_FALSE(temporary_exists(ws.work)) << "a temporary was left";
    }
    ws.expect_input_unchanged();
  }
}

TEST(CliOutputFaults, TextOutputsCanGoToStandardOutputAndTheTableThenToStandardError) {
  Workspace ws;
  test::ProcessResult r = run_shell(kHisa + " audit " + ws.dump + " --max-queries 2 --json - >" + ws.file("out") +
                                        " 2>" + ws.file("err"),
                                    ws.dir);
  ASSERT_TRUE(r.exited && r.status == 0) << r.output << read_text(ws.file("err"));
  const nlohmann::json j = nlohmann::json::parse(read_text(ws.file("out")));
  EXPECT_EQ(2u, j["layers"].size());
  EXPECT_NE(std::string::npos, read_text(ws.file("err")).find("HISA IoU"));
}

TEST(CliOutputFaults, AFailedWriteToStandardOutputIsAnError) {
  Workspace ws;
  test::ProcessResult r = run_shell("exec " + kHisa + " audit " + ws.dump + " --max-queries 2 >/dev/full", ws.dir);
  ASSERT_TRUE(r.exited) << r.output;
  EXPECT_EQ(2, r.status) << r.output;
  EXPECT_NE(std::string::npos, r.output.find("writing to standard output failed")) << r.output;
}

}  // namespace
}  // namespace hisa
