// Outputs written whole or not at all (core/atomic_file.hpp): the previous file survives every failure, no temporary
// is left behind, nothing outside the target is touched, and outputs that would land on an input are refused.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <set>
#include <stdexcept>
#include <thread>

#include "core/atomic_file.hpp"
#include "core/error.hpp"
#include "test_util.hpp"

namespace hisa {
namespace {

namespace fs = std::filesystem;
using test::read_text;
using test::TempDir;

std::set<std::string> names_in(const TempDir& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir.path())) names.insert(e.path().filename().string());
  return names;
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// The message of the UsageError that f throws (fails the test when it throws none).
template <typename F>
std::string usage_error_of(F f) {
  try {
    f();
  } catch (const UsageError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no UsageError";
  return "";
}

TEST(AtomicFile, WritesTheWholeFileAndLeavesNoTemporary) {
  TempDir dir;
  const std::string path = dir.file("out.json");
  write_file_atomically(path, [](std::ostream& out) { out << "{\"a\": 1}\n"; });
  EXPECT_EQ("{\"a\": 1}\n", read_text(path));
  EXPECT_EQ(std::set<std::string>{"out.json"}, names_in(dir));
}

TEST(AtomicFile, LargeOutputsArriveIntact) {
  TempDir dir;
  const std::string path = dir.file("big.csv");
  std::string expected;
  for (int i = 0; i < 200000; ++i) expected += std::to_string(i) + ",";
  write_file_atomically(path, [&](std::ostream& out) { out << expected; });
  EXPECT_EQ(expected, read_text(path));
}

TEST(AtomicFile, AFailedWriterLeavesThePreviousFileAndNoTemporary) {
  TempDir dir;
  const std::string path = dir.file("out.csv");
  write_text(path, "previous\n");
  EXPECT_THROW(write_file_atomically(path, [](std::ostream& out) {
                 out << std::string(100000, 'x');
                 throw std::runtime_error("the run failed");
               }),
               std::runtime_error);
  EXPECT_EQ("previous\n", read_text(path));
  EXPECT_EQ(std::set<std::string>{"out.csv"}, names_in(dir));
}

TEST(AtomicFile, AnUncommittedOutputFileIsDiscardedBothKinds) {
  for (auto kind : {OutputFile::Temporary::Unnamed, OutputFile::Temporary::Named}) {
    TempDir dir;
    const std::string path = dir.file("out.h5");
    write_text(path, "previous");
    {
      OutputFile out(path, kind);
      out.stream() << "half of it";
      out.stream().flush();
    }
    EXPECT_EQ("previous", read_text(path));
    EXPECT_EQ(std::set<std::string>{"out.h5"}, names_in(dir));
  }
}

TEST(AtomicFile, ANamedTemporaryIsAHiddenUniqueFileBesideTheTarget) {
  TempDir dir;
  const std::string path = dir.file("sel.h5");
  OutputFile a(path, OutputFile::Temporary::Named), b(path, OutputFile::Temporary::Named);
  EXPECT_NE(a.temporary_path(), b.temporary_path());
  for (const OutputFile* o : {&a, &b}) {
    const fs::path t(o->temporary_path());
    EXPECT_EQ(dir.path(), t.parent_path());
    EXPECT_EQ('.', t.filename().string()[0]) << t;
    EXPECT_TRUE(fs::is_regular_file(t)) << t;
  }
  // Another library writes the temporary by its name, then it is committed.
  write_text(a.temporary_path(), "written by HDF5");
  a.commit();
  EXPECT_EQ("written by HDF5", read_text(path));
}

TEST(AtomicFile, NeverTouchesAFileOrLinkNamedLikeAnOldFixedTemporary) {
  TempDir dir;
  const std::string path = dir.file("notes.csv");
  write_text(dir.file("notes.csv.tmp"), "the user's own file");
  write_text(dir.file("precious"), "keep me");
  fs::create_symlink(dir.file("precious"), dir.file("out.json.tmp"));
  write_file_atomically(path, [](std::ostream& out) { out << "new\n"; });
  write_file_atomically(dir.file("out.json"), [](std::ostream& out) { out << "{}\n"; });
  EXPECT_EQ("the user's own file", read_text(dir.file("notes.csv.tmp")));
  EXPECT_EQ("keep me", read_text(dir.file("precious")));
  EXPECT_TRUE(fs::is_symlink(dir.file("out.json.tmp")));
  EXPECT_EQ("new\n", read_text(path));
}

TEST(AtomicFile, ConcurrentWritersOfOneTargetLeaveOneWholeResult) {
  TempDir dir;
  const std::string path = dir.file("unit");
  std::vector<std::thread> writers;
  for (int i = 0; i < 8; ++i) {
    writers.emplace_back([&, i] {
      for (int round = 0; round < 20; ++round) {
        write_file_atomically(path, [&](std::ostream& out) { out << std::string(10000, char('a' + i)); });
      }
    });
  }
  for (auto& w : writers) w.join();
  const std::string text = read_text(path);
  ASSERT_EQ(10000u, text.size());
  EXPECT_EQ(std::string(10000, text[0]), text);
  EXPECT_EQ(std::set<std::string>{"unit"}, names_in(dir));
}

// Past a file-size limit (SIGXFSZ ignored, as the CLI does) the write fails: the error names the file, the
// previous file stays and no temporary is left. In a child process, since the limit holds for the whole process.
TEST(AtomicFile, AFileSizeLimitIsAnErrorThatKeepsThePreviousFile) {
  for (auto kind : {OutputFile::Temporary::Unnamed, OutputFile::Temporary::Named}) {
    TempDir dir;
    const std::string path = dir.file("out.csv");
    write_text(path, "previous\n");
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      std::signal(SIGXFSZ, SIG_IGN);
      struct rlimit limit {4096, 4096};
      ::setrlimit(RLIMIT_FSIZE, &limit);
      try {
        OutputFile out(path, kind);
        out.stream() << std::string(1 << 20, 'x');
        out.commit();
      } catch (const UsageError& e) {
        const std::string what = e.what();
        ::_exit(what.find("writing " + path + " failed") != std::string::npos ? 0 : 3);
      }
      ::_exit(4);
    }
    int status = 0;
    ASSERT_EQ(pid, ::waitpid(pid, &status, 0));
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(0, WEXITSTATUS(status)) << "3: the message does not name the file; 4: no error";
    EXPECT_EQ("previous\n", read_text(path));
    EXPECT_EQ(std::set<std::string>{"out.csv"}, names_in(dir));
  }
}

TEST(AtomicFile, StandardOutputIsWrittenInPlace) {
  OutputFile out("-");
  EXPECT_EQ(&std::cout, &out.stream());
  EXPECT_THROW(out.temporary_path(), std::logic_error);
  EXPECT_NO_THROW(out.commit());
}

TEST(CheckOutputs, RefusesAnOutputThatIsAnInputByAnyName) {
  TempDir dir;
  const std::string input = dir.file("dump.h5");
  write_text(input, "the only copy");
  fs::create_hard_link(input, dir.file("hard.h5"));
  fs::create_symlink(input, dir.file("soft.h5"));
  EXPECT_NE(std::string::npos, usage_error_of([&] { check_outputs({{input, "--json"}}, {input}); })
                                   .find("--json: " + input + " is an input of this run"));
  EXPECT_NE(std::string::npos, usage_error_of([&] { check_outputs({{dir.file("hard.h5"), "-o"}}, {input}); })
                                   .find("(the same file as " + input + ")"));
  // The input named through a link, the output by its own name.
  EXPECT_NE(std::string::npos, usage_error_of([&] { check_outputs({{input, "--csv"}}, {dir.file("soft.h5")}); })
                                   .find("is an input of this run"));
  // A file inside an input directory is an input too.
  EXPECT_NE(std::string::npos, usage_error_of([&] { check_outputs({{input, "--csv"}}, {dir.path().string()}); })
                                   .find("is an input of this run"));
  EXPECT_EQ("the only copy", read_text(input));
  EXPECT_NO_THROW(check_outputs({{dir.file("new.json"), "--json"}}, {input}));
}

TEST(CheckOutputs, RefusesWhatCannotBeReplacedByAFile) {
  TempDir dir;
  fs::create_directory(dir.file("somedir"));
  write_text(dir.file("target"), "x");
  fs::create_symlink(dir.file("target"), dir.file("link.json"));
  ASSERT_EQ(0, ::mkfifo(dir.file("fifo").c_str(), 0600));
  EXPECT_NE(std::string::npos, usage_error_of([&] { check_outputs({{dir.file("somedir"), "--json"}}, {}); })
                                   .find("is a directory"));
  EXPECT_NE(std::string::npos, usage_error_of([&] { check_outputs({{dir.file("link.json"), "--json"}}, {}); })
                                   .find("is a symbolic link"));
  EXPECT_NE(std::string::npos, usage_error_of([&] { check_outputs({{dir.file("fifo"), "--json"}}, {}); })
                                   .find("is not a regular file"));
  EXPECT_NE(std::string::npos, usage_error_of([&] { check_outputs({{"/dev/full", "--csv", true}}, {}); })
                                   .find("(or - for standard output)"));
  EXPECT_NE(std::string::npos, usage_error_of([&] { check_outputs({{dir.file("no/such/x.json"), "--json"}}, {}); })
                                   .find("does not exist"));
  EXPECT_EQ("x", read_text(dir.file("target")));
  EXPECT_EQ(std::set<std::string>({"somedir", "target", "link.json", "fifo"}), names_in(dir));
}

TEST(CheckOutputs, StandardOutputOnlyWhereAllowedAndOnlyOnce) {
  EXPECT_NO_THROW(check_outputs({{"-", "--json", true}, {"", "--csv", true}}, {}));
  EXPECT_NE(std::string::npos, usage_error_of([] { check_outputs({{"-", "-o", false}}, {}); })
                                   .find("-o: this output cannot go to standard output"));
  EXPECT_NE(std::string::npos, usage_error_of([] { check_outputs({{"-", "--json", true}, {"-", "--csv", true}}, {}); })
                                   .find("only one output can go to standard output"));
}

TEST(CheckOutputs, RefusesTwoOutputsNamingOneFile) {
  TempDir dir;
  EXPECT_NE(std::string::npos,
            usage_error_of([&] { check_outputs({{dir.file("a"), "--json"}, {dir.file("a"), "--csv"}}, {}); })
                .find("--json and --csv name the same file"));
  EXPECT_NE(std::string::npos, usage_error_of([&] {
              check_outputs({{dir.file("a"), "--json"}, {dir.path().string() + "/./a", "--csv"}}, {});
            }).find("name the same file"));
}

TEST(CheckOutputs, RefusesADirectoryThatTakesNoNewFile) {
  if (::geteuid() == 0) GTEST_SKIP() << "root writes into any directory";
  TempDir dir;
  fs::create_directory(dir.file("locked"));
  fs::permissions(dir.file("locked"), fs::perms::owner_read | fs::perms::owner_exec);
  EXPECT_NE(std::string::npos, usage_error_of([&] { check_outputs({{dir.file("locked/x.json"), "--json"}}, {}); })
                                   .find("--json: cannot create a temporary file"));
  fs::permissions(dir.file("locked"), fs::perms::owner_all);
}

}  // namespace
}  // namespace hisa
