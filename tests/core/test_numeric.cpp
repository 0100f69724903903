// Element decoders and encoders (src/core/numeric.hpp) against hand-computed values, plus exhaustive
// round trips over every code.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "core/numeric.hpp"

namespace hisa {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Exact equality that also tells +0 from -0.
::testing::AssertionResult SameFloat(float expected, float actual) {
  if (std::bit_cast<uint32_t>(expected) == std::bit_cast<uint32_t>(actual)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "expected " << std::hexfloat << expected << ", got " << actual;
}

// ---------------------------------------------------------------------------------------------------------
// bfloat16: sign 15, exponent 7-14 (bias 127), mantissa 0-6; the top half of a float32.

TEST(Bf16Decode, HandComputedValues) {
  EXPECT_TRUE(SameFloat(0.0f, bf16_to_float(0x0000)));
  EXPECT_TRUE(SameFloat(-0.0f, bf16_to_float(0x8000)));
  EXPECT_TRUE(SameFloat(1.0f, bf16_to_float(0x3F80)));
  EXPECT_TRUE(SameFloat(-1.0f, bf16_to_float(0xBF80)));
  EXPECT_TRUE(SameFloat(3.140625f, bf16_to_float(0x4049)));  // 1.1001001b * 2
  EXPECT_TRUE(SameFloat(-10.0f, bf16_to_float(0xC120)));
  EXPECT_TRUE(SameFloat(0x1p-126f, bf16_to_float(0x0080)));  // smallest normal
}

TEST(Bf16Decode, Subnormals) {
  EXPECT_TRUE(SameFloat(0x1p-133f, bf16_to_float(0x0001)));        // smallest: 2^-126 * 2^-7
  EXPECT_TRUE(SameFloat(127 * 0x1p-133f, bf16_to_float(0x007F)));  // largest
  EXPECT_TRUE(SameFloat(-0x1p-133f, bf16_to_float(0x8001)));
}

TEST(Bf16Decode, MaxInfinityNaN) {
  EXPECT_TRUE(SameFloat(0x1.FEp127f, bf16_to_float(0x7F7F)));  // (2 - 2^-7) * 2^127
  EXPECT_FLOAT_EQ(3.3895314e38f, bf16_to_float(0x7F7F));
  EXPECT_TRUE(SameFloat(-0x1.FEp127f, bf16_to_float(0xFF7F)));
  EXPECT_TRUE(SameFloat(kInf, bf16_to_float(0x7F80)));
  EXPECT_TRUE(SameFloat(-kInf, bf16_to_float(0xFF80)));
  EXPECT_TRUE(std::isnan(bf16_to_float(0x7FC0)));
  EXPECT_TRUE(std::isnan(bf16_to_float(0x7F81)));  // signalling NaN pattern
  EXPECT_TRUE(std::isnan(bf16_to_float(0xFFC0)));
}

TEST(Bf16Encode, RoundsToNearestTiesToEven) {
  EXPECT_EQ(0x3F80, float_to_bf16(1.0f));
  EXPECT_EQ(0x3F80, float_to_bf16(1.0f + 0x1p-8f));             // halfway 1 .. 1+2^-7: even is 1
  EXPECT_EQ(0x3F82, float_to_bf16(1.0f + 3 * 0x1p-8f));         // halfway 1+2^-7 .. 1+2^-6: even is the upper
  EXPECT_EQ(0x3F81, float_to_bf16(1.0f + 0x1p-8f + 0x1p-20f));  // just above halfway
  EXPECT_EQ(0x3F80, float_to_bf16(1.0f + 0x1p-8f - 0x1p-20f));  // just below halfway
  EXPECT_EQ(0xBF82, float_to_bf16(-(1.0f + 3 * 0x1p-8f)));
  EXPECT_EQ(0x8000, float_to_bf16(-0.0f));
  EXPECT_EQ(0x0001, float_to_bf16(0x1p-133f));
  EXPECT_EQ(0x0000, float_to_bf16(0x1p-134f));  // half the smallest subnormal: tie to even (zero)
}

TEST(Bf16Encode, OverflowInfinityAndNaN) {
  EXPECT_EQ(0x7F7F, float_to_bf16(0x1.FEp127f));
  EXPECT_EQ(0x7F7F, float_to_bf16(0x1.FEFFFEp127f));  // below the halfway point to infinity
  EXPECT_EQ(0x7F80, float_to_bf16(0x1.FFp127f));      // halfway: max is odd, so it rounds to infinity
  EXPECT_EQ(0x7F80, float_to_bf16(std::numeric_limits<float>::max()));
  EXPECT_EQ(0xFF80, float_to_bf16(-std::numeric_limits<float>::max()));
  EXPECT_EQ(0x7F80, float_to_bf16(kInf));
  EXPECT_EQ(0xFF80, float_to_bf16(-kInf));
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  // A NaN whose payload sits only in the low 16 bits must not become infinity.
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(std::bit_cast<float>(0x7F800001u)))));
}

