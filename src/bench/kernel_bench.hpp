#pragma once
// `hisa bench --device cuda --kernel NAME`: one kernel family timed alone on random data of a chosen shape, without
// the engine around it, to see what a kernel change does (docs/cuda.md, "Benchmarking one kernel").
//  score:  the scoring kernel the engine would choose for the element type (--dtype), queries x L keys;
//          rate = 2·H·D·queries·L / time (the bench matrix's TFLOP/s).
//  topk:   exact top-k of queries rows of L fp32 scores; rate = 4 bytes·queries·L / time (one read of the scores).
//  choice: HISA's block choice on the GPU (the m best of ⌈L/B⌉ blocks per row, then the token stage's segments and
//          work lists); rate = 4 bytes·queries·⌈L/B⌉ / time.
//  masses: the audit's softmax masses and per-block best scores; rate = 4 bytes·queries·L / time.
#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "bench/cuda_bench.hpp"

namespace hisa {

struct KernelBenchOptions {
  std::string kernel = "score";  // score, topk, choice or masses
  std::vector<int64_t> keys{8192, 32768, 65536, 131072};
  int64_t queries = 256, heads = 64, dim = 128, topk = 2048, block_size = 128, blocks = 64;
  std::string dtype = "bf16";  // score: bf16, f16, fp32 or fp8
  int repeat = 20;
  uint64_t seed = 0;
};

// The kernel families and element types --kernel and --dtype take.
const std::vector<std::string>& kernel_bench_kernels();
const std::vector<std::string>& kernel_bench_dtypes();

struct KernelBenchRow {
  int64_t keys = 0;
  std::string ran;  // what ran: "wgmma on bf16, 128-key tiles", "top-2048 radix select", ...
  double ms = 0;    // median over the repeats, CUDA events
  double rate = 0;  // TFLOP/s (score) or GB/s (the others)
  double percent_of_peak = 0;  // of the matching tensor peak or of HBM; 0: peak unknown
};

struct KernelBenchResult {
  std::string gpu;
  GpuPeaks peaks;
  std::vector<KernelBenchRow> rows;
};

std::string kernel_bench_unit(const KernelBenchOptions& options);  // "TFLOP/s" or "GB/s"

// Defined in bench/kernel_bench_run.cpp (builds with CUDA only). on_row sees each L's row as it is measured.
// OptionError for an unknown kernel or dtype, or a shape the kernel does not take.
KernelBenchResult run_kernel_bench(const KernelBenchOptions& options,
                                   const std::function<void(const KernelBenchResult&)>& on_row = {});

void print_kernel_bench_header(std::ostream& out, const KernelBenchOptions& options, const KernelBenchResult& r);
void print_kernel_bench_row(std::ostream& out, const KernelBenchOptions& options, const KernelBenchRow& row);
nlohmann::json kernel_bench_json(const KernelBenchOptions& options, const KernelBenchResult& r);

}  // namespace hisa
