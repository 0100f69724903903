// The streaming-store row writers give what plain code gives, aligned or not, at every length.
#include "core/streaming_rows.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <climits>
#include <cmath>
#include <string>
#include <cstdint>
#include <random>
#include <vector>

namespace hisa {
namespace {

int64_t round16(int64_t n) { return (n + 15) / 16 * 16; }

// Values exact in bf16 (lower 16 bits zero), of both signs and many magnitudes.
std::vector<float> bf16_values(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> gauss(0.0f, 100.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = std::bit_cast<float>(std::bit_cast<uint32_t>(gauss(rng)) & 0xFFFF0000u);
  return v;
}

TEST(StreamingRows, Bf16CodesAreTheUpperHalvesZeroPaddedAtEveryLengthAndAlignment) {
  for (int64_t n : {0, 1, 7, 15, 16, 17, 40, 128, 129}) {
    for (int64_t offset : {0, 1}) {  // 1: a 2-byte offset, not 32-byte aligned
      SCOPED_TRACE("n " + std::to_string(n) + " offset " + std::to_string(offset));
      const int64_t units = round16(n) + (n == 0 ? 16 : 0);
      std::vector<float> v = bf16_values(n, uint32_t(n));
      alignas(32) uint16_t buffer[160 + 16];
      std::fill(std::begin(buffer), std::end(buffer), uint16_t(0xABCD));
      uint16_t* out = buffer + offset;
      EXPECT_TRUE(bf16_codes_row(v.data(), n, units, out));
      finish_streaming_stores();
      for (int64_t d = 0; d < n; ++d) ASSERT_EQ(out[d], uint16_t(std::bit_cast<uint32_t>(v[size_t(d)]) >> 16)) << d;
      for (int64_t d = n; d < units; ++d) ASSERT_EQ(out[d], 0) << d;
      EXPECT_EQ(out[units], 0xABCD);  // nothing past the row
    }
  }
}

TEST(StreamingRows, OneValueOffTheBf16GridAnywhereIsReported) {
  for (int64_t n : {1, 16, 40, 128}) {
    for (int64_t at = 0; at < n; ++at) {
      std::vector<float> v = bf16_values(n, 7);
      v[size_t(at)] = std::nextafter(1.0f, 2.0f);  // 1 + 2^-23: its lower half is 1
      alignas(32) uint16_t out[128];
      EXPECT_FALSE(bf16_codes_row(v.data(), n, round16(n), out)) << "n " << n << " at " << at;
      finish_streaming_stores();
      EXPECT_EQ(out[at], 0x3F80);  // still its upper half
    }
  }
}

TEST(StreamingRows, CopyUnitsCopiesThenZeroPadsAtEveryLengthAndAlignment) {
  std::vector<uint16_t> src(48);
  for (size_t i = 0; i < src.size(); ++i) src[i] = uint16_t(0x8000u + i * 977u);
  for (int64_t n : {0, 1, 15, 16, 17, 31, 32, 48}) {
    for (int64_t units : {n, (n + 15) / 16 * 16, int64_t(48)}) {
      for (int64_t offset : {0, 1}) {  // aligned (streaming stores) and not (plain copies)
        alignas(32) uint16_t buffer[48 + 2];
        std::fill(std::begin(buffer), std::end(buffer), uint16_t(7));
        copy_units(src.data(), n, units, buffer + offset);
        finish_streaming_stores();
        SCOPED_TRACE("n " + std::to_string(n) + " units " + std::to_string(units) + " offset " + std::to_string(offset));
        for (int64_t d = 0; d < n; ++d) ASSERT_EQ(buffer[offset + d], src[size_t(d)]);
        for (int64_t d = n; d < units; ++d) ASSERT_EQ(buffer[offset + d], 0);
        EXPECT_EQ(buffer[offset + units], 7);  // nothing past the row
      }
    }
  }
}

TEST(StreamingRows, ZeroUnits) {
  alignas(32) uint16_t buffer[64 + 1];
  for (int64_t offset : {0, 1}) {
    std::fill(std::begin(buffer), std::end(buffer), uint16_t(7));
    zero_units(buffer + offset, 48);
    finish_streaming_stores();
    for (int64_t d = 0; d < 48; ++d) ASSERT_EQ(buffer[offset + d], 0);
    EXPECT_EQ(buffer[offset + 48], 7);
  }
}

TEST(StreamingRows, WidenRowCopiesEveryValueAtEveryLengthAndStart) {
  std::vector<int32_t> src(64);
  for (size_t i = 0; i < src.size(); ++i) src[i] = int32_t(i) * 1000003 * (i % 2 ? -1 : 1);
  src[5] = -1;
  src[6] = INT32_MIN;
  for (int64_t n : {0, 1, 3, 4, 5, 31, 64}) {
    for (int64_t start = 0; start < 4; ++start) {
      alignas(32) int64_t buffer[64 + 8];
      std::fill(std::begin(buffer), std::end(buffer), int64_t(99));
      widen_row(src.data(), n, buffer + start);
      finish_streaming_stores();
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(buffer[start + i], int64_t(src[size_t(i)])) << n << " " << start << " " << i;
      EXPECT_EQ(buffer[start + n], 99);
    }
  }
}

}  // namespace
}  // namespace hisa
