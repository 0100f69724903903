#pragma once
// `hisa bench --device cuda`: the CUDA engine's kernels and its select() end to end, on one random
// bf16-valued layer in which every query sees every key (the decode shape of the reference table in
// shared/reference/gpu.md, so the numbers compare with plain PyTorch there).
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

namespace hisa {

struct CudaBenchOptions {
  int64_t keys = 32768, heads = 64, dim = 128, queries = 256, topk = 2048;
  int64_t block_size = 128, blocks = 64;
  int repeat = 20;  // timed repetitions; medians are reported
  uint64_t seed = 0;
};

struct CudaBenchResult {
  std::string gpu;
  double flops = 0;         // 2·Nq·H·D·(visible keys), the flat scoring work
  double score_bytes = 0;   // Nq·L·4: one read of the flat score rows
  // Medians of CUDA-event times, in ms.
  double score_mma_ms = 0;  // flat scoring, bf16 tensor-core path
  double score_f32_ms = 0;  // flat scoring of the same values, fp32 CUDA-core path
  double topk_ms = 0;       // exact top-k over full rows
  // The engine's select() (what `hisa audit`/`select` run), medians in ms of its stage times: kernels by CUDA
  // events, the host block stage (keep_blocks on J, segment lists and unit masks, their upload) and the whole
  // call by the host clock. The whole call also holds the batch's exactness checks, conversions and uploads.
  double engine_flat_ms = 0, engine_flat_gpu_ms = 0;  // whole call; scoring + top-k kernels
  double engine_hisa_ms = 0;
  double hisa_blocks_ms = 0, hisa_host_ms = 0, hisa_score_ms = 0, hisa_topk_ms = 0;

  double mma_tflops() const { return flops / (score_mma_ms * 1e-3) * 1e-12; }
  double f32_tflops() const { return flops / (score_f32_ms * 1e-3) * 1e-12; }
  double topk_gbs() const { return score_bytes / (topk_ms * 1e-3) * 1e-9; }
  double flat_ms() const { return score_mma_ms + topk_ms; }
  double hisa_ms() const { return hisa_blocks_ms + hisa_host_ms + hisa_score_ms + hisa_topk_ms; }  // without prep
};

// What HISA(B, m) and flat selection cost on the GPU for queries that see L keys, through the engine's select()
// (the same engine and random bf16 layer as run_cuda_bench): medians over repeats, per query, in µs.
// kernels = the GPU stages by CUDA events; host = the host block stage (keep_blocks, segment lists, uploads).
struct SelectionTimeGrid {
  std::string gpu;
  int64_t keys = 0, heads = 0, dim = 0, queries = 0, topk = 0;
  double flat_kernels_us = 0;
  std::vector<int64_t> block_sizes, blocks;
  std::vector<std::vector<double>> hisa_kernels_us, hisa_host_us;  // [block size][m]
};
// keys, heads, dim, queries, topk and repeat are taken from `options`; device: a CUDA device index.
SelectionTimeGrid time_selection_grid(const CudaBenchOptions& options, const std::vector<int64_t>& block_sizes,
                                      const std::vector<int64_t>& blocks, int device);

// Defined in cuda/cuda_bench.cu (builds with CUDA only). Throws UsageError when no usable GPU exists.
CudaBenchResult run_cuda_bench(const CudaBenchOptions& options);
void print_cuda_bench(std::ostream& out, const CudaBenchOptions& options, const CudaBenchResult& r);

}  // namespace hisa
