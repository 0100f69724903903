#pragma once
// Rows written for another reader than this CPU: the bf16 codes the copy engine uploads, the selections a caller
// reads later. With AVX2 they are written by streaming (non-temporal) stores, which skip the cache and so do
// not first read every destination line from memory: for select()'s host work, which is bound by memory
// traffic, that is a quarter to half of it. Without AVX2 (or on unaligned rows) plain stores give the same values.
#include <cstdint>

namespace hisa {

// The bf16 codes of v[0, n) (the upper half of each value's bits, as encode() gives for BF16) into out[0, n),
// and zeros into out[n, units). Returns whether every value is exact in bf16 (its lower half zero).
bool bf16_codes_row(const float* v, int64_t n, int64_t units, uint16_t* out);
// src[0, n) into out[0, n), and zeros into out[n, units): codes that are already 16-bit.
void copy_units(const uint16_t* src, int64_t n, int64_t units, uint16_t* out);
// out[0, units) = 0.
void zero_units(uint16_t* out, int64_t units);
// dst[i] = src[i] for i < n, widened to 64 bits.
void widen_row(const int32_t* src, int64_t n, int64_t* dst);
// Makes this thread's streaming stores visible to later reads, by any reader (call before the copy or the
// caller reads them; each thread that wrote calls it).
void finish_streaming_stores();

}  // namespace hisa
