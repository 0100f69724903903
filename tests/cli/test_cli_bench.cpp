// `hisa bench` flags as a user gives them, on machines without a GPU: a list of L runs the CPU bench once per L,
// and what only the CUDA bench does fails with exit status 2 and a message naming the flag.
#include <gtest/gtest.h>

#include "test_util.hpp"

#ifdef HISA_HAVE_CUDA
#include "cuda/device_info.hpp"
#endif

namespace hisa {
namespace {

using test::TempDir;

test::ProcessResult run_bench(std::vector<std::string> args, const TempDir& dir) {
  args.insert(args.begin(), {HISA_BINARY, "bench"});
  return test::run_process(args, dir.path().string());
}

const std::vector<std::string> kTiny{"--heads", "2", "--dim", "16", "--queries", "2", "--topk", "10", "--repeat", "1"};

std::vector<std::string> tiny(std::vector<std::string> args) {
  args.insert(args.end(), kTiny.begin(), kTiny.end());
  return args;
}

size_t count(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}

TEST(CliBench, CpuRunsOncePerListedL) {
  TempDir dir;
  const test::ProcessResult r = run_bench(tiny({"--device", "cpu", "--keys", "1000,2000"}), dir);
  ASSERT_TRUE(r.exited) << r.output;
  EXPECT_EQ(0, r.status) << r.output;
  EXPECT_EQ(2u, count(r.output, "CPU bench: L = ")) << r.output;
  EXPECT_LT(r.output.find("L = 1000 keys"), r.output.find("L = 2000 keys")) << r.output;
}

TEST(CliBench, BadFlagsExitWithStatus2) {
  TempDir dir;
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases{
      {{"--device", "cpu", "--json", dir.file("b.json")}, "--json"},
      {{"--device", "cpu", "--keys", "1000,x"}, "--keys"},
      {{"--device", "cpu", "--keys", "1000,-5"}, "--keys"},
      {{"--device", "cuda", "--prefill", "4096", "--no-prefill"}, "--no-prefill"},
      {{"--device", "cuda", "--compressed-topk", "512", "--no-compressed"}, "--no-compressed"},
      {{"--device", "cuda", "--compressed-topk", "0"}, "--compressed-topk"},
  };
  for (const auto& [args, named] : cases) {
    const test::ProcessResult r = run_bench(tiny(args), dir);
    ASSERT_TRUE(r.exited) << r.output;
    EXPECT_EQ(2, r.status) << r.output;
    EXPECT_NE(r.output.find(named), std::string::npos) << named << " not in: " << r.output;
  }
}

TEST(CliBench, CudaWithoutGpuIsAClearUsageError) {
#ifdef HISA_HAVE_CUDA
  if (!cuda::list_devices().empty()) GTEST_SKIP() << "a GPU is present: the bench would run";
#endif
  TempDir dir;
  const test::ProcessResult r = run_bench(tiny({"--device", "cuda", "--keys", "4096", "--json", dir.file("b.json")}), dir);
  ASSERT_TRUE(r.exited) << r.output;
  EXPECT_EQ(2, r.status) << r.output;
  EXPECT_NE(r.output.find("hisa: error: --device cuda: "), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir.file("b.json")));
}

}  // namespace
}  // namespace hisa
