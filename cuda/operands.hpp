#pragma once
// Keys and queries in the forms the scoring kernels take (kernels.hpp ValueType): which 16-bit types hold a
// layer's or a batch's values exactly, the codes and split parts, and the device copies, each made when first
// needed. Host-only header.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "core/numeric.hpp"
#include "core/streaming_rows.hpp"
#include "cuda/device_buffer.hpp"
#include "cuda/device_operands.hpp"
#include "cuda/kernels.hpp"
#include "io/dump_model.hpp"

namespace hisa::cuda {

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Rows encoded on the host and uploaded through two pinned pieces, so that the host encodes one piece (on every
// core) while the other is copied: the copy overlaps the encoding, runs at pinned speed, and the pinned memory
// stays at two pieces whatever the rows' total. encode(r, out) writes row r's `row_units` units.
class PieceUploader {
 public:
  static constexpr size_t kPieceBytes = size_t(32) << 20;
  // Rows [0, rows) of `row_units` units each, encoded into pinned pieces and copied to dst (device memory the
  // caller has sized) on stream s.
  template <typename T, typename Encode>
  void upload(T* dst, int64_t rows, int64_t row_units, Encode encode, cudaStream_t s) {
    const int64_t piece_rows = std::max<int64_t>(1, int64_t(kPieceBytes / sizeof(T)) / std::max<int64_t>(1, row_units));
    for (int64_t first = 0, p = 0; first < rows; first += piece_rows, ++p) {
      const int64_t n = std::min(piece_rows, rows - first);
      Piece& piece = pieces_[p % 2];
      piece.copied.wait();  // its last copy is done
      T* host = reinterpret_cast<T*>(piece.memory.reserve(size_t(n * row_units) * sizeof(T)));
#pragma omp parallel
      {
#pragma omp for schedule(static) nowait
        for (int64_t r = 0; r < n; ++r) encode(first + r, host + r * row_units);
        finish_streaming_stores();  // encode may write with streaming stores; the copy below reads them
      }
      HISA_CUDA_CHECK(cudaMemcpyAsync(dst + first * row_units, host, size_t(n * row_units) * sizeof(T),
                                      cudaMemcpyHostToDevice, s));
      piece.copied.record(s);
    }
  }

 private:
  struct Piece {
    PinnedArray<unsigned char> memory;
    PendingCopy copied;  // after memory: waited for before it is freed
  };
  Piece pieces_[2];
};

// Which 16-bit types hold every value exactly (the loader hands floats; a bf16 or fp8 dump's values are
// exact in bf16, an f16 dump's in f16). f16 is only examined when asked, since bf16 usually decides.
class Exactness {
 public:
  void reset(const float* values, size_t n) {
    values_ = values;
    n_ = n;
    bf16_ = all_of(values, n, [](float v) { return (std::bit_cast<uint32_t>(v) & 0xFFFFu) == 0; });
    f16_.reset();
    e4m3_.reset();
    splittable_.reset();
  }
  // Taken as exact in bf16 unchecked (the caller checks the codes as it encodes them: QueryStore); the other
  // answers are computed on the values when asked, as after reset().
  void assume_bf16(const float* values, size_t n) {
    values_ = values;
    n_ = n;
    bf16_ = true;
    f16_.reset();
    e4m3_.reset();
    splittable_.reset();
  }
  // The answers computed where the values live (device_operands.hpp), for values not in host memory.
  void reset_known(const ExactnessFlags& f) {
    values_ = nullptr;
    n_ = 0;
    bf16_ = f.bf16;
    f16_ = f.f16;
    e4m3_ = f.e4m3;
    splittable_ = f.splittable;
  }
  bool bf16() const { return bf16_; }
  // Every value is an fp8 e4m3fn value (asked only for the fp8 tensor cores).
  bool e4m3() const {
    if (!e4m3_) e4m3_ = all_of(values_, n_, [](float v) { return e4m3_to_float(float_to_e4m3(v)) == v; });
    return *e4m3_;
  }
  // Every value splits exactly into three normal bf16 parts (split_bf16): 0, or 1e-30 <= |v| <= 3e38.
  bool splittable() const {
    if (!splittable_) splittable_ = all_of(values_, n_, [](float v) { return splits_exactly(v); });
    return *splittable_;
  }
  static bool splits_exactly(float v) { return v == 0.0f || (std::fabs(v) >= 1e-30f && std::fabs(v) <= 3.0e38f); }
  bool f16() const {
    if (!f16_) f16_ = all_of(values_, n_, [](float v) { return f16_to_float(float_to_f16(v)) == v; });
    return *f16_;
  }

 private:
  template <typename Pred>
  static bool all_of(const float* v, size_t n, Pred pred) {
    bool ok = true;
#pragma omp parallel for reduction(&& : ok) schedule(static)
    for (int64_t i = 0; i < int64_t(n); ++i) ok = ok && pred(v[i]);
    return ok;
  }

 private:
  const float* values_ = nullptr;
  size_t n_ = 0;
  bool bf16_ = false;
  mutable std::optional<bool> f16_, e4m3_, splittable_;
};

inline uint16_t encode(ValueType t, float v) {
  return t == ValueType::F16 ? float_to_f16(v) : uint16_t(std::bit_cast<uint32_t>(v) >> 16);
}

// v as hi + mid + lo, three bf16 values whose sum is v exactly (each split rounds to nearest, so what is left
// has at most 16, then 8 significant bits), all normal numbers or zero where Exactness::splits_exactly(v)
// (tiny values would leave subnormal parts, which tensor cores need not honour).
inline void split_bf16(float v, uint16_t& hi, uint16_t& mid, uint16_t& lo) {
  const float h = round_to(ElementType::BF16, v), m = round_to(ElementType::BF16, v - h);
  hi = encode(ValueType::BF16, h);
  mid = encode(ValueType::BF16, m);
  lo = encode(ValueType::BF16, (v - h) - m);
}

// 16-bit units per row of `dim` values in the device form of type t: the codes zero-padded to a multiple of 16,
// three such runs for BF16x3, and 128 fp8 codes (one byte each, two per unit) for E4M3.
inline int64_t coded_dim(ValueType t, int64_t dim) {
  if (t == ValueType::E4M3) return kFp8Dim / 2;
  return round_up(dim, 16) * (t == ValueType::BF16x3 ? 3 : 1);
}
// A query row's units: BF16x3 launches take the queries' plain bf16 codes (the kernel reads them three times).
inline int64_t query_coded_dim(ValueType t, int64_t dim) {
  return coded_dim(t == ValueType::BF16x3 ? ValueType::BF16 : t, dim);
}

// One row of `dim` values in the device form of type t, into coded_dim(t, dim) zeroed units at `out`: the
// codes, or for BF16x3 the three split parts [hi | mid | lo], each round_up(dim, 16) long.
inline void encode_row(ValueType t, const float* v, int64_t dim, uint16_t* out) {
  if (t == ValueType::E4M3) {
    auto* bytes = reinterpret_cast<uint8_t*>(out);
    for (int64_t d = 0; d < dim; ++d) bytes[d] = float_to_e4m3(v[d]);
    return;
  }
  if (t != ValueType::BF16x3) {
    for (int64_t d = 0; d < dim; ++d) out[d] = encode(t, v[d]);
    return;
  }
  const int64_t padded = round_up(dim, 16);
  for (int64_t d = 0; d < dim; ++d) split_bf16(v[d], out[d], out[padded + d], out[2 * padded + d]);
}

// encode_row into `units` (coded_dim(t, dim)) units with the padding zeroed, the BF16 codes with streaming stores
// (they go to pinned memory the host does not read again). Returns whether every value was exact in bf16 (BF16;
// true for the other types).
inline bool encode_padded_row(ValueType t, const float* v, int64_t dim, int64_t units, uint16_t* out) {
  if (t == ValueType::BF16) return bf16_codes_row(v, dim, units, out);
  std::fill_n(out, units, uint16_t(0));
  encode_row(t, v, dim, out);
  return true;
}

// Keys (tokens or pooled blocks) in the forms the kernels take, each uploaded when first needed.
class KeyStore {
 public:
  // what: how --verbose names these keys ("tokens", "pooled keys (B = 64)").
  void reset(const float* values, const float* scales, int64_t count, int64_t dim, std::string what, cudaStream_t s) {
    take(values, count, dim, std::move(what), false);
    exact_.reset(values, size_t(count * dim));
    scale_.upload(scales, size_t(count), s);
  }
  // Keys that live on this GPU (LayerKeys::device_k): checked and encoded here, read in place as fp32.
  void reset_on_device(const float* values, const float* scales, int64_t count, int64_t dim, std::string what,
                       cudaStream_t s) {
    take(values, count, dim, std::move(what), true);
    exact_.reset_known(exactness_on_device(values, count * dim, s));
    scale_.resize(size_t(count));
    if (count > 0) HISA_CUDA_CHECK(cudaMemcpyAsync(scale_.data(), scales, size_t(count) * sizeof(float), cudaMemcpyDeviceToDevice, s));
  }
  const Exactness& exact() const { return exact_; }
  int64_t count() const { return count_; }
  const std::string& what() const { return what_; }
  // Tells one reset() from the next, so decisions about the keys are remade for new keys.
  uint64_t generation() const { return generation_; }
  const float* scales() const { return scale_.data(); }
  const float* f32(cudaStream_t s) {
    if (on_device_) return values_;
    if (!have_f32_) {
      f32_.upload(values_, size_t(count_ * dim_), s);
      have_f32_ = true;
    }
    return f32_.data();
  }
  // [count, coded_dim(t, dim)] units, zero-padded.
  const uint16_t* lowp(ValueType t, cudaStream_t s) {
    if (lowp_type_ != t && on_device_) {
      lowp_.resize(size_t(count_ * coded_dim(t, dim_)));
      encode_rows_on_device(t, values_, count_, dim_, 1, 1, lowp_.data(), s);
      lowp_type_ = t;
    }
    if (lowp_type_ != t) {
      const int64_t cd = coded_dim(t, dim_);
      lowp_.resize(size_t(count_ * cd));
      uploader_.upload(lowp_.data(), count_, cd, [&](int64_t r, uint16_t* out) {
        encode_padded_row(t, values_ + r * dim_, dim_, cd, out);
      }, s);
      lowp_type_ = t;
    }
    return lowp_.data();
  }

 private:
  std::string what_;
  uint64_t generation_ = 0;
  const float* values_ = nullptr;
  int64_t count_ = 0, dim_ = 0;
  Exactness exact_;
  DeviceArray<float> scale_, f32_;
  DeviceArray<uint16_t> lowp_;
  PieceUploader uploader_;
  bool have_f32_ = false;
  ValueType lowp_type_ = ValueType::F32;
  bool on_device_ = false;  // values_ is device memory

  // What both resets do: new keys (a new generation), none of their forms made yet.
  void take(const float* values, int64_t count, int64_t dim, std::string what, bool on_device) {
    what_ = std::move(what);
    ++generation_;
    values_ = values;
    count_ = count;
    dim_ = dim;
    have_f32_ = false;
    lowp_type_ = ValueType::F32;
    on_device_ = on_device;
  }
};

// Thrown by QueryStore when queries taken as exact in bf16 (reset with assume_bf16) turn out not to be; the
// caller starts the batch again without the assumption.
struct QueriesOffBf16Grid {};

// One batch's queries and weights, uploaded in the forms needed; each form is kept until the next batch (an
// fp8 batch under the fp8 tensor cores takes bf16 codes for J and fp8 codes for the tokens). Host queries are
// encoded chunk by chunk, as launches first need them, and copied on a stream of their own: the host encodes
// and the copy engine uploads one chunk while the GPU scores the one before.
class QueryStore {
 public:
  // assume_bf16 (host queries only): take the queries as exact in bf16 without reading them all first, and
  // check each value as its bf16 code is made; the first value off the grid throws QueriesOffBf16Grid before
  // any launch uses the assumption. Only a choice of kernel that then encodes the bf16 codes (BF16, BF16x3)
  // depends on the assumption (choose_score_kernel), so a batch never checked is never wrongly scored.
  void reset(const QueryBatch& b, cudaStream_t s, bool assume_bf16 = false) {
    batch_ = &b;
    codes_pinned_ = false;
    if (b.on_device()) {
      exact_.reset_known(exactness_on_device(b.device_q, b.count * b.heads * b.dim, s));
      assumed_bf16_ = false;
    } else if (b.q_bf16 != nullptr) {  // exact in bf16 by the caller's word (QueryBatch::q_bf16)
      check_codes_sample(b);
      exact_.assume_bf16(b.q.data(), b.q.size());
      assumed_bf16_ = false;
      codes_pinned_ = pinned_host(b.q_bf16, size_t(b.q.size()) * sizeof(uint16_t));
    } else if (assume_bf16) {
      exact_.assume_bf16(b.q.data(), b.q.size());
      assumed_bf16_ = true;
    } else {
      exact_.reset(b.q.data(), b.q.size());
      assumed_bf16_ = false;
    }
    have_f32_ = have_wpad_ = false;
    for (auto& f : forms_) f.loaded.clear();
  }
  const Exactness& exact() const { return exact_; }
  const float* q_f32(cudaStream_t s) {
    if (batch_->on_device()) return batch_->device_q;
    load_f32(s);
    return q32_.data();
  }
  const float* w_f32(cudaStream_t s) {
    if (batch_->on_device()) return batch_->device_w;
    load_f32(s);
    return w32_.data();
  }
  // [count, H', query_coded_dim(t, D)] units, of which at least queries [first, first + count) are on the
  // device once stream s reaches its next launch; padded heads have zero q.
  const uint16_t* q_lowp(ValueType t, int64_t first, int64_t count, cudaStream_t s) {
    if (t == ValueType::BF16x3) t = ValueType::BF16;  // queries are exact in bf16 there: never split
    Form& f = forms_[form_index(t)];
    const QueryBatch& b = *batch_;
    const int64_t hp = padded_heads(), cd = coded_dim(t, b.dim);
    if (b.on_device()) {
      if (f.loaded.empty()) {
        f.codes.resize(size_t(b.count * hp * cd));
        encode_rows_on_device(t, b.device_q, b.count * hp, b.dim, b.heads, hp, f.codes.data(), s);
        f.loaded.push_back({0, b.count});
      }
      return f.codes.data();
    }
    if (f.covers(first, first + count)) return f.codes.data();
    if (f.loaded.empty()) f.codes.resize(size_t(b.count * hp * cd));
    uint16_t* dst = f.codes.data() + first * hp * cd;
    // The caller's bf16 codes go as they are: by the copy engine straight from pinned memory when the rows need
    // no padding, else row by row through the pinned pieces, like the queries encoded here.
    const bool given_codes = t == ValueType::BF16 && b.q_bf16 != nullptr;
    if (given_codes && codes_pinned_ && hp == b.heads && cd == b.dim) {
      HISA_CUDA_CHECK(cudaMemcpyAsync(dst, b.q_bf16 + first * b.heads * b.dim, size_t(count * hp * cd) * sizeof(uint16_t),
                                      cudaMemcpyHostToDevice, copies()));
    } else {
      // Row r = i·H' + h of the queries from `first`; the padded heads' rows are zero.
      const bool check = assumed_bf16_ && t == ValueType::BF16;
      std::atomic<bool> off_grid = false;
      uploader_.upload(dst, count * hp, cd, [&](int64_t r, uint16_t* out) {
        const int64_t i = first + r / hp, h = r % hp;
        if (h >= b.heads) return zero_units(out, cd);
        if (given_codes) return copy_units(b.q_bf16 + (i * b.heads + h) * b.dim, b.dim, cd, out);
        if (!encode_padded_row(t, b.q_row(i, h), b.dim, cd, out) && check) off_grid.store(true, std::memory_order_relaxed);
      }, copies());
      if (off_grid) throw QueriesOffBf16Grid{};
    }
    f.loaded.push_back({first, first + count});
    ready_for(s);
    return f.codes.data();
  }
  // Waits for every upload issued so far, without throwing: before a failed call returns, so that no copy still
  // reads the caller's memory (pinned codes are copied straight from it).
  void settle() noexcept {
    if (copies_) (void)cudaStreamSynchronize(copies_->get());
  }
  // [count, H'] weights, zero for the padded heads (every low-precision form).
  const float* w_padded(cudaStream_t s) {
    if (!have_wpad_) {
      const QueryBatch& b = *batch_;
      const int64_t hp = padded_heads();
      wpad_.resize(size_t(b.count * hp));
      if (b.on_device()) {
        pad_heads_on_device(b.device_w, b.count, b.heads, hp, wpad_.data(), s);
      } else {
        uploader_.upload(wpad_.data(), b.count, hp, [&](int64_t i, float* out) {
          std::fill(std::copy_n(b.w_row(i), b.heads, out), out + hp, 0.0f);
        }, copies());
        ready_for(s);
      }
      have_wpad_ = true;
    }
    return wpad_.data();
  }

 private:
  struct Form {
    DeviceArray<uint16_t> codes;
    std::vector<std::pair<int64_t, int64_t>> loaded;  // query ranges [first, end) uploaded for this batch
    bool covers(int64_t first, int64_t end) const {
      return std::any_of(loaded.begin(), loaded.end(), [&](const auto& r) { return r.first <= first && end <= r.second; });
    }
  };
  static size_t form_index(ValueType t) { return t == ValueType::F16 ? 1 : t == ValueType::E4M3 ? 2 : 0; }
  // H': the low-precision forms' heads, padded with zero q and w to a multiple of 8.
  int64_t padded_heads() const { return round_up(batch_->heads, 8); }
  // The stream the host uploads go on, made on first use (with the batch's GPU current, as reset() is called).
  cudaStream_t copies() {
    if (!copies_) {
      copies_.emplace();
      uploaded_.emplace();
    }
    return copies_->get();
  }
  // Stream s's later work waits for every upload issued so far.
  void ready_for(cudaStream_t s) {
    HISA_CUDA_CHECK(cudaEventRecord(uploaded_->get(), copies_->get()));
    HISA_CUDA_CHECK(cudaStreamWaitEvent(s, uploaded_->get(), 0));
  }
  // A few of the caller's codes against q (cheap): catches codes left behind by a batch copied, then edited.
  static void check_codes_sample(const QueryBatch& b) {
    const size_t n = b.q.size();
    for (size_t j = 0; j < 16 && n > 0; ++j) {
      const size_t i = j * (n - 1) / 15;
      if (std::bit_cast<uint32_t>(b.q[i]) != uint32_t(b.q_bf16[i]) << 16) {  // the code, widened, is q bit for bit
        throw std::invalid_argument("QueryBatch::q_bf16 does not hold q's values (value " + std::to_string(i) + ")");
      }
    }
  }
  void load_f32(cudaStream_t s) {
    if (have_f32_) return;
    q32_.upload(batch_->q.data(), batch_->q.size(), s);
    w32_.upload(batch_->w.data(), batch_->w.size(), s);
    have_f32_ = true;
  }

  const QueryBatch* batch_ = nullptr;
  Exactness exact_;
  bool assumed_bf16_ = false;
  bool codes_pinned_ = false;  // the batch's q_bf16 lies in pinned host memory
  DeviceArray<float> q32_, w32_, wpad_;
  Form forms_[3];  // BF16, F16, E4M3
  PieceUploader uploader_;
  std::optional<Stream> copies_;
  std::optional<PlainEvent> uploaded_;
  bool have_f32_ = false, have_wpad_ = false;
};

}  // namespace hisa::cuda
