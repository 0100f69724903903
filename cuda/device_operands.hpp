#pragma once
// Operands that already live on the GPU (`import hisa` on CUDA tensors): decoded, checked and put into the scoring
// kernels' forms there, so that nothing of them crosses to the host. Each function does on the device what the
// host code it names does on the host, with the same result bit for bit; tests/cuda/test_device_operands.cpp
// holds them to it. Host-only header: plain device pointers and a stream, as kernels.hpp.
#include <cuda_runtime_api.h>

#include <cstdint>

#include "cuda/kernels.hpp"

namespace hisa::cuda {

// The element codes a device operand may hold (the loader's f32, f16, bf16 and fp8 e4m3fn).
enum class DeviceCodes { F32, F16, BF16, E4M3 };

// out[i] = the float value of codes[i] (core/numeric's bf16_to_float, f16_to_float, e4m3_to_float), n values.
void decode_on_device(const void* codes, DeviceCodes type, int64_t n, float* out, cudaStream_t stream);

// The first i < n whose value fails the check, and its value; index -1 when none does. Synchronises the stream.
struct FirstBad {
  int64_t index = -1;
  float value = 0.0f;
};
// Not finite (io/tensor_check's check_finite).
FirstBad first_nonfinite_on_device(const float* values, int64_t n, cudaStream_t stream);
// Not finite, or not > 0 (check_key_scales).
FirstBad first_bad_scale_on_device(const float* scales, int64_t n, cudaStream_t stream);

// operands.hpp's Exactness questions over n values, answered at once. Synchronises the stream.
struct ExactnessFlags {
  bool bf16 = false, f16 = false, e4m3 = false, splittable = false;
};
ExactnessFlags exactness_on_device(const float* values, int64_t n, cudaStream_t stream);

// operands.hpp's encode_row for every row, into zeroed units: row r of `rows` rows is values[r / H' * H + r % H']
// when r % H' < H (H' = padded_heads, H = heads; keys: both 1), a zero row otherwise; out holds
// rows · coded_dim(t, dim) units.
void encode_rows_on_device(ValueType t, const float* values, int64_t rows, int64_t dim, int64_t heads,
                           int64_t padded_heads, uint16_t* out, cudaStream_t stream);
// [count, padded_heads] weights from [count, heads], zero in the padded heads (QueryStore::w_padded).
void pad_heads_on_device(const float* w, int64_t count, int64_t heads, int64_t padded_heads, float* out,
                         cudaStream_t stream);
// select/blocks.cpp pool_keys' fp32 means: block b's mean[d] = (Σ over its keys s, in order, of k[s][d]·scale[s])
// / keys in the block; out holds ⌈count / block_size⌉ · dim floats. (Its fp8 step is the host's, on these means.)
void pool_means_on_device(const float* k, const float* scale, int64_t count, int64_t dim, int64_t block_size,
                          float* out, cudaStream_t stream);
// dst row i = src row rows[i] (rows: n device int64 indices), each row_elems floats.
void gather_rows_on_device(const float* src, int64_t row_elems, const int64_t* rows, int64_t n, float* dst,
                           cudaStream_t stream);

}  // namespace hisa::cuda
