#include "core/numeric.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>

namespace hisa {

std::string_view element_type_name(ElementType t) {
  switch (t) {
    case ElementType::F32: return "f32";
    case ElementType::F16: return "f16";
    case ElementType::BF16: return "bf16";
    case ElementType::FP8_E4M3: return "fp8";
    case ElementType::FP4_E2M1: return "fp4";
  }
  return "?";
}

std::optional<ElementType> parse_element_type(std::string_view name) {
  if (name == "f32" || name == "float32") return ElementType::F32;
  if (name == "f16" || name == "float16") return ElementType::F16;
  if (name == "bf16" || name == "bfloat16") return ElementType::BF16;
  if (name == "fp8" || name == "float8_e4m3fn" || name == "e4m3") return ElementType::FP8_E4M3;
  if (name == "fp4" || name == "float4_e2m1fn_x2" || name == "e2m1") return ElementType::FP4_E2M1;
  return std::nullopt;
}

int element_size(ElementType t) {
  switch (t) {
    case ElementType::F32: return 4;
    case ElementType::F16:
    case ElementType::BF16: return 2;
    case ElementType::FP8_E4M3:
    case ElementType::FP4_E2M1: return 1;
  }
  return 0;
}

float bf16_to_float(uint16_t bits) { return std::bit_cast<float>(uint32_t(bits) << 16); }

float f16_to_float(uint16_t bits) {
  const uint32_t sign = (bits >> 15) & 1u, exponent = (bits >> 10) & 0x1Fu, mantissa = bits & 0x3FFu;
  float magnitude;
  if (exponent == 0) {
    magnitude = std::ldexp(float(mantissa), -24);  // subnormal (or zero)
  } else if (exponent == 31) {
    magnitude = mantissa ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
  } else {
    magnitude = std::ldexp(float(mantissa | 0x400u), int(exponent) - 25);
  }
  return sign ? -magnitude : magnitude;
}

float e4m3_to_float(uint8_t bits) {
  const uint32_t sign = bits >> 7, exponent = (bits >> 3) & 0xFu, mantissa = bits & 0x7u;
  float magnitude;
  if (exponent == 15 && mantissa == 7) {
    magnitude = std::numeric_limits<float>::quiet_NaN();
  } else if (exponent == 0) {
    magnitude = std::ldexp(float(mantissa), -9);  // subnormal: m/8 * 2^-6
  } else {
    magnitude = std::ldexp(float(mantissa | 0x8u), int(exponent) - 10);
  }
  return sign ? -magnitude : magnitude;
}

float e2m1_to_float(uint8_t nibble) {
  static constexpr float kMagnitude[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  const float m = kMagnitude[nibble & 0x7u];
  return nibble & 0x8u ? -m : m;
}

float ue8m0_to_float(uint8_t bits) {
  if (bits == 0xFFu) return std::numeric_limits<float>::quiet_NaN();
  return std::ldexp(1.0f, int(bits) - 127);
}

void decode_fp4_block(const uint8_t* packed, uint8_t scale, float* out) {
  const float s = ue8m0_to_float(scale);
  for (int64_t j = 0; j < kFp4BlockSize; j += 2) {
    const uint8_t pair = packed[j / 2];
    out[j] = e2m1_to_float(pair & 0xFu) * s;
    out[j + 1] = e2m1_to_float(uint8_t(pair >> 4)) * s;
  }
}

uint16_t float_to_bf16(float x) {
  uint32_t u = std::bit_cast<uint32_t>(x);
  if (std::isnan(x)) return uint16_t((u >> 16) | 0x40u);  // keep it a quiet NaN
  u += 0x7FFFu + ((u >> 16) & 1u);                          // round to nearest even
  return uint16_t(u >> 16);
}

namespace {

// Round |x| to a grid with `mantissa_bits` explicit bits, exponent >= min_exponent (subnormals below),
// ties to even. Returns the rounded magnitude as a float (exact, since the grid is coarser than float's).
float round_magnitude(float a, int mantissa_bits, int min_exponent) {
  if (a == 0.0f) return 0.0f;
  int e;
  std::frexp(a, &e);  // a = f * 2^e, f in [0.5, 1)
  int exponent = std::max(e - 1, min_exponent);
  float quantum = std::ldexp(1.0f, exponent - mantissa_bits);
  return std::nearbyint(a / quantum) * quantum;  // default rounding mode: to nearest even
}

}  // namespace

uint16_t float_to_f16(float x) {
  const uint16_t sign = std::signbit(x) ? 0x8000u : 0u;
  if (std::isnan(x)) return 0x7E00u;
  float a = round_magnitude(std::fabs(x), 10, -14);
  if (a >= 65536.0f || std::isinf(a)) return sign | 0x7C00u;  // overflow to infinity
  if (a == 0.0f) return sign;
  int e;
  std::frexp(a, &e);
  int exponent = e - 1;
  if (exponent < -14) {  // subnormal
    return sign | uint16_t(std::lround(std::ldexp(a, 24)));
  }
  uint32_t mantissa = uint32_t(std::lround(std::ldexp(a, 10 - exponent))) - 0x400u;
  return sign | uint16_t((exponent + 15) << 10) | uint16_t(mantissa);
}

uint8_t float_to_e4m3(float x) {
  const uint8_t sign = std::signbit(x) ? 0x80u : 0u;
  if (std::isnan(x)) return 0x7Fu;
  float a = std::fabs(x);
  if (a >= 448.0f) return sign | 0x7Eu;  // saturate (0x7E = 448)
  a = round_magnitude(a, 3, -6);
  if (a >= 448.0f) return sign | 0x7Eu;
  if (a == 0.0f) return sign;
  int e;
  std::frexp(a, &e);
  int exponent = e - 1;
  if (exponent < -6) return sign | uint8_t(std::lround(std::ldexp(a, 9)));  // subnormal
  uint32_t mantissa = uint32_t(std::lround(std::ldexp(a, 3 - exponent))) - 0x8u;
  return sign | uint8_t((exponent + 7) << 3) | uint8_t(mantissa);
}

uint8_t float_to_e2m1(float x) {
  if (std::isnan(x)) return 0;
  const uint8_t sign = std::signbit(x) ? 0x8u : 0u;
  const float a = std::fabs(x);
  if (a >= 6.0f) return sign | 0x7u;
  // Grid 0, 0.5 (subnormal), then 2 mantissa states per binade from 1: round_magnitude with 1 mantissa bit,
  // exponents from 0 (below 1 the grid step stays 0.5).
  const float r = round_magnitude(a, 1, 0);
  if (r >= 6.0f) return sign | 0x7u;
  for (uint8_t code = 0; code < 8; ++code) {
    if (e2m1_to_float(code) == r) return sign | code;
  }
  return sign | 0x7u;  // unreachable: every rounded magnitude below 6 is on the grid
}

uint8_t e2m1_block_scale(float amax) {
  if (!(amax > 0.0f) || std::isinf(amax)) return 127;
  int e = int(std::ceil(std::log2(double(amax) / 6.0)));
  // log2 of a ratio may land a hair off an integer: settle on the smallest e with amax / 2^e <= 6.
  while (e > -127 && double(amax) / std::ldexp(1.0, e - 1) <= 6.0) --e;
  while (double(amax) / std::ldexp(1.0, e) > 6.0) ++e;
  return uint8_t(std::clamp(e + 127, 0, 254));
}

uint8_t e2m1_block_scale(const float* block) {
  float amax = 0.0f;
  for (int64_t j = 0; j < kFp4BlockSize; ++j) amax = std::max(amax, std::fabs(block[j]));
  return e2m1_block_scale(amax);
}

float round_to(ElementType t, float x) {
  switch (t) {
    case ElementType::F32: return x;
    case ElementType::F16: return f16_to_float(float_to_f16(x));
    case ElementType::BF16: return bf16_to_float(float_to_bf16(x));
    case ElementType::FP8_E4M3: return e4m3_to_float(float_to_e4m3(x));
    case ElementType::FP4_E2M1: return e2m1_to_float(float_to_e2m1(x));
  }
  return x;
}

}  // namespace hisa
