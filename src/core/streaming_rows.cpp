// Streaming-store row writers (streaming_rows.hpp).
#include "core/streaming_rows.hpp"

#include <bit>
#include <cstring>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace hisa {

namespace {

#if defined(__AVX2__)
bool aligned32(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 31u) == 0; }
#endif

bool bf16_codes_plain(const float* v, int64_t n, int64_t units, uint16_t* out) {
  uint32_t low = 0;
  for (int64_t d = 0; d < n; ++d) {
    const uint32_t bits = std::bit_cast<uint32_t>(v[d]);
    out[d] = uint16_t(bits >> 16);
    low |= bits & 0xFFFFu;
  }
  for (int64_t d = n; d < units; ++d) out[d] = 0;
  return low == 0;
}

}  // namespace

bool bf16_codes_row(const float* v, int64_t n, int64_t units, uint16_t* out) {
#if defined(__AVX2__)
  if (aligned32(out) && units % 16 == 0) {
    const __m256i lower = _mm256_set1_epi32(0xFFFF);
    __m256i low = _mm256_setzero_si256();
    auto store16 = [&](const float* x, __m256i* dst) {  // 16 values to 16 codes
      const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x));
      const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 8));
      low = _mm256_or_si256(low, _mm256_and_si256(_mm256_or_si256(a, b), lower));
      // packus keeps each 128-bit lane's order (a0-3 b0-3 a4-7 b4-7); the permute restores a0-7 b0-7.
      const __m256i codes = _mm256_packus_epi32(_mm256_srli_epi32(a, 16), _mm256_srli_epi32(b, 16));
      _mm256_stream_si256(dst, _mm256_permute4x64_epi64(codes, 0xD8));
    };
    auto* dst = reinterpret_cast<__m256i*>(out);
    int64_t d = 0;
    for (; d + 16 <= n; d += 16) store16(v + d, dst + d / 16);
    if (d < n) {  // the last partial 16, zero-padded
      float tail[16] = {};
      std::memcpy(tail, v + d, size_t(n - d) * sizeof(float));
      store16(tail, dst + d / 16);
      d += 16;
    }
    zero_units(out + d, units - d);
    return _mm256_testz_si256(low, low) != 0;
  }
#endif
  return bf16_codes_plain(v, n, units, out);
}

void copy_units(const uint16_t* src, int64_t n, int64_t units, uint16_t* out) {
#if defined(__AVX2__)
  if (aligned32(out) && units % 16 == 0) {
    auto* dst = reinterpret_cast<__m256i*>(out);
    int64_t d = 0;
    for (; d + 16 <= n; d += 16) _mm256_stream_si256(dst + d / 16, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + d)));
    if (d < n) {  // the last partial 16, zero-padded
      uint16_t tail[16] = {};
      std::memcpy(tail, src + d, size_t(n - d) * sizeof(uint16_t));
      _mm256_stream_si256(dst + d / 16, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(tail)));
      d += 16;
    }
    zero_units(out + d, units - d);
    return;
  }
#endif
  std::memcpy(out, src, size_t(n) * sizeof(uint16_t));
  std::memset(out + n, 0, size_t(units - n) * sizeof(uint16_t));
}

void zero_units(uint16_t* out, int64_t units) {
#if defined(__AVX2__)
  if (aligned32(out) && units % 16 == 0) {
    for (int64_t d = 0; d < units; d += 16) _mm256_stream_si256(reinterpret_cast<__m256i*>(out + d), _mm256_setzero_si256());
    return;
  }
#endif
  std::memset(out, 0, size_t(units) * sizeof(uint16_t));
}

void widen_row(const int32_t* src, int64_t n, int64_t* dst) {
  int64_t i = 0;
#if defined(__AVX2__)
  for (; i < n && !aligned32(dst + i); ++i) dst[i] = src[i];
  for (; i + 4 <= n; i += 4) {
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    _mm256_stream_si256(reinterpret_cast<__m256i*>(dst + i), _mm256_cvtepi32_epi64(x));
  }
#endif
  for (; i < n; ++i) dst[i] = src[i];
}

void finish_streaming_stores() {
#if defined(__AVX2__)
  _mm_sfence();
#endif
}

}  // namespace hisa
