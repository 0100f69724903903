#pragma once
// Element types of dumped tensors and exact conversions between them and float.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace hisa {

// FP4_E2M1: DeepSeek-V4's FP4 (e2m1, two values per byte) with one ue8m0 scale per 32 values (MX block scaling).
enum class ElementType { F32, F16, BF16, FP8_E4M3, FP4_E2M1 };

std::string_view element_type_name(ElementType t);  // "f32", "f16", "bf16", "fp8", "fp4"
std::optional<ElementType> parse_element_type(std::string_view name);
// Bytes per element; fp4 packs two values in a byte and counts 1, which keeps row-size arithmetic in whole bytes.
int element_size(ElementType t);
inline constexpr int64_t kFp4BlockSize = 32;  // values per ue8m0 scale

// Decoders are exact (every code maps to the float it denotes).
float bf16_to_float(uint16_t bits);
float f16_to_float(uint16_t bits);
float e4m3_to_float(uint8_t bits);  // e4m3fn: no infinities, 0x7F/0xFF are NaN, max ±448
float e2m1_to_float(uint8_t nibble);  // the low 4 bits: ±{0, 0.5, 1, 1.5, 2, 3, 4, 6}
float ue8m0_to_float(uint8_t bits);   // 2^(bits − 127); 0xFF is NaN
// One block of an fp4 tensor: kFp4BlockSize values from kFp4BlockSize / 2 packed bytes (the first value in each
// byte's low nibble) times the block's ue8m0 scale. The loader and `import hisa` both decode with it.
void decode_fp4_block(const uint8_t* packed, uint8_t scale, float* out);

// Encoders round to nearest, ties to even. e4m3 saturates out-of-range values to ±448 (torch's cast
// would give NaN; quantisers scale by amax/448 first, so saturation only absorbs rounding) and maps
// NaN to 0x7F.
uint16_t float_to_bf16(float x);
uint16_t float_to_f16(float x);
uint8_t float_to_e4m3(float x);
uint8_t float_to_e2m1(float x);  // saturates to ±6, NaN to 0
// The ue8m0 scale of a block whose largest magnitude is amax: the smallest power of two s with amax / s <= 6, so
// values already of the form e2m1 · 2^k keep their values exactly (1 for an all-zero block).
uint8_t e2m1_block_scale(float amax);
// The same for the kFp4BlockSize values at `block`.
uint8_t e2m1_block_scale(const float* block);

// Round-trip a float through a type: the value the dump would hold (fp4: on the e2m1 grid with scale 1, which any
// block scale the writer picks keeps).
float round_to(ElementType t, float x);

}  // namespace hisa
