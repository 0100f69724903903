// Device operands (device_operands.hpp): core/numeric's conversions and the host stores' checks, encodings and
// pooling, on the GPU. The conversions are core/numeric.cpp's written again with CUDA's math functions, line for
// line, so that both give the same bits.
#include <cuda_runtime.h>

#include <algorithm>

#include "cuda/cuda_check.hpp"
#include "cuda/device_buffer.hpp"
#include "cuda/device_operands.hpp"

namespace hisa::cuda {

namespace {

constexpr int kThreads = 256;

int blocks_for(int64_t n) { return int(std::min<int64_t>((n + kThreads - 1) / kThreads, 4096)); }

__device__ float f16_value(uint16_t bits) {
  const uint32_t sign = (bits >> 15) & 1u, exponent = (bits >> 10) & 0x1Fu, mantissa = bits & 0x3FFu;
  float magnitude;
  if (exponent == 0) {
    magnitude = ldexpf(float(mantissa), -24);
  } else if (exponent == 31) {
    magnitude = mantissa ? __int_as_float(0x7FC00000) : __int_as_float(0x7F800000);
  } else {
    magnitude = ldexpf(float(mantissa | 0x400u), int(exponent) - 25);
  }
  return sign ? -magnitude : magnitude;
}

__device__ float e4m3_value(uint8_t bits) {
  const uint32_t sign = bits >> 7, exponent = (bits >> 3) & 0xFu, mantissa = bits & 0x7u;
  float magnitude;
  if (exponent == 15 && mantissa == 7) {
    magnitude = __int_as_float(0x7FC00000);
  } else if (exponent == 0) {
    magnitude = ldexpf(float(mantissa), -9);
  } else {
    magnitude = ldexpf(float(mantissa | 0x8u), int(exponent) - 10);
  }
  return sign ? -magnitude : magnitude;
}

__device__ float round_magnitude(float a, int mantissa_bits, int min_exponent) {
  if (a == 0.0f) return 0.0f;
  int e;
  frexpf(a, &e);
  const int exponent = max(e - 1, min_exponent);
  const float quantum = ldexpf(1.0f, exponent - mantissa_bits);
  return nearbyintf(__fdiv_rn(a, quantum)) * quantum;
}

__device__ uint16_t f16_code(float x) {
  const uint16_t sign = signbit(x) ? 0x8000u : 0u;
  if (isnan(x)) return 0x7E00u;
  const float a = round_magnitude(fabsf(x), 10, -14);
  if (a >= 65536.0f || isinf(a)) return sign | 0x7C00u;
  if (a == 0.0f) return sign;
  int e;
  frexpf(a, &e);
  const int exponent = e - 1;
  if (exponent < -14) return sign | uint16_t(lroundf(ldexpf(a, 24)));
  const uint32_t mantissa = uint32_t(lroundf(ldexpf(a, 10 - exponent))) - 0x400u;
  return sign | uint16_t((exponent + 15) << 10) | uint16_t(mantissa);
}

__device__ uint8_t e4m3_code(float x) {
  const uint8_t sign = signbit(x) ? 0x80u : 0u;
  if (isnan(x)) return 0x7Fu;
  float a = fabsf(x);
  if (a >= 448.0f) return sign | 0x7Eu;
  a = round_magnitude(a, 3, -6);
  if (a >= 448.0f) return sign | 0x7Eu;
  if (a == 0.0f) return sign;
  int e;
  frexpf(a, &e);
  const int exponent = e - 1;
  if (exponent < -6) return sign | uint8_t(lroundf(ldexpf(a, 9)));
  const uint32_t mantissa = uint32_t(lroundf(ldexpf(a, 3 - exponent))) - 0x8u;
  return sign | uint8_t((exponent + 7) << 3) | uint8_t(mantissa);
}

// core/numeric's float_to_bf16 (round to nearest even on the bits).
__device__ uint16_t bf16_code(float x) {
  uint32_t u = __float_as_uint(x);
  if (isnan(x)) return uint16_t((u >> 16) | 0x40u);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}
__device__ float bf16_value(uint16_t bits) { return __uint_as_float(uint32_t(bits) << 16); }

__global__ void decode_kernel(const void* codes, DeviceCodes type, int64_t n, float* out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    switch (type) {
      case DeviceCodes::F32: out[i] = static_cast<const float*>(codes)[i]; break;
      case DeviceCodes::F16: out[i] = f16_value(static_cast<const uint16_t*>(codes)[i]); break;
      case DeviceCodes::BF16: out[i] = bf16_value(static_cast<const uint16_t*>(codes)[i]); break;
      case DeviceCodes::E4M3: out[i] = e4m3_value(static_cast<const uint8_t*>(codes)[i]); break;
    }
  }
}

// The smallest failing index, by atomicMin over every thread's first failure.
template <bool Scales>
__global__ void first_bad_kernel(const float* v, int64_t n, unsigned long long* first) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float x = v[i];
    const bool bad = Scales ? !(isfinite(x) && x > 0.0f) : !isfinite(x);
    if (bad) {
      atomicMin(first, (unsigned long long)i);
      return;
    }
  }
}

