// Every input a fuzzer ever found a problem with (tests/fuzz/regressions/, docs/testing.md, "Fuzzing"), replayed through
// the fuzz target's own entry (tests/fuzz/dump_entry.hpp) and through the CLI as a user runs it: each must be
// refused with an InputError or UsageError — exit status 2 and a message naming the file — never a crash.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "core/error.hpp"
#include "fuzz/dump_entry.hpp"
#include "io/attribute_probe.hpp"
#include "test_util.hpp"

namespace hisa {
namespace {

std::vector<std::string> regression_files() {
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(HISA_SOURCE_DIR "/tests/fuzz/regressions")) {
    if (e.is_regular_file() && e.path().extension() == ".h5") files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::string test_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string name = std::filesystem::path(info.param).stem().string();
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return name;
}

class FuzzRegression : public ::testing::TestWithParam<std::string> {};

TEST_P(FuzzRegression, EntryRefusesWithInputOrUsageError) {
  const std::string& path = GetParam();
  set_attribute_probe_timeout(2);  // as the fuzz target runs (some files hang libhdf5 until the time limit)
  try {
    fuzz::exercise_dump(path);
    ADD_FAILURE() << path << " was accepted; a regression file must be one the tool refuses";
  } catch (const InputError& e) {
    EXPECT_EQ(path, e.file());
  } catch (const UsageError&) {
  }
}

TEST_P(FuzzRegression, CliExitsWithStatus2AndNamesTheFile) {
  const std::string& path = GetParam();
  test::TempDir dir;
  const std::vector<std::vector<std::string>> commands{
      {HISA_BINARY, "inspect", "--check", path},
      {HISA_BINARY, "audit", path, "--topk", "4", "--block-size", "4", "--blocks", "2", "--max-queries", "4",
       "--device", "cpu", "--threads", "1"}};
  for (const auto& argv : commands) {
    test::ProcessResult r = test::run_process(argv, dir.path().string());
    ASSERT_TRUE(r.exited) << argv[1] << ": killed by signal " << r.status << "\n" << r.output;
    EXPECT_EQ(2, r.status) << argv[1] << ": " << r.output;
    EXPECT_NE(r.output.find("hisa: error: " + path), std::string::npos) << argv[1] << ": " << r.output;
  }
}

INSTANTIATE_TEST_SUITE_P(Fuzz, FuzzRegression, ::testing::ValuesIn(regression_files()), test_name);

}  // namespace
}  // namespace hisa
