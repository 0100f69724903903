// Transparent huge pages on request (huge_pages.hpp).
#include "core/huge_pages.hpp"

#include <cstdint>
#include <new>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace hisa {

void advise_huge_pages(void* p, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(kHuge - 1);
  // Advice only: a kernel without THP, or a range it declines, leaves ordinary pages.
  if (p != nullptr && end > begin) (void)madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)p;
  (void)bytes;
#endif
}

std::byte* HugePageBuffer::reserve(size_t bytes) {
  if (bytes <= capacity_) return bytes_.get();
  constexpr size_t kHuge = size_t(2) << 20;
  if (bytes > SIZE_MAX - kHuge) throw std::bad_alloc();
  const size_t rounded = (bytes + kHuge - 1) / kHuge * kHuge;
  auto* p = static_cast<std::byte*>(std::aligned_alloc(kHuge, rounded));
  if (p == nullptr) throw std::bad_alloc();
  advise_huge_pages(p, rounded);
  bytes_.reset(p);
  capacity_ = rounded;
  return p;
}

}  // namespace hisa
