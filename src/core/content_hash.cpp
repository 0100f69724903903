#include "core/content_hash.hpp"

#include <fcntl.h>
#include <omp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <vector>

namespace hisa {

namespace {

// xxHash64's primes and round: multiply by an odd number, rotate, multiply by an odd number, each a bijection.
constexpr uint64_t kP1 = 0x9E3779B185EBCA87ull, kP2 = 0xC2B2AE3D27D4EB4Full, kP3 = 0x165667B19E3779F9ull;

uint64_t mix(uint64_t acc, uint64_t word) { return std::rotl(acc + word * kP2, 31) * kP1; }

uint64_t avalanche(uint64_t h) {
  h ^= h >> 33;
  h *= kP2;
  h ^= h >> 29;
  h *= kP3;
  return h ^ (h >> 32);
}

uint64_t load(const unsigned char* p) {
  uint64_t w;
  std::memcpy(&w, p, sizeof w);
  return w;
}

constexpr size_t kBlock = size_t(8) << 20;  // bytes per block of a file
constexpr int kMaxReaders = 8;              // reading is I/O bound beyond a few threads; 8 blocks = 64 MiB

// Reads exactly `size` bytes at `offset`; false on an error or an early end of file (errno tells which).
bool read_at(int fd, unsigned char* buf, size_t size, off_t offset) {
  while (size > 0) {
    const ssize_t n = ::pread(fd, buf, size, offset);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = EIO;  // the file became shorter while it was read
      return false;
    }
    buf += n, size -= size_t(n), offset += n;
  }
  return true;
}

}  // namespace

uint64_t hash_bytes(const void* data, size_t size, uint64_t seed) {
  const auto* p = static_cast<const unsigned char*>(data);
  // Four independent lanes keep the multipliers busy; word i goes to lane i % 4.
  uint64_t lane[4] = {seed + kP1, seed + kP2, seed + kP3, seed - kP1};
  size_t i = 0;
  for (; i + 32 <= size; i += 32) {
    for (int l = 0; l < 4; ++l) lane[l] = mix(lane[l], load(p + i + 8 * size_t(l)));
  }
  for (int l = 0; i + 8 <= size; i += 8, ++l) lane[l] = mix(lane[l], load(p + i));
  uint64_t tail = 0;  // the last 0-7 bytes, zero-padded; the length below tells the padding from zeros
  if (size > i) std::memcpy(&tail, p + i, size - i);  // an empty file's block list is a null pointer
  uint64_t h = mix(seed, uint64_t(size));
  for (uint64_t l : lane) h = mix(h, l);
  return avalanche(mix(h, tail));
}

uint64_t hash_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error(path + ": cannot open to hash its content: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    throw std::runtime_error(path + ": cannot stat: " + std::strerror(e));
  }
  const size_t size = size_t(st.st_size);
  const size_t blocks = (size + kBlock - 1) / kBlock;
  std::vector<uint64_t> block_hash(blocks);
  int error = 0;  // the first errno of any reader
  const int threads = std::max(1, std::min({kMaxReaders, omp_get_max_threads(), int(std::max<size_t>(blocks, 1))}));
#pragma omp parallel num_threads(threads)
  {
    std::unique_ptr<unsigned char[]> buf(new unsigned char[kBlock]);
#pragma omp for schedule(dynamic, 1)
    for (int64_t b = 0; b < int64_t(blocks); ++b) {
      const size_t offset = size_t(b) * kBlock, n = std::min(kBlock, size - offset);
      if (read_at(fd, buf.get(), n, off_t(offset))) {
        block_hash[size_t(b)] = hash_bytes(buf.get(), n, uint64_t(b));
      } else {
#pragma omp critical(hash_file_error)
        if (error == 0) error = errno;
      }
    }
  }
  ::close(fd);
  if (error != 0) throw std::runtime_error(path + ": cannot read to hash its content: " + std::strerror(error));
  return hash_bytes(block_hash.data(), block_hash.size() * sizeof(uint64_t), uint64_t(size));
}

}  // namespace hisa