// Each flag cleared by any value that fails it (flags: bf16, f16, e4m3, splittable).
__global__ void exactness_kernel(const float* v, int64_t n, int* flags) {
  bool bf16 = true, f16 = true, e4m3 = true, split = true;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float x = v[i];
    bf16 = bf16 && (__float_as_uint(x) & 0xFFFFu) == 0;
    f16 = f16 && f16_value(f16_code(x)) == x;
    e4m3 = e4m3 && e4m3_value(e4m3_code(x)) == x;
    split = split && (x == 0.0f || (fabsf(x) >= 1e-30f && fabsf(x) <= 3.0e38f));
  }
  if (!__all_sync(0xffffffffu, bf16) && threadIdx.x % 32 == 0) flags[0] = 0;
  if (!__all_sync(0xffffffffu, f16) && threadIdx.x % 32 == 0) flags[1] = 0;
  if (!__all_sync(0xffffffffu, e4m3) && threadIdx.x % 32 == 0) flags[2] = 0;
  if (!__all_sync(0xffffffffu, split) && threadIdx.x % 32 == 0) flags[3] = 0;
}

// One thread per (row, padded dim) unit position; encode_row's forms (operands.hpp).
__global__ void encode_kernel(ValueType t, const float* values, int64_t rows, int64_t dim, int64_t padded_dim,
                              int64_t heads, int64_t padded_heads, uint16_t* out) {
  const int64_t units = t == ValueType::E4M3 ? int64_t(kFp8Dim) : padded_dim;  // positions per row
  const int64_t row_units = t == ValueType::E4M3 ? kFp8Dim / 2 : t == ValueType::BF16x3 ? 3 * padded_dim : padded_dim;
  for (int64_t at = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; at < rows * units;
       at += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = at / units, d = at % units;
    const int64_t h = r % padded_heads;
    const bool real = h < heads && d < dim;
    const float x = real ? values[(r / padded_heads * heads + h) * dim + d] : 0.0f;
    uint16_t* row = out + r * row_units;
    if (t == ValueType::E4M3) {
      reinterpret_cast<uint8_t*>(row)[d] = real ? e4m3_code(x) : uint8_t(0);
    } else if (t == ValueType::BF16x3) {
      uint16_t hi = 0, mid = 0, lo = 0;
      if (real) {  // operands.hpp split_bf16
        const float hv = bf16_value(bf16_code(x));
        const float rest = __fsub_rn(x, hv);
        const float mv = bf16_value(bf16_code(rest));
        hi = uint16_t(__float_as_uint(hv) >> 16);  // encode(BF16, ·): the top bits, exact for every part
        mid = uint16_t(__float_as_uint(mv) >> 16);
        lo = uint16_t(__float_as_uint(__fsub_rn(rest, mv)) >> 16);
      }
      row[d] = hi;
      row[padded_dim + d] = mid;
      row[2 * padded_dim + d] = lo;
    } else if (t == ValueType::F16) {
      row[d] = real ? f16_code(x) : uint16_t(0);
    } else {
      row[d] = real ? uint16_t(__float_as_uint(x) >> 16) : uint16_t(0);
    }
  }
}

__global__ void pad_heads_kernel(const float* w, int64_t count, int64_t heads, int64_t padded, float* out) {
  for (int64_t at = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; at < count * padded;
       at += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = at / padded, h = at % padded;
    out[at] = h < heads ? w[i * heads + h] : 0.0f;
  }
}

// One thread per (block, dim): the block's keys in position order, as pool_keys sums them (one fma each).
__global__ void pool_kernel(const float* k, const float* scale, int64_t count, int64_t dim, int64_t B, float* out) {
  const int64_t blocks = (count + B - 1) / B;
  for (int64_t at = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; at < blocks * dim;
       at += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = at / dim, d = at % dim;
    const int64_t begin = b * B, end = min(count, begin + B);
    float mean = 0.0f;
    for (int64_t s = begin; s < end; ++s) mean = __fmaf_rn(k[s * dim + d], scale[s], mean);
    out[at] = __fdiv_rn(mean, float(end - begin));
  }
}

