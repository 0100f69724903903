// The one-kernel bench's text and JSON (bench/kernel_bench.cpp) on made-up rows, so they are checked without a GPU.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "bench/kernel_bench.hpp"

namespace hisa {
namespace {

TEST(KernelBench, TextAndJsonSayWhatRanAndItsRate) {
  KernelBenchOptions o;
  o.kernel = "topk";
  o.keys = {32768, 131072};
  KernelBenchResult r;
  r.gpu = "NVIDIA H200";
  r.rows.push_back({32768, "exact top-2048", 0.0732, 458.3, 9.5});
  r.rows.push_back({131072, "exact top-2048", 0.2947, 455.4, 0});  // peak unknown
  std::ostringstream text;
  print_kernel_bench_header(text, o, r);
  for (const auto& row : r.rows) print_kernel_bench_row(text, o, row);
  const std::string t = text.str();
  EXPECT_NE(t.find("kernel bench on NVIDIA H200: topk, 256 queries, k = 2048"), std::string::npos) << t;
  EXPECT_NE(t.find("GB/s"), std::string::npos) << t;
  EXPECT_NE(t.find("    32768     0.0732      458.3      9.5  exact top-2048"), std::string::npos) << t;
  EXPECT_NE(t.find("   131072     0.2947      455.4      n/a  exact top-2048"), std::string::npos) << t;
  const nlohmann::json j = kernel_bench_json(o, r);
  EXPECT_EQ(j["kernel"], "topk");
  EXPECT_EQ(j["unit"], "GB/s");
  ASSERT_EQ(j["rows"].size(), 2u);
  EXPECT_EQ(j["rows"][0]["keys"], 32768);
  EXPECT_DOUBLE_EQ(j["rows"][0]["percent_of_peak"].get<double>(), 9.5);
  EXPECT_TRUE(j["rows"][1]["percent_of_peak"].is_null());

  o.kernel = "score";
  o.dtype = "fp8";
  EXPECT_EQ(kernel_bench_unit(o), "TFLOP/s");
  std::ostringstream score;
  print_kernel_bench_header(score, o, r);
  EXPECT_NE(score.str().find("score, 256 queries, H = 64, D = 128, fp8"), std::string::npos) << score.str();
}

}  // namespace
}  // namespace hisa
