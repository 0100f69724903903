#pragma once
// The sweep's CUDA backend (cuda_sweep_scorer.cu). Host-only header: usable from code built without nvcc.
#include <cstddef>
#include <memory>

#include "select/sweep_scorer.hpp"

namespace hisa {

// DSA's selection and J on device `device`, with the CUDA engine's kernels and chunking: the same DSA sets
// and J as the CUDA engine's audit. max_chunk_bytes and fp8_mma as for make_cuda_engine. UsageError when no
// such device.
std::unique_ptr<SweepScorer> make_cuda_sweep_scorer(int device, size_t max_chunk_bytes = 0, bool fp8_mma = false);

}  // namespace hisa