TEST(Bf16RoundTrip, EveryFiniteCodeDecodesAndReencodesToItself) {
  int checked = 0;
  for (uint32_t c = 0; c <= 0xFFFF; ++c) {
    const uint16_t code = uint16_t(c);
    if (((code >> 7) & 0xFF) == 0xFF) continue;  // infinities and NaNs
    ASSERT_EQ(code, float_to_bf16(bf16_to_float(code))) << std::hex << "code 0x" << c;
    ++checked;
  }
  EXPECT_EQ(65536 - 2 * 128, checked);
}

// ---------------------------------------------------------------------------------------------------------
// float16: sign 15, exponent 10-14 (bias 15), mantissa 0-9.

TEST(F16Decode, HandComputedValues) {
  EXPECT_TRUE(SameFloat(0.0f, f16_to_float(0x0000)));
  EXPECT_TRUE(SameFloat(-0.0f, f16_to_float(0x8000)));
  EXPECT_TRUE(SameFloat(1.0f, f16_to_float(0x3C00)));
  EXPECT_TRUE(SameFloat(-2.0f, f16_to_float(0xC000)));
  EXPECT_TRUE(SameFloat(0.333251953125f, f16_to_float(0x3555)));
  EXPECT_TRUE(SameFloat(0.5f + 0x1p-11f, f16_to_float(0x3801)));
  EXPECT_TRUE(SameFloat(0x1p-14f, f16_to_float(0x0400)));  // smallest normal
}

TEST(F16Decode, Subnormals) {
  EXPECT_TRUE(SameFloat(0x1p-24f, f16_to_float(0x0001)));  // smallest: 5.96e-8
  EXPECT_FLOAT_EQ(5.9604645e-8f, f16_to_float(0x0001));
  EXPECT_TRUE(SameFloat(1023 * 0x1p-24f, f16_to_float(0x03FF)));  // largest
  EXPECT_TRUE(SameFloat(-0x1p-24f, f16_to_float(0x8001)));
  EXPECT_TRUE(SameFloat(512 * 0x1p-24f, f16_to_float(0x0200)));
}

TEST(F16Decode, MaxInfinityNaN) {
  EXPECT_TRUE(SameFloat(65504.0f, f16_to_float(0x7BFF)));
  EXPECT_TRUE(SameFloat(-65504.0f, f16_to_float(0xFBFF)));
  EXPECT_TRUE(SameFloat(kInf, f16_to_float(0x7C00)));
  EXPECT_TRUE(SameFloat(-kInf, f16_to_float(0xFC00)));
  EXPECT_TRUE(std::isnan(f16_to_float(0x7E00)));
  EXPECT_TRUE(std::isnan(f16_to_float(0x7C01)));
  EXPECT_TRUE(std::isnan(f16_to_float(0xFFFF)));
}

TEST(F16Encode, RoundsToNearestTiesToEven) {
  EXPECT_EQ(0x3C00, float_to_f16(1.0f));
  EXPECT_EQ(0x3C00, float_to_f16(1.0f + 0x1p-11f));      // halfway 1 .. 1+2^-10: even is 1
  EXPECT_EQ(0x3C02, float_to_f16(1.0f + 3 * 0x1p-11f));  // halfway 1+2^-10 .. 1+2^-9: even is the upper
  EXPECT_EQ(0x3C01, float_to_f16(1.0f + 0x1p-11f + 0x1p-20f));
  EXPECT_EQ(0xBC02, float_to_f16(-(1.0f + 3 * 0x1p-11f)));
  EXPECT_EQ(0x8000, float_to_f16(-0.0f));
  EXPECT_EQ(0x3555, float_to_f16(1.0f / 3.0f));
}

