#pragma once
// Element types of dumped tensors and exact conversions between them and float.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace hisa {

enum class ElementType { F32, F16, BF16, FP8_E4M3 };

std::string_view element_type_name(ElementType t);  // "f32", "f16", "bf16", "fp8"
std::optional<ElementType> parse_element_type(std::string_view name);
int element_size(ElementType t);

// Decoders are exact (every code maps to the float it denotes).
float bf16_to_float(uint16_t bits);
float f16_to_float(uint16_t bits);
float e4m3_to_float(uint8_t bits);  // e4m3fn: no infinities, 0x7F/0xFF are NaN, max ±448

// Encoders round to nearest, ties to even. e4m3 saturates out-of-range values to ±448 (torch's cast
// would give NaN; quantisers scale by amax/448 first, so saturation only absorbs rounding) and maps
// NaN to 0x7F.
uint16_t float_to_bf16(float x);
uint16_t float_to_f16(float x);
uint8_t float_to_e4m3(float x);

// Round-trip a float through a type: the value the dump would hold.
float round_to(ElementType t, float x);

}  // namespace hisa
