#pragma once
// Large buffers filled right after they are allocated (a layer's keys, a batch's queries): asked to be backed by
// transparent huge pages, which the kernel grants on request in its default "madvise" mode. Filling 16 MiB then
// takes 8 page faults instead of 4,096; page faults are costly on virtual machines and, taken by a reader
// thread, slow the threads computing beside it.
#include <cstddef>
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

}  // namespace hisa