TEST(F16Encode, SubnormalRounding) {
  EXPECT_EQ(0x0001, float_to_f16(0x1p-24f));
  EXPECT_EQ(0x0000, float_to_f16(0x1p-25f));              // half the smallest subnormal: tie to even (zero)
  EXPECT_EQ(0x0001, float_to_f16(0x1p-25f + 0x1p-40f));   // just above half
  EXPECT_EQ(0x0002, float_to_f16(3 * 0x1p-25f));          // 1.5 quanta: tie to even (2)
  EXPECT_EQ(0x8000, float_to_f16(-0x1p-26f));             // underflow keeps the sign
  EXPECT_EQ(0x0400, float_to_f16(1023.5f * 0x1p-24f));    // tie between largest subnormal and smallest normal
  EXPECT_EQ(0x03FF, float_to_f16(1023.25f * 0x1p-24f));
}

TEST(F16Encode, OverflowGoesToInfinity) {
  EXPECT_EQ(0x7BFF, float_to_f16(65504.0f));
  EXPECT_EQ(0x7BFF, float_to_f16(65519.0f));   // below the halfway point 65520
  EXPECT_EQ(0x7C00, float_to_f16(65520.0f));   // halfway: max is odd, so it rounds to infinity
  EXPECT_EQ(0x7C00, float_to_f16(1.0e6f));
  EXPECT_EQ(0xFC00, float_to_f16(-1.0e6f));
  EXPECT_EQ(0x7C00, float_to_f16(std::numeric_limits<float>::max()));
  EXPECT_EQ(0x7C00, float_to_f16(kInf));
  EXPECT_EQ(0xFC00, float_to_f16(-kInf));
  EXPECT_TRUE(std::isnan(f16_to_float(float_to_f16(std::numeric_limits<float>::quiet_NaN()))));
}

TEST(F16RoundTrip, EveryFiniteCodeDecodesAndReencodesToItself) {
  int checked = 0;
  for (uint32_t c = 0; c <= 0xFFFF; ++c) {
    const uint16_t code = uint16_t(c);
    if (((code >> 10) & 0x1F) == 0x1F) continue;  // infinities and NaNs
    ASSERT_EQ(code, float_to_f16(f16_to_float(code))) << std::hex << "code 0x" << c;
    ++checked;
  }
  EXPECT_EQ(65536 - 2 * 1024, checked);
  EXPECT_EQ(0x7C00, float_to_f16(f16_to_float(0x7C00)));
  EXPECT_EQ(0xFC00, float_to_f16(f16_to_float(0xFC00)));
}

#if defined(__FLT16_MAX__) && defined(__x86_64__)
// The compiler's own _Float16 is an independent oracle: every code decodes the same, and the encoder rounds
// a sweep of float32 values the same way.
TEST(F16Oracle, MatchesCompilerFloat16) {
  for (uint32_t c = 0; c <= 0xFFFF; ++c) {
    const float expected = float(std::bit_cast<_Float16>(uint16_t(c)));
    const float got = f16_to_float(uint16_t(c));
    if (std::isnan(expected)) {
      ASSERT_TRUE(std::isnan(got)) << std::hex << c;
    } else {
      ASSERT_TRUE(SameFloat(expected, got)) << std::hex << "code 0x" << c;
    }
  }
  // Every 997th float32 bit pattern: covers normals, subnormals, overflow and both signs.
  for (uint64_t u = 0; u <= 0xFFFFFFFFull; u += 997) {
    const float x = std::bit_cast<float>(uint32_t(u));
    if (std::isnan(x)) continue;
    ASSERT_EQ(std::bit_cast<uint16_t>(_Float16(x)), float_to_f16(x)) << std::hexfloat << x;
  }
}
#endif

// ---------------------------------------------------------------------------------------------------------
// fp8 e4m3fn: sign 7, exponent 3-6 (bias 7), mantissa 0-2; no infinities; 0x7F and 0xFF are NaN; max 448.

