// Transparent huge pages on request (huge_pages.hpp).
#include "core/huge_pages.hpp"

#include <cstdint>
#include <new>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace hisa {

namespace {
constexpr size_t kHugePage = size_t(2) << 20;  // a transparent huge page on x86-64 and arm64 (4 KiB base pages)
}  // namespace

void advise_huge_pages(void* p, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + kHugePage - 1) & ~uintptr_t(kHugePage - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + bytes) & ~uintptr_t(kHugePage - 1);
  // Advice only: a kernel without THP, or a range it declines, leaves ordinary pages.
  if (p != nullptr && end > begin) (void)madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)p;
  (void)bytes;
#endif
}

std::byte* HugePageBuffer::reserve(size_t bytes) {
  if (bytes <= capacity_) return bytes_.get();
  if (bytes > SIZE_MAX - kHugePage) throw std::bad_alloc();
  const size_t rounded = (bytes + kHugePage - 1) / kHugePage * kHugePage;
  auto* p = static_cast<std::byte*>(std::aligned_alloc(kHugePage, rounded));
  if (p == nullptr) throw std::bad_alloc();
  advise_huge_pages(p, rounded);
  bytes_.reset(p);
  capacity_ = rounded;
  return p;
}

}  // namespace hisa
