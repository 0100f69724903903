#pragma once
// Error checks for CUDA runtime calls and kernel launches: a failure throws with file:line, the call and the
// CUDA error name, so a bad launch never goes unnoticed (exit status 0 proves nothing). Host-only header.
#include <cuda_runtime_api.h>

#include <stdexcept>
#include <string>

namespace hisa::cuda {

class CudaError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

[[noreturn]] inline void throw_cuda_error(cudaError_t err, const char* what, const char* file, int line) {
  throw CudaError(std::string(file) + ":" + std::to_string(line) + ": " + what + ": " + cudaGetErrorName(err) + " (" +
                  cudaGetErrorString(err) + ")");
}

}  // namespace hisa::cuda

#define HISA_CUDA_CHECK(call)                                                               \
  do {                                                                                      \
    const cudaError_t hisa_cuda_err_ = (call);                                              \
    if (hisa_cuda_err_ != cudaSuccess) ::hisa::cuda::throw_cuda_error(hisa_cuda_err_, #call, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: launch-configuration errors are reported here; errors while the kernel runs show up
// at the next synchronising call, which is checked too.
#define HISA_CUDA_CHECK_LAUNCH(name)                                                        \
  do {                                                                                      \
    const cudaError_t hisa_cuda_err_ = cudaGetLastError();                                  \
    if (hisa_cuda_err_ != cudaSuccess) ::hisa::cuda::throw_cuda_error(hisa_cuda_err_, "launch of " name, __FILE__, __LINE__); \
  } while (0)
