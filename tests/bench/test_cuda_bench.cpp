// The CUDA bench's report (bench/cuda_bench.cpp) on made-up figures, so it is checked without a GPU: the
// datasheet peaks, the benchmark targets, the text and the JSON.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "bench/cuda_bench.hpp"

namespace hisa {
namespace {

CudaBenchCase made_up_case(bool prefill, int64_t L, double flat_ms, double hisa_ms) {
  CudaBenchCase c;
  c.prefill = prefill;
  c.keys = L;
  c.topk = 2048;
  c.queries = prefill ? L : 256;
  c.repeat = prefill ? 4 : 20;
  c.visible = prefill ? 0.5 * double(L) * double(L + 1) : 256.0 * double(L);
  c.flops = 2.0 * 64 * 128 * c.visible;
  c.topk_bytes = 4.0 * c.visible;
  c.flat_score_ms = 0.8 * flat_ms;
  c.flat_topk_ms = 0.2 * flat_ms;
  c.flat_call_ms = flat_ms + 1;
  c.hisa_blocks_ms = c.hisa_choice_ms = c.hisa_score_ms = c.hisa_topk_ms = hisa_ms / 4;
  c.hisa_call_ms = hisa_ms + 1;
  c.f32_score_ms = prefill ? 0 : 15 * c.flat_score_ms;
  // fp8 tensor cores: scoring twice as fast, the rest as on bf16; none at 128K (as on a GPU without the kernel).
  if (L != 131072) {
    c.fp8_score_ms = 0.5 * c.flat_score_ms;
    c.fp8_topk_ms = c.flat_topk_ms;
    c.fp8_hisa_ms = 0.8 * hisa_ms;
  }
  return c;
}

CudaBenchResult made_up_result() {
  CudaBenchResult r;
  r.gpu = "NVIDIA H200";
  r.multiprocessors = 132;
  r.memory_gib = 139.8;
  r.peaks = datasheet_peaks(r.gpu);
  r.peaks.hbm_gbs = 4800;
  r.peaks.hbm_source = "made up";
  r.cases = {made_up_case(false, 32768, 0.6, 0.2), made_up_case(false, 131072, 2.4, 0.8),
             made_up_case(true, 65536, 40, 25)};
  return r;
}

TEST(CudaBenchReport, DatasheetPeaksByName) {
  EXPECT_DOUBLE_EQ(989.4, datasheet_peaks("NVIDIA H100 80GB HBM3").bf16_tflops);
  EXPECT_DOUBLE_EQ(989.4, datasheet_peaks("NVIDIA H200").bf16_tflops);
  EXPECT_DOUBLE_EQ(1979.0, datasheet_peaks("NVIDIA H200").fp8_tflops);
  EXPECT_DOUBLE_EQ(756.0, datasheet_peaks("NVIDIA H100 PCIe").bf16_tflops);
  for (const char* other : {"NVIDIA H100 NVL", "NVIDIA A100-SXM4-80GB", "NVIDIA GeForce RTX 4090"}) {
    const GpuPeaks p = datasheet_peaks(other);
    EXPECT_EQ(0, p.bf16_tflops) << other;
    EXPECT_NE(p.tensor_source.find("unknown"), std::string::npos) << other;
  }
}

TEST(CudaBenchReport, TargetsTakeTheirCases) {
  CudaBenchOptions o;
  const CudaBenchResult r = made_up_result();
  const std::vector<BenchTarget> t = bench_targets(o, r);
  ASSERT_EQ(9u, t.size());
  // Scoring: 2·64·128·256·32768 FLOP in 0.48 ms, the lowest of the three cases.
  EXPECT_NEAR(2.0 * 64 * 128 * 256 * 32768 / 0.48e-3 * 1e-12, *t[0].value, 1e-9);
  EXPECT_EQ("lowest: sampled 32K", t[0].note);
  EXPECT_FALSE(t[0].reached());
  EXPECT_TRUE(t[1].value.has_value());
  EXPECT_DOUBLE_EQ(40.0, *t[2].value);  // full causal flat at 64K
  EXPECT_TRUE(t[2].reached());
  EXPECT_DOUBLE_EQ(3.0, *t[3].value);  // HISA over flat at 32K
  EXPECT_TRUE(t[3].reached());
  EXPECT_DOUBLE_EQ(3.0, *t[4].value);  // at 128K: short of 4x
  EXPECT_FALSE(t[4].reached());
  EXPECT_DOUBLE_EQ(25.0, *t[5].value);
  EXPECT_FALSE(t[5].reached());
  // fp8: the lowest over the cases that have fp8 figures (128K has none), twice the bf16 rate there.
  EXPECT_NEAR(2 * *t[0].value, *t[6].value, 1e-9);
  EXPECT_EQ("lowest: sampled 32K", t[6].note);
  EXPECT_DOUBLE_EQ(0.4 * 40 + 0.2 * 40, *t[7].value);  // fp8 causal flat at 64K: 16 + 8 ms
  EXPECT_TRUE(t[7].reached());
  EXPECT_DOUBLE_EQ(20.0, *t[8].value);  // fp8 causal HISA at 64K: short of 15 ms
  EXPECT_FALSE(t[8].reached());

  CudaBenchResult sampled_only = r;
  sampled_only.cases.pop_back();
  sampled_only.peaks.hbm_gbs = 0;
  const std::vector<BenchTarget> u = bench_targets(o, sampled_only);
  EXPECT_FALSE(u[1].value.has_value());
  EXPECT_FALSE(u[2].value.has_value());
  EXPECT_EQ("not measured: no prefill case at L = 65536", u[2].note);
  EXPECT_EQ("not measured: no prefill case at L = 65536 with fp8 figures", u[7].note);

  CudaBenchResult no_fp8 = r;
  for (auto& c : no_fp8.cases) c.fp8_score_ms = 0;
  const std::vector<BenchTarget> v = bench_targets(o, no_fp8);
  EXPECT_FALSE(v[6].value.has_value());
  EXPECT_EQ("not measured: no fp8 tensor-core kernel for this GPU and shape", v[6].note);
  EXPECT_FALSE(v[8].value.has_value());
}

TEST(CudaBenchReport, TextHasTheGpuFirstARowPerCaseAndALinePerTarget) {
  CudaBenchOptions o;
  const CudaBenchResult r = made_up_result();
  std::ostringstream s;
  print_cuda_bench_header(s, o, r);
  for (const auto& c : r.cases) print_cuda_bench_case(s, o, r, c);
  print_cuda_bench_summary(s, o, r);
  const std::string text = s.str();
  EXPECT_EQ(0u, text.find("CUDA bench on NVIDIA H200 ")) << text;
  EXPECT_NE(text.find("bf16 dense tensor peak: 989.4 TFLOP/s (fp8 1979), NVIDIA datasheet, H200 SXM"), std::string::npos) << text;
  EXPECT_NE(text.find("prefill L = 65536: 65536 queries"), std::string::npos) << text;
  EXPECT_NE(text.find("prefill cases repeat fewer times"), std::string::npos) << text;
  EXPECT_NE(text.find("fp32 CUDA-core path"), std::string::npos) << text;
  EXPECT_NE(text.find("block choice"), std::string::npos) << text;
  EXPECT_NE(text.find("full causal flat at 64K: 40.00 ms (target <= 60 ms): reached"), std::string::npos) << text;
  EXPECT_NE(text.find("full causal HISA at 64K: 25.00 ms (target <= 20 ms): not reached"), std::string::npos) << text;
  EXPECT_NE(text.find("HISA(B=128, m=64) over flat at 128K (sampled): 3.00x (target >= 4x): not reached"), std::string::npos)
      << text;
  EXPECT_NE(text.find("fp8 tensor cores (--fp8-mma): flat scoring 16.000 ms"), std::string::npos) << text;
  EXPECT_NE(text.find("fp8 tensor cores (--fp8-mma): not measured"), std::string::npos) << text;  // 128K
  EXPECT_NE(text.find("full causal HISA at 64K, fp8 tensor cores: 20.00 ms (target <= 15 ms): not reached"), std::string::npos)
      << text;
  const std::string table = text.substr(text.find("summary"));
  EXPECT_NE(table.find("prefill    65536   65536    40.000    25.000    1.60x"), std::string::npos) << table;
  EXPECT_NE(table.find("   24.000    20.000"), std::string::npos) << table;  // the 64K prefill's fp8 flat and HISA
  EXPECT_NE(table.find("        -         -        -       -\n"), std::string::npos) << table;  // 128K: no fp8
}

// A DeepSeek-V4 compressed case (1M tokens in rows of 4, top-512): named as such in the text, the table and the
// JSON, and never taken for the sampled case of the same L by the targets at one L.
TEST(CudaBenchReport, CompressedCasesAreNamedAndKeptApart) {
  CudaBenchOptions o;
  CudaBenchResult r = made_up_result();
  CudaBenchCase v4 = made_up_case(false, 262144, 5.0, 1.0);
  v4.topk = 512;
  v4.compress_ratio = 4;
  r.cases.push_back(v4);
  CudaBenchCase sampled = made_up_case(false, 262144, 9.0, 3.0);
  sampled.topk = 2048;
  r.cases.push_back(sampled);
  EXPECT_EQ("v4-512", v4.shape());
  EXPECT_EQ("sampled", sampled.shape());
  std::ostringstream s;
  print_cuda_bench_case(s, o, r, v4);
  print_cuda_bench_summary(s, o, r);
  const std::string text = s.str();
  EXPECT_NE(text.find("DeepSeek-V4 compressed, top-512: L = 262144 rows of 4 tokens (1048576 tokens); 256 queries at the "
                      "last token"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("top-512 1.000 ms"), std::string::npos) << text;
  EXPECT_NE(text.find("v4-512    262144     256     5.000     1.000    5.00x"), std::string::npos) << text;
  const nlohmann::json j = cuda_bench_json(o, r);
  EXPECT_EQ(j["cases"][3]["shape"], "v4-512");
  EXPECT_EQ(j["cases"][3]["topk"], 512);
  EXPECT_EQ(j["cases"][3]["compress_ratio"], 4);
  EXPECT_EQ(j["options"]["compressed_topk"], (std::vector<int64_t>{512, 1024}));
  EXPECT_EQ(j["options"]["compressed_tokens"], 1 << 20);
}

TEST(CudaBenchReport, JsonHoldsEveryFigure) {
  CudaBenchOptions o;
  CudaBenchResult r = made_up_result();
  r.peaks = datasheet_peaks("unknown card");
  const nlohmann::json j = nlohmann::json::parse(cuda_bench_json(o, r).dump());
  EXPECT_EQ("unknown card", j["peaks"]["tensor_source"].get<std::string>().substr(9, 12));
  EXPECT_TRUE(j["peaks"]["bf16_dense_tflops"].is_null());
  ASSERT_EQ(3u, j["cases"].size());
  const auto& sampled = j["cases"][0];
  EXPECT_EQ("sampled", sampled["shape"]);
  EXPECT_EQ(32768, sampled["keys"]);
  EXPECT_TRUE(sampled["flat"]["scoring_percent_of_peak"].is_null());
  EXPECT_DOUBLE_EQ(0.6, sampled["flat"]["kernels_ms"].get<double>());
  EXPECT_DOUBLE_EQ(0.2, sampled["hisa"]["kernels_ms"].get<double>());
  EXPECT_DOUBLE_EQ(3.0, sampled["speedup"].get<double>());
  EXPECT_TRUE(sampled["flat"]["fp32_scoring_tflops"].is_number());
  EXPECT_TRUE(j["cases"][2]["flat"]["fp32_scoring_ms"].is_null());
  EXPECT_EQ(4, j["options"]["prefill_repeat"]);
  EXPECT_DOUBLE_EQ(24.0, j["cases"][2]["fp8_mma"]["flat_kernels_ms"].get<double>());
  EXPECT_TRUE(j["cases"][2]["fp8_mma"]["flat_scoring_percent_of_fp8_peak"].is_null());  // the peak is unknown here
  EXPECT_TRUE(j["cases"][1]["fp8_mma"].is_null());
  ASSERT_EQ(9u, j["targets"].size());
  EXPECT_EQ(true, j["targets"][2]["reached"]);
}

}  // namespace
}  // namespace hisa
