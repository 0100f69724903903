#pragma once
// `hisa bench --device cuda`: the benchmark matrix (docs/benchmarks.md). Flat and HISA(B, m) selection through the
// CUDA engine's select(), on random bf16-valued layers (and the same rounded to fp8 on an fp8 tensor-core engine),
// for sampled queries (every query at position L-1 sees all L keys: the decode shape of
// tests/bench/torch_reference.py) and full causal prefills; stage times, rates against the card's peaks, and the
// benchmark targets.
#include <algorithm>
#include <cstdint>
#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "bench/selection_times.hpp"

namespace hisa {

struct CudaBenchOptions {
  std::vector<int64_t> keys{8192, 32768, 65536, 131072};  // sampled cases: `queries` queries that see all L keys
  std::vector<int64_t> prefill{32768, 65536};             // full causal prefills: L queries, query i sees [0, i]
  // DeepSeek-V4's compressed indexer at its 1M-token context: compressed_tokens / compress_ratio key rows, the
  // sampled queries at the last token (they see every row), one case per k here (V4-Flash 512, V4-Pro 1024).
  std::vector<int64_t> compressed_topk{512, 1024};
  int64_t compressed_tokens = int64_t(1) << 20, compress_ratio = 4;
  int64_t heads = 64, dim = 128, queries = 256, topk = 2048;
  int64_t block_size = 128, blocks = 64;
  int repeat = 20;  // timed repetitions of a sampled case; medians are reported
  uint64_t seed = 0;
  // A prefill case costs up to L/queries times a sampled one, so it repeats fewer times.
  int prefill_repeat() const { return std::max(2, repeat / 5); }
};

// The peaks that rates are printed against, and where each comes from.
struct GpuPeaks {
  double bf16_tflops = 0, fp8_tflops = 0;  // dense tensor-core peaks; 0: unknown
  std::string tensor_source;
  double hbm_gbs = 0;  // 0: unknown
  std::string hbm_source;
};
// Datasheet dense tensor-core peaks by GPU name (H100 SXM/HBM3, H100 PCIe, H200); 0 and "unknown" otherwise.
GpuPeaks datasheet_peaks(const std::string& gpu_name);

// One case of the matrix. Stage times are medians over `repeat` select() calls after two warm-ups: kernels by
// CUDA events (summed over the engine's query chunks), the whole call by the host clock (it also holds the
// batch's exactness checks, conversions, uploads and downloads). The batch carries its queries as a bf16 caller
// holds them, floats and their bf16 codes in pinned memory (QueryBatch::q_bf16); *_call_f32_ms time select()
// on the floats alone, which the engine has to check and encode.
struct CudaBenchCase {
  bool prefill = false;
  int64_t keys = 0, queries = 0;
  int64_t topk = 0;            // k of this case (the options' topk, or a compressed case's)
  int64_t compress_ratio = 1;  // > 1: a compressed case (keys are rows of this many tokens)
  int repeat = 0;
  double visible = 0;     // Σ over the queries of the keys each sees: N·L sampled, L(L+1)/2 prefill
  double flops = 0;       // flat scoring work, 2·H·D·visible
  double topk_bytes = 0;  // one read of the flat score rows, 4·visible
  double flat_score_ms = 0, flat_topk_ms = 0, flat_call_ms = 0;
  double hisa_blocks_ms = 0, hisa_choice_ms = 0, hisa_score_ms = 0, hisa_topk_ms = 0, hisa_call_ms = 0;
  double flat_call_f32_ms = 0, hisa_call_f32_ms = 0;
  double f32_score_ms = 0;  // flat scoring on the fp32 CUDA-core path, same values; 0: not measured (prefill)
  // The same case with the values rounded to fp8 e4m3 and an --fp8-mma engine (fp8 tensor cores): flat scoring
  // and top-k, and HISA's kernels. 0: not measured (the GPU or shape has no fp8 kernel).
  double fp8_score_ms = 0, fp8_topk_ms = 0, fp8_hisa_ms = 0;

  std::string shape() const { return prefill ? "prefill" : compress_ratio > 1 ? "v4-" + std::to_string(topk) : "sampled"; }
  double flat_ms() const { return flat_score_ms + flat_topk_ms; }
  double hisa_ms() const { return hisa_blocks_ms + hisa_choice_ms + hisa_score_ms + hisa_topk_ms; }
  double speedup() const { return flat_ms() / hisa_ms(); }
  double score_tflops() const { return flops / (flat_score_ms * 1e-3) * 1e-12; }
  double f32_tflops() const { return f32_score_ms > 0 ? flops / (f32_score_ms * 1e-3) * 1e-12 : 0; }
  double topk_gbs() const { return topk_bytes / (flat_topk_ms * 1e-3) * 1e-9; }
  bool has_fp8() const { return fp8_score_ms > 0; }
  double fp8_tflops() const { return has_fp8() ? flops / (fp8_score_ms * 1e-3) * 1e-12 : 0; }
  double fp8_flat_ms() const { return fp8_score_ms + fp8_topk_ms; }
};

struct CudaBenchResult {
  std::string gpu;
  int multiprocessors = 0;
  double memory_gib = 0;
  GpuPeaks peaks;
  std::vector<CudaBenchCase> cases;
};

// A benchmark target (benchmarks, not tests). value is empty when not measured (its case was not run, or
// the peak it is relative to is unknown); note says which case a target over several cases took (the worst),
// or why there is no value.
struct BenchTarget {
  std::string what, unit;
  double target = 0;
  bool at_most = false;  // reached when value <= target; else when value >= target
  std::optional<double> value;
  std::string note;
  bool reached() const { return value && (at_most ? *value <= target : *value >= target); }
};
std::vector<BenchTarget> bench_targets(const CudaBenchOptions& options, const CudaBenchResult& r);

// Defined in bench/cuda_bench_run.cpp (builds with CUDA only). Runs the sampled cases, then the prefill cases;
// on_case (when set) gets the result so far after each case, so output can come while the rest run.
// Throws UsageError when no usable GPU exists.
CudaBenchResult run_cuda_bench(const CudaBenchOptions& options,
                               const std::function<void(const CudaBenchResult&)>& on_case = {});

// The output: a header (GPU, shape, peaks), a few lines per case, then the summary table and the targets.
void print_cuda_bench_header(std::ostream& out, const CudaBenchOptions& options, const CudaBenchResult& r);
void print_cuda_bench_case(std::ostream& out, const CudaBenchOptions& options, const CudaBenchResult& r,
                           const CudaBenchCase& c);
void print_cuda_bench_summary(std::ostream& out, const CudaBenchOptions& options, const CudaBenchResult& r);
nlohmann::json cuda_bench_json(const CudaBenchOptions& options, const CudaBenchResult& r);

}  // namespace hisa
