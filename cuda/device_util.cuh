#pragma once
// Small device helpers shared by the selection kernels.
#include <cuda_runtime.h>

#include <cstdint>

namespace hisa::cuda {

// Order-preserving map from float to uint32 (larger float, larger key), exactly as src/select/topk.cpp:
// -0 and +0 map to the same key. NaN never reaches it (scores are cleaned when written).
__device__ __forceinline__ uint32_t order_key(float x) {
  uint32_t u = __float_as_uint(x);
  if ((u << 1) == 0) u = 0;  // -0 -> +0
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// A NaN score (only from an fp32 overflow) is treated as -inf, as docs/definitions.md says.
__device__ __forceinline__ float clean_score(float v) { return isnan(v) ? -INFINITY : v; }

// 16-byte asynchronous global -> shared copy (sm_80+), completed with cp_async_wait.
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

}  // namespace hisa::cuda
