#pragma once
// The CUDA selection engine (cuda_engine.cu). Host-only header: usable from code built without nvcc.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "select/engine.hpp"

namespace hisa {

// The CUDA engine on device `device` (an index from hisa::cuda::list_devices()). Same results as the CPU
// engine on exact inputs; on others, differences only between near-tied scores (fp32 summation order).
// Throws UsageError when the device does not exist. Queries are scored in chunks whose device buffers take
// at most half of the free device memory, or at most max_chunk_bytes when that is smaller and not 0 (tests
// use it to exercise many chunks). fp8_mma: fp8 dumps (fp8 q and k) are scored on the fp8 tensor cores, twice
// the bf16 rate but not exact (kernels.hpp ValueType::E4M3); differences from the CPU engine are then near-ties
// within kFp8MmaParityTolerance (metrics/parity.hpp).
std::unique_ptr<SelectionEngine> make_cuda_engine(int device, size_t max_chunk_bytes = 0, bool fp8_mma = false);

}  // namespace hisa

namespace hisa::cuda {

// Whether this build's fp8 tensor-core kernel runs on `device` (sm_90a code on a compute capability 9.0 GPU).
bool fp8_mma_available(int device);
// The name CUDA engines on `device` report, "cuda (<GPU name>)", or "cuda (<GPU name>, fp8 tensor cores)" when
// fp8_mma is asked and available, without creating one.
std::string engine_name(int device, bool fp8_mma = false);

// The GPU top-k kernel on host rows, for tests and the benchmark: rows[i][j] is the score of position
// first_position + j. Returns each row's k best positions, ascending (all of them when there are at most k).
std::vector<std::vector<int64_t>> topk_rows(const std::vector<std::vector<float>>& rows, int64_t first_position,
                                            int64_t k, int device);

}  // namespace hisa::cuda