TEST(E4m3Decode, HandComputedValues) {
  EXPECT_TRUE(SameFloat(0.0f, e4m3_to_float(0x00)));
  EXPECT_TRUE(SameFloat(-0.0f, e4m3_to_float(0x80)));
  EXPECT_TRUE(SameFloat(1.0f, e4m3_to_float(0x38)));
  EXPECT_TRUE(SameFloat(1.5f, e4m3_to_float(0x3C)));
  EXPECT_TRUE(SameFloat(2.0f, e4m3_to_float(0x40)));
  EXPECT_TRUE(SameFloat(-3.0f, e4m3_to_float(0xC4)));
  EXPECT_TRUE(SameFloat(0.9375f, e4m3_to_float(0x37)));
  EXPECT_TRUE(SameFloat(0x1p-6f, e4m3_to_float(0x08)));  // smallest normal
  EXPECT_TRUE(SameFloat(240.0f, e4m3_to_float(0x77)));
  EXPECT_TRUE(SameFloat(256.0f, e4m3_to_float(0x78)));   // exponent 15 is a normal binade in e4m3fn
}

TEST(E4m3Decode, Subnormals) {
  EXPECT_TRUE(SameFloat(0x1p-9f, e4m3_to_float(0x01)));      // smallest: 1/8 * 2^-6
  EXPECT_TRUE(SameFloat(7 * 0x1p-9f, e4m3_to_float(0x07)));  // largest
  EXPECT_TRUE(SameFloat(-0x1p-9f, e4m3_to_float(0x81)));
  EXPECT_TRUE(SameFloat(-7 * 0x1p-9f, e4m3_to_float(0x87)));
  EXPECT_TRUE(SameFloat(3 * 0x1p-9f, e4m3_to_float(0x03)));
}

TEST(E4m3Decode, MaxAndNaNCodes) {
  EXPECT_TRUE(SameFloat(448.0f, e4m3_to_float(0x7E)));
  EXPECT_TRUE(SameFloat(-448.0f, e4m3_to_float(0xFE)));
  EXPECT_TRUE(std::isnan(e4m3_to_float(0x7F)));
  EXPECT_TRUE(std::isnan(e4m3_to_float(0xFF)));
  int nan_codes = 0, inf_codes = 0;
  for (int c = 0; c < 256; ++c) {
    nan_codes += std::isnan(e4m3_to_float(uint8_t(c)));
    inf_codes += std::isinf(e4m3_to_float(uint8_t(c)));
  }
  EXPECT_EQ(2, nan_codes);
  EXPECT_EQ(0, inf_codes);
}

TEST(E4m3Decode, PositiveCodesAreStrictlyIncreasing) {
  for (int c = 1; c <= 0x7E; ++c) {
    EXPECT_LT(e4m3_to_float(uint8_t(c - 1)), e4m3_to_float(uint8_t(c))) << "code " << c;
    EXPECT_TRUE(SameFloat(-e4m3_to_float(uint8_t(c)), e4m3_to_float(uint8_t(c | 0x80)))) << "code " << c;
  }
}

TEST(E4m3Encode, RoundsToNearestTiesToEven) {
  EXPECT_EQ(0x38, float_to_e4m3(1.0f));
  EXPECT_EQ(0x38, float_to_e4m3(1.0625f));  // halfway 1 .. 1.125: even is 1
  EXPECT_EQ(0x3A, float_to_e4m3(1.1875f));  // halfway 1.125 .. 1.25: even is 1.25
  EXPECT_EQ(0x39, float_to_e4m3(1.07f));
  EXPECT_EQ(0xBA, float_to_e4m3(-1.1875f));
  EXPECT_EQ(0x80, float_to_e4m3(-0.0f));
  EXPECT_EQ(0x76, float_to_e4m3(232.0f));  // halfway 224 .. 240: even is 224 (mantissa 6)
}

