#pragma once
// Large buffers filled right after they are allocated (a layer's keys, a batch's queries): asked to be backed by
// transparent huge pages, which the kernel grants on request in its default "madvise" mode. Filling 16 MiB then
// takes 8 page faults instead of 4,096; page faults are costly on virtual machines and, taken by a reader
// thread, slow the threads computing beside it.
#include <cstddef>
#include <cstdlib>
#include <memory>
#include <vector>

namespace hisa {

// madvise(MADV_HUGEPAGE) on the 2 MiB-aligned pages inside [p, p + bytes); nothing where that is not possible.
void advise_huge_pages(void* p, size_t bytes);

// v.resize(n), with storage newly allocated for it (when it grows) advised before anything touches it.
template <typename T>
void resize_on_huge_pages(std::vector<T>& v, size_t n) {
  if (n > v.capacity()) {
    std::vector<T> fresh;
    fresh.reserve(n);  // a large reservation is fresh, untouched memory
    advise_huge_pages(fresh.data(), n * sizeof(T));
    fresh.assign(v.begin(), v.end());
    v.swap(fresh);
  }
  v.resize(n);
}

// Uninitialised bytes on whole, advised 2 MiB pages (a buffer refilled again and again, such as a reader's raw
// bytes): storage aligned to and rounded up to 2 MiB, so that every page of it can be huge, which an allocation
// by new, starting just past malloc's header, never fully is. Grows by reallocation (contents not kept).
class HugePageBuffer {
 public:
  // At least `bytes` bytes, their contents undefined.
  std::byte* reserve(size_t bytes);
  size_t capacity() const { return capacity_; }

 private:
  struct Free {
    void operator()(std::byte* p) const { std::free(p); }
  };
  std::unique_ptr<std::byte[], Free> bytes_;
  size_t capacity_ = 0;
};

}  // namespace hisa
