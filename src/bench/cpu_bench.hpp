#pragma once
// `hisa bench --device cpu`: flat scoring against a plain Eigen GEMM of the same shape, and exact top-k
// against scoring, measured side by side in one run.
#include <cstdint>
#include <ostream>

namespace hisa {

struct CpuBenchOptions {
  int64_t keys = 32768, heads = 64, dim = 128, queries = 16, topk = 2048;
  int threads = 0;
  int repeat = 3;
  uint64_t seed = 0;
};

struct CpuBenchResult {
  double gemm_seconds = 0, score_seconds = 0, topk_seconds = 0;
  double flops = 0;  // 2·Nq·H·D·L
  double gemm_gflops() const { return flops / gemm_seconds * 1e-9; }
  double score_gflops() const { return flops / score_seconds * 1e-9; }
  double score_vs_gemm() const { return score_gflops() / gemm_gflops(); }
  double topk_vs_score() const { return topk_seconds / score_seconds; }
  int threads = 0;
};

CpuBenchResult run_cpu_bench(const CpuBenchOptions& options);
void print_cpu_bench(std::ostream& out, const CpuBenchOptions& options, const CpuBenchResult& r);

}  // namespace hisa