__global__ void gather_kernel(const float* src, int64_t row_elems, const int64_t* rows, int64_t n, float* dst) {
  for (int64_t at = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; at < n * row_elems;
       at += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = at / row_elems, e = at % row_elems;
    dst[at] = src[rows[i] * row_elems + e];
  }
}

FirstBad first_bad(const float* v, int64_t n, bool scales, cudaStream_t stream) {
  FirstBad out;
  if (n <= 0) return out;
  DeviceArray<unsigned long long> first;
  const unsigned long long none = ~0ull;
  first.upload(&none, 1, stream);
  if (scales) {
    first_bad_kernel<true><<<blocks_for(n), kThreads, 0, stream>>>(v, n, first.data());
  } else {
    first_bad_kernel<false><<<blocks_for(n), kThreads, 0, stream>>>(v, n, first.data());
  }
  HISA_CUDA_CHECK(cudaGetLastError());
  unsigned long long index = none;
  first.download(&index, 1, stream);
  HISA_CUDA_CHECK(cudaStreamSynchronize(stream));
  if (index == none) return out;
  out.index = int64_t(index);
  HISA_CUDA_CHECK(cudaMemcpyAsync(&out.value, v + index, sizeof(float), cudaMemcpyDeviceToHost, stream));
  HISA_CUDA_CHECK(cudaStreamSynchronize(stream));
  return out;
}

}  // namespace

void decode_on_device(const void* codes, DeviceCodes type, int64_t n, float* out, cudaStream_t stream) {
  if (n <= 0) return;
  decode_kernel<<<blocks_for(n), kThreads, 0, stream>>>(codes, type, n, out);
  HISA_CUDA_CHECK(cudaGetLastError());
}

FirstBad first_nonfinite_on_device(const float* values, int64_t n, cudaStream_t stream) {
  return first_bad(values, n, false, stream);
}

FirstBad first_bad_scale_on_device(const float* scales, int64_t n, cudaStream_t stream) {
  return first_bad(scales, n, true, stream);
}

ExactnessFlags exactness_on_device(const float* values, int64_t n, cudaStream_t stream) {
  DeviceArray<int> flags;
  const int all[4] = {1, 1, 1, 1};
  flags.upload(all, 4, stream);
  if (n > 0) {
    exactness_kernel<<<blocks_for(n), kThreads, 0, stream>>>(values, n, flags.data());
    HISA_CUDA_CHECK(cudaGetLastError());
  }
  int got[4];
  flags.download(got, 4, stream);
  HISA_CUDA_CHECK(cudaStreamSynchronize(stream));
  return {got[0] != 0, got[1] != 0, got[2] != 0, got[3] != 0};
}

void encode_rows_on_device(ValueType t, const float* values, int64_t rows, int64_t dim, int64_t heads,
                           int64_t padded_heads, uint16_t* out, cudaStream_t stream) {
  const int64_t padded_dim = (dim + 15) / 16 * 16;
  const int64_t units = t == ValueType::E4M3 ? int64_t(kFp8Dim) : padded_dim;
  if (rows <= 0) return;
  encode_kernel<<<blocks_for(rows * units), kThreads, 0, stream>>>(t, values, rows, dim, padded_dim, heads,
                                                                      padded_heads, out);
  HISA_CUDA_CHECK(cudaGetLastError());
}

void pad_heads_on_device(const float* w, int64_t count, int64_t heads, int64_t padded_heads, float* out,
                         cudaStream_t stream) {
  if (count <= 0) return;
  pad_heads_kernel<<<blocks_for(count * padded_heads), kThreads, 0, stream>>>(w, count, heads, padded_heads, out);
  HISA_CUDA_CHECK(cudaGetLastError());
}

void pool_means_on_device(const float* k, const float* scale, int64_t count, int64_t dim, int64_t block_size,
                          float* out, cudaStream_t stream) {
  const int64_t n = (count + block_size - 1) / block_size * dim;
  if (n <= 0) return;
  pool_kernel<<<blocks_for(n), kThreads, 0, stream>>>(k, scale, count, dim, block_size, out);
  HISA_CUDA_CHECK(cudaGetLastError());
}

void gather_rows_on_device(const float* src, int64_t row_elems, const int64_t* rows, int64_t n, float* dst,
                           cudaStream_t stream) {
  if (n <= 0 || row_elems <= 0) return;
  gather_kernel<<<blocks_for(n * row_elems), kThreads, 0, stream>>>(src, row_elems, rows, n, dst);
  HISA_CUDA_CHECK(cudaGetLastError());
}

}  // namespace hisa::cuda
