#pragma once
// The CUDA selection engine (cuda_engine.cu). Host-only header: usable from code built without nvcc.
#include <cstdint>
#include <memory>
#include <vector>

#include "select/engine.hpp"

namespace hisa {

// The CUDA engine on device `device` (an index from hisa::cuda::list_devices()). Same results as the CPU
// engine on exact inputs; on others, differences only between near-tied scores (fp32 summation order).
// Throws UsageError when the device does not exist.
std::unique_ptr<SelectionEngine> make_cuda_engine(int device);

}  // namespace hisa

namespace hisa::cuda {

// The GPU top-k kernel on host rows, for tests and the benchmark: rows[i][j] is the score of position
// first_position + j. Returns each row's k best positions, ascending (all of them when there are at most k).
std::vector<std::vector<int64_t>> topk_rows(const std::vector<std::vector<float>>& rows, int64_t first_position,
                                            int64_t k, int device);

}  // namespace hisa::cuda