TEST(E4m3Encode, SubnormalRounding) {
  EXPECT_EQ(0x01, float_to_e4m3(0x1p-9f));
  EXPECT_EQ(0x00, float_to_e4m3(0x1p-10f));             // half the smallest subnormal: tie to even (zero)
  EXPECT_EQ(0x01, float_to_e4m3(0x1p-10f + 0x1p-14f));  // just above half
  EXPECT_EQ(0x02, float_to_e4m3(3 * 0x1p-10f));         // 1.5 quanta: tie to even (2)
  EXPECT_EQ(0x80, float_to_e4m3(-0x1p-12f));            // underflow keeps the sign
  EXPECT_EQ(0x08, float_to_e4m3(15 * 0x1p-10f));        // tie between 7*2^-9 and 2^-6: even is 2^-6
  EXPECT_EQ(0x07, float_to_e4m3(14.5f * 0x1p-10f));
}

TEST(E4m3Encode, SaturatesToMax) {
  EXPECT_EQ(0x7E, float_to_e4m3(448.0f));
  EXPECT_EQ(0x7E, float_to_e4m3(449.0f));
  EXPECT_EQ(0x7E, float_to_e4m3(464.0f));  // halfway to the (NaN) code above: still 448
  EXPECT_EQ(0x7E, float_to_e4m3(1.0e9f));
  EXPECT_EQ(0xFE, float_to_e4m3(-1.0e9f));
  EXPECT_EQ(0x7E, float_to_e4m3(kInf));
  EXPECT_EQ(0xFE, float_to_e4m3(-kInf));
  EXPECT_EQ(0x7F, float_to_e4m3(std::numeric_limits<float>::quiet_NaN()));
  EXPECT_EQ(0x7E, float_to_e4m3(440.0f));  // halfway 416 .. 448 -> 448 (mantissa 6 is even)
  EXPECT_EQ(0x7D, float_to_e4m3(420.0f));
}

TEST(E4m3RoundTrip, EveryCodeExceptNaNDecodesAndReencodesToItself) {
  int checked = 0;
  for (int c = 0; c < 256; ++c) {
    if (c == 0x7F || c == 0xFF) continue;
    ASSERT_EQ(c, float_to_e4m3(e4m3_to_float(uint8_t(c)))) << "code " << c;
    ++checked;
  }
  EXPECT_EQ(254, checked);
}

// Rounding agrees with a brute-force nearest search over all codes (ties to the even code).
TEST(E4m3Encode, MatchesBruteForceNearest) {
  for (float x = -500.0f; x <= 500.0f; x += 0.0625f) {
    int best = -1;
    float best_err = kInf;
    for (int c = 0; c < 256; ++c) {
      if (c == 0x7F || c == 0xFF) continue;
      const float v = e4m3_to_float(uint8_t(c));
      const float err = std::fabs(v - x);
      if (err < best_err || (err == best_err && (c & 1) == 0 && (best & 1) == 1)) {
        best = c;
        best_err = err;
      }
    }
    // Zero has two codes; the encoder keeps x's sign.
    if (e4m3_to_float(uint8_t(best)) == 0.0f) best = std::signbit(x) ? 0x80 : 0x00;
    ASSERT_EQ(best, float_to_e4m3(x)) << x;
  }
}

// ---------------------------------------------------------------------------------------------------------

TEST(ElementTypes, NamesSizesAndRoundTo) {
  EXPECT_EQ(ElementType::BF16, parse_element_type("bfloat16"));
  EXPECT_EQ(ElementType::FP8_E4M3, parse_element_type("float8_e4m3fn"));
  EXPECT_EQ(ElementType::F16, parse_element_type("f16"));
  EXPECT_EQ(std::nullopt, parse_element_type("float8_e5m2"));
  for (ElementType t : {ElementType::F32, ElementType::F16, ElementType::BF16, ElementType::FP8_E4M3}) {
    EXPECT_EQ(t, parse_element_type(element_type_name(t)));
  }
  EXPECT_EQ(4, element_size(ElementType::F32));
  EXPECT_EQ(2, element_size(ElementType::BF16));
  EXPECT_EQ(1, element_size(ElementType::FP8_E4M3));
  EXPECT_EQ(448.0f, round_to(ElementType::FP8_E4M3, 1000.0f));
  EXPECT_EQ(1.0f, round_to(ElementType::BF16, 1.0f + 0x1p-8f));
  EXPECT_EQ(kInf, round_to(ElementType::F16, 70000.0f));
  EXPECT_EQ(0.1f, round_to(ElementType::F32, 0.1f));
}

}  // namespace
}  // namespace hisa

