#pragma once
// Small v1 dumps for the I/O tests: deterministic layer contents, and a reader loop that touches every value
// (what `hisa inspect --check` does), so every validation of the loader runs.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "core/numeric.hpp"
#include "io/dump_reader.hpp"
#include "io/dump_writer.hpp"

namespace hisa::test {

// Deterministic pseudo-random numbers (64-bit LCG), identical on every platform.
class Lcg {
 public:
  explicit Lcg(uint64_t seed) : state_(seed * 6364136223846793005ull + 1442695040888963407ull) {}
  uint32_t next() {
    state_ = state_ * 6364136223846793005ull + 1442695040888963407ull;
    return uint32_t(state_ >> 33);
  }
  float uniform(float lo, float hi) { return lo + (hi - lo) * float(next() & 0xFFFFFF) / float(0x1000000); }

 private:
  uint64_t state_;
};

// The values a layer of the given shape holds, already representable in its element types, so a round trip
// through the writer and the reader must give them back bit for bit.
inline LayerArrays make_layer(int64_t keys, int64_t queries, int64_t heads, int64_t dim, ElementType q_type,
                              ElementType k_type, uint64_t seed, bool with_k_start = true, int64_t ref_width = 4) {
  Lcg rng(seed);
  LayerArrays a;
  a.keys = keys;
  a.queries = queries;
  a.heads = heads;
  a.dim = dim;
  a.q_type = q_type;
  a.k_type = k_type;
  // fp8 values use the whole e4m3 range, as quantised tensors do (amax maps to 448).
  const float k_range = k_type == ElementType::FP8_E4M3 ? 448.0f : 2.0f;
  const float q_range = q_type == ElementType::FP8_E4M3 ? 448.0f : 2.0f;
  a.k.resize(size_t(keys * dim));
  for (auto& v : a.k) v = round_to(k_type, rng.uniform(-k_range, k_range));
  a.q.resize(size_t(queries * heads * dim));
  for (auto& v : a.q) v = round_to(q_type, rng.uniform(-q_range, q_range));
  a.w.resize(size_t(queries * heads));
  for (auto& v : a.w) v = rng.uniform(-1.0f, 1.0f);
  a.q_pos.resize(size_t(queries));
  for (int64_t i = 0; i < queries; ++i) {
    // Spread over [0, L), last query at L-1 (the typical "query at the end" position).
    a.q_pos[size_t(i)] = queries == 1 ? keys - 1 : (keys - 1) * i / (queries - 1);
  }
  if (with_k_start) {
    a.k_start.resize(size_t(queries));
    for (int64_t i = 0; i < queries; ++i) a.k_start[size_t(i)] = a.q_pos[size_t(i)] / 2;
  }
  if (k_type == ElementType::FP8_E4M3) {
    a.k_scale.resize(size_t(keys));
    for (auto& v : a.k_scale) v = rng.uniform(1e-4f, 1e-2f);
  }
  if (ref_width > 0) {
    a.ref_width = ref_width;
    a.topk_ref.resize(size_t(queries * ref_width));
    for (int64_t i = 0; i < queries; ++i) {
      for (int64_t j = 0; j < ref_width; ++j) {
        // The first min(q_pos+1, width) slots hold visible keys, the rest the -1 padding.
        const int64_t pos = a.q_pos[size_t(i)];
        a.topk_ref[size_t(i * ref_width + j)] = j <= pos ? int32_t(pos - j) : -1;
      }
    }
  }
  return a;
}

inline FileAttributes small_file_attributes(int64_t heads = 2, int64_t dim = 8, int64_t topk = 4) {
  FileAttributes f;
  f.model = "test-model";
  f.n_heads = heads;
  f.head_dim = dim;
  f.index_topk = topk;
  return f;
}

// Every value of every layer through the loader, in batches of 2 queries (so batch boundaries are crossed).
inline void read_everything(const std::string& path) {
  DumpReader reader(path);
  for (const auto& s : reader.samples()) {
    for (int layer : s.layers) {
      LayerReader lr = reader.open_layer(s.name, layer);
      LayerKeys keys = lr.read_keys();
      for (int64_t i = 0; i < lr.shape().queries; i += 2) {
        lr.read_queries(i, std::min<int64_t>(2, lr.shape().queries - i));
      }
    }
  }
}

}  // namespace hisa::test
