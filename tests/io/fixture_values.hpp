#pragma once
// The values of the h5py fixtures (datasets/fixtures/make_h5py_fixtures.py documents the formula; this file
// recomputes it). Tables are hex floats, as in the script, so both read exactly the same numbers.
#include <cmath>
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "core/numeric.hpp"
#include "io/dump_writer.hpp"

namespace hisa::test::fixture {

inline constexpr int64_t kKeys = 40, kQueries = 3, kHeads = 2, kDim = 8, kTopk = 4;

struct Encoding {
  const char* name;       // file name part: fixture_<name>.h5
  ElementType element;
  const char* stored;     // how hisa's describe() names the stored type
  bool uint16_storage;    // bfloat16 as uint16 + encoding attribute
};

inline void PrintTo(const Encoding& e, std::ostream* os) { *os << e.name; }

inline const std::vector<Encoding>& encodings() {
  static const std::vector<Encoding> e{
      {"float32", ElementType::F32, "float32", false},
      {"float16", ElementType::F16, "float16", false},
      {"bfloat16", ElementType::BF16, "bfloat16", false},
      {"bfloat16_uint16", ElementType::BF16, "uint16", true},
      {"float8_e4m3fn", ElementType::FP8_E4M3, "uint8", false},
  };
  return e;
}

// Zero of both signs, +-1-ish values, +-max, smallest and largest subnormal, smallest normal, a value using
// every mantissa bit, a negative integer.
inline const std::vector<float>& table(ElementType t) {
  static const std::vector<float> f32{0x0p+0f,    -0x0p+0f,     0x1p+0f,   -0x1.4p+1f,      0x1.fffffep+127f, -0x1.fffffep+127f,
                                      0x1p-149f,  -0x1.fffffcp-127f, 0x1p-126f, 0x1.99999ap-4f, -0x1.8p+3f};
  static const std::vector<float> f16{0x0p+0f,   -0x0p+0f,      0x1p+0f,   -0x1.4p+1f,   0x1.ffcp+15f, -0x1.ffcp+15f,
                                      0x1p-24f,  -0x1.ff8p-15f, 0x1p-14f,  0x1.554p-2f,  -0x1.8p+3f};
  static const std::vector<float> bf16{0x0p+0f,   -0x0p+0f,      0x1p+0f,   -0x1.4p+1f,  0x1.fep+127f, -0x1.fep+127f,
                                       0x1p-133f, -0x1.fcp-127f, 0x1p-126f, 0x1.54p-2f,  -0x1.8p+3f};
  static const std::vector<float> fp8{0x0p+0f,  -0x0p+0f,    0x1p+0f,  -0x1.4p+1f, 0x1.cp+8f, -0x1.cp+8f,
                                      0x1p-9f,  -0x1.cp-7f,  0x1p-6f,  0x1.ep-1f,  -0x1.8p+3f};
  // e2m1 with unit scale: zeros, the ends and the subnormal 0.5 (no fixture file holds fp4 yet).
  static const std::vector<float> fp4{0.0f, -0.0f, 1.0f, -3.0f, 6.0f, -6.0f, 0.5f, -0.5f, 1.5f, 4.0f, -2.0f};
  switch (t) {
    case ElementType::F32: return f32;
    case ElementType::F16: return f16;
    case ElementType::BF16: return bf16;
    case ElementType::FP8_E4M3: return fp8;
    case ElementType::FP4_E2M1: return fp4;
  }
  return f32;
}

inline float k_value(ElementType t, size_t i) { return table(t)[i % table(t).size()]; }
inline float q_value(ElementType t, size_t i) { return table(t)[(3 * i + 1) % table(t).size()]; }
inline float w_value(size_t i) { return (float(i) - 2.0f) / 4.0f; }
inline float k_scale_value(size_t s) { return std::ldexp(1.0f, int(s % 7) - 3); }
inline const std::vector<int64_t> kQPos{5, 20, 39};
inline const std::vector<int64_t> kKStart{0, 10, 39};
inline const std::vector<int32_t> kTopkRef{5, 4, 3, -1, 20, 19, 10, -1, 39, -1, -1, -1};

// The fixture layer as hisa's writer would write it (k_scale, k_start and topk_ref only for fp8, as in the
// script).
inline LayerArrays layer(ElementType t) {
  LayerArrays a;
  a.keys = kKeys;
  a.queries = kQueries;
  a.heads = kHeads;
  a.dim = kDim;
  a.q_type = a.k_type = t;
  for (size_t i = 0; i < size_t(kKeys * kDim); ++i) a.k.push_back(k_value(t, i));
  for (size_t i = 0; i < size_t(kQueries * kHeads * kDim); ++i) a.q.push_back(q_value(t, i));
  for (size_t i = 0; i < size_t(kQueries * kHeads); ++i) a.w.push_back(w_value(i));
  a.q_pos = kQPos;
  if (t == ElementType::FP8_E4M3) {
    for (size_t s = 0; s < size_t(kKeys); ++s) a.k_scale.push_back(k_scale_value(s));
    a.k_start = kKStart;
    a.topk_ref = kTopkRef;
    a.ref_width = kTopk;
  }
  return a;
}

}  // namespace hisa::test::fixture
