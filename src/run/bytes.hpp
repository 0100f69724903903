#pragma once
// A plain binary encoding for unit results: what workers hand to the merge, what checkpoints store and what MPI
// ranks send to rank 0. Values are copied byte for byte (same machine type on every rank), so a result read
// back is bit-identical to the one written.
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace hisa {

class ByteWriter {
 public:
  template <typename T>
  void put(const T& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    out_.append(reinterpret_cast<const char*>(&v), sizeof(T));
  }
  template <typename T>
  void put_vector(const std::vector<T>& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    put<uint64_t>(v.size());
    out_.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
  }
  void put_string(const std::string& s) {
    put<uint64_t>(s.size());
    out_.append(s);
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

// Reads what ByteWriter wrote; std::runtime_error when the bytes run out (a truncated or foreign blob).
class ByteReader {
 public:
  explicit ByteReader(const std::string& bytes) : data_(bytes.data()), left_(bytes.size()) {}
  template <typename T>
  T get() {
    static_assert(std::is_trivially_copyable_v<T>);
    T v;
    std::memcpy(&v, take(sizeof(T)), sizeof(T));
    return v;
  }
  template <typename T>
  std::vector<T> get_vector() {
    const uint64_t n = get<uint64_t>();
    if (n > left_ / (sizeof(T) > 0 ? sizeof(T) : 1)) throw std::runtime_error("unit result: truncated");
    std::vector<T> v(n);
    if (n > 0) std::memcpy(v.data(), take(n * sizeof(T)), n * sizeof(T));
    return v;
  }
  std::string get_string() {
    const uint64_t n = get<uint64_t>();
    if (n > left_) throw std::runtime_error("unit result: truncated");
    return std::string(take(n), n);
  }
  bool done() const { return left_ == 0; }

 private:
  const char* take(size_t n) {
    if (n > left_) throw std::runtime_error("unit result: truncated");
    const char* p = data_;
    data_ += n;
    left_ -= n;
    return p;
  }
  const char* data_;
  size_t left_;
};

}  // namespace hisa
