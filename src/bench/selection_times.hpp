#pragma once
// What HISA(B, m) and flat selection cost on the GPU for queries that see L keys, through the CUDA engine's
// select() on a random bf16 layer (as `hisa bench --device cuda`): the measured column of the sweep's cost model.
#include <cstdint>
#include <string>
#include <vector>

namespace hisa {

// Medians over repeats, per query, in µs. kernels = every GPU stage by CUDA events (HISA: block scores, block
// choice, token scores, top-k).
struct SelectionTimeGrid {
  std::string gpu;
  int64_t keys = 0, heads = 0, dim = 0, queries = 0, topk = 0;
  double flat_kernels_us = 0;
  std::vector<int64_t> block_sizes, blocks;
  std::vector<std::vector<double>> hisa_kernels_us;  // [block size][m]
};

// The layer timed: `queries` queries that see all `keys` keys.
struct SelectionTimeShape {
  int64_t keys = 0, heads = 64, dim = 128, queries = 128, topk = 2048;
  int repeat = 3;
  uint64_t seed = 0;
};

// device: a CUDA device index. fp8_mma: the layer's values rounded to e4m3 and an fp8 tensor-core engine. Defined
// in bench/cuda_bench_run.cpp (builds with CUDA only).
SelectionTimeGrid time_selection_grid(const SelectionTimeShape& shape, const std::vector<int64_t>& block_sizes,
                                      const std::vector<int64_t>& blocks, int device, bool fp8_mma = false);

}  // namespace hisa