namespace hisa {
namespace {

// e2m1 (DeepSeek-V4's FP4): every code, then encoding with ties to even and saturation.
TEST(NumericFp4, EveryE2m1CodeDecodes) {
  const float magnitudes[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  for (uint8_t code = 0; code < 16; ++code) {
    const float want = code & 0x8u ? -magnitudes[code & 0x7u] : magnitudes[code & 0x7u];
    EXPECT_EQ(e2m1_to_float(code), want) << int(code);
    EXPECT_EQ(std::signbit(e2m1_to_float(code)), bool(code & 0x8u)) << int(code);
    // Only the low nibble counts.
    EXPECT_EQ(e2m1_to_float(uint8_t(code | 0xF0u)), want);
    if (code != 0x8u) {  // -0 encodes as 0x8 too
      EXPECT_EQ(float_to_e2m1(want), code) << want;
    }
  }
  EXPECT_EQ(float_to_e2m1(-0.0f), 0x8u);
}

TEST(NumericFp4, EncodingRoundsToNearestEvenAndSaturates) {
  EXPECT_EQ(e2m1_to_float(float_to_e2m1(0.25f)), 0.0f);   // tie between 0 and 0.5: the even 0
  EXPECT_EQ(e2m1_to_float(float_to_e2m1(0.26f)), 0.5f);
  EXPECT_EQ(e2m1_to_float(float_to_e2m1(0.75f)), 1.0f);   // tie between 0.5 and 1: 1 (mantissa 0)
  EXPECT_EQ(e2m1_to_float(float_to_e2m1(1.25f)), 1.0f);   // tie between 1 and 1.5
  EXPECT_EQ(e2m1_to_float(float_to_e2m1(1.75f)), 2.0f);
  EXPECT_EQ(e2m1_to_float(float_to_e2m1(2.5f)), 2.0f);
  EXPECT_EQ(e2m1_to_float(float_to_e2m1(3.5f)), 4.0f);
  EXPECT_EQ(e2m1_to_float(float_to_e2m1(5.0f)), 4.0f);    // tie between 4 and 6: 4
  EXPECT_EQ(e2m1_to_float(float_to_e2m1(5.01f)), 6.0f);
  EXPECT_EQ(e2m1_to_float(float_to_e2m1(1e9f)), 6.0f);
  EXPECT_EQ(e2m1_to_float(float_to_e2m1(-7.0f)), -6.0f);
  EXPECT_EQ(float_to_e2m1(std::numeric_limits<float>::quiet_NaN()), 0u);
  EXPECT_EQ(round_to(ElementType::FP4_E2M1, -2.9f), -3.0f);
  EXPECT_EQ(element_type_name(ElementType::FP4_E2M1), "fp4");
  EXPECT_EQ(parse_element_type("float4_e2m1fn_x2"), ElementType::FP4_E2M1);
}

TEST(NumericFp4, Ue8m0ScalesAndTheBlockScaleKeepRepresentableBlocks) {
  EXPECT_EQ(ue8m0_to_float(127), 1.0f);
  EXPECT_EQ(ue8m0_to_float(0), std::ldexp(1.0f, -127));
  EXPECT_EQ(ue8m0_to_float(254), std::ldexp(1.0f, 127));
  EXPECT_TRUE(std::isnan(ue8m0_to_float(255)));
  EXPECT_EQ(e2m1_block_scale(0.0f), 127);
  EXPECT_EQ(e2m1_block_scale(6.0f), 127);
  EXPECT_EQ(e2m1_block_scale(6.5f), 128);
  EXPECT_EQ(e2m1_block_scale(3.0f), 126);
  // Any block of values code · 2^k keeps every value exactly under the scale chosen for it.
  for (int k = -20; k <= 20; k += 5) {
    for (uint8_t top = 1; top < 8; ++top) {
      std::vector<float> block;
      for (uint8_t c = 0; c <= top; ++c) block.push_back(std::ldexp(e2m1_to_float(c), k));
      const float scale = ue8m0_to_float(e2m1_block_scale(block.back()));
      for (float v : block) EXPECT_EQ(e2m1_to_float(float_to_e2m1(v / scale)) * scale, v) << "k " << k << " top " << int(top);
    }
  }
}

}  // namespace
}  // namespace hisa
