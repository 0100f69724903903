// core/huge_pages: the advice never changes what a vector holds, and tolerates any pointer and size.
#include <gtest/gtest.h>

#include <cstdint>
#include <numeric>
#include <vector>

#include "core/huge_pages.hpp"

namespace hisa {
namespace {

TEST(HugePages, ResizeKeepsTheContentsAndZeroFillsTheRest) {
  std::vector<float> v(1000);
  std::iota(v.begin(), v.end(), 1.0f);
  const size_t n = size_t(6) << 20;  // 24 MiB: several whole 2 MiB pages inside
  resize_on_huge_pages(v, n);
  ASSERT_EQ(v.size(), n);
  for (size_t i = 0; i < 1000; ++i) ASSERT_EQ(v[i], float(i + 1));
  for (size_t i = 1000; i < n; i += 4099) ASSERT_EQ(v[i], 0.0f);
  EXPECT_EQ(v.back(), 0.0f);
  // Shrinking and growing within the capacity keep the storage.
  const float* storage = v.data();
  resize_on_huge_pages(v, 10);
  resize_on_huge_pages(v, n / 2);
  EXPECT_EQ(v.data(), storage);
  EXPECT_EQ(v[5], 6.0f);
  EXPECT_EQ(v[n / 2 - 1], 0.0f);
}

TEST(HugePages, SmallEmptyAndUnalignedRangesAreLeftAlone) {
  std::vector<uint16_t> v;
  resize_on_huge_pages(v, 0);
  EXPECT_TRUE(v.empty());
  resize_on_huge_pages(v, 3);
  EXPECT_EQ(v, (std::vector<uint16_t>{0, 0, 0}));
  advise_huge_pages(nullptr, size_t(1) << 30);
  advise_huge_pages(v.data(), 0);
  std::vector<char> bytes(size_t(5) << 20, 'x');
  advise_huge_pages(bytes.data() + 1, bytes.size() - 3);  // memory already touched: still only advice
  EXPECT_EQ(bytes[12345], 'x');
}

TEST(HugePages, BufferIsWhole2MiBPagesKeptUntilItMustGrow) {
  constexpr size_t kHuge = size_t(2) << 20;
  HugePageBuffer raw;
  EXPECT_EQ(raw.capacity(), 0u);
  std::byte* p = raw.reserve(1);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % kHuge, 0u);
  EXPECT_EQ(raw.capacity(), kHuge);
  p[kHuge - 1] = std::byte{7};  // the whole capacity is usable
  EXPECT_EQ(raw.reserve(kHuge), p);  // within the capacity: the same storage
  std::byte* q = raw.reserve(kHuge + 1);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(q) % kHuge, 0u);
  EXPECT_EQ(raw.capacity(), 2 * kHuge);
  q[0] = q[2 * kHuge - 1] = std::byte{1};
  EXPECT_EQ(raw.reserve(0), q);
}

}  // namespace
}  // namespace hisa
