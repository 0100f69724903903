#pragma once
// What the CUDA engine (cuda_engine.cu) and the CUDA sweep scorer (cuda_sweep_scorer.cu) share: keys and
// queries in the forms the kernels take, the plan of query chunks sized from the free device memory, and
// the scoring and top-k launches on one stream with CUDA-event stage times. Host-only header.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/numeric.hpp"
#include "cuda/block_choice.hpp"
#include "cuda/device_buffer.hpp"
#include "cuda/kernels.hpp"
#include "io/dump_model.hpp"

namespace hisa::cuda {

inline constexpr int64_t kMaxChunkQueries = 4096;

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

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

// Keys (tokens or pooled blocks) in the forms the kernels take, each uploaded when first needed.
class KeyStore {
 public:
  void reset(const float* values, const float* scales, int64_t count, int64_t dim, cudaStream_t s) {
    values_ = values;
    count_ = count;
    dim_ = dim;
    exact_.reset(values, size_t(count * dim));
    scale_.upload(scales, size_t(count), s);
    have_f32_ = false;
    lowp_type_ = ValueType::F32;
  }
  const Exactness& exact() const { return exact_; }
  int64_t count() const { return count_; }
  const float* scales() const { return scale_.data(); }
  const float* f32(cudaStream_t s) {
    if (!have_f32_) {
      f32_.upload(values_, size_t(count_ * dim_), s);
      have_f32_ = true;
    }
    return f32_.data();
  }
  // [count, coded_dim(t, dim)] units, zero-padded.
  const uint16_t* lowp(ValueType t, cudaStream_t s) {
    if (lowp_type_ != t) {
      const int64_t cd = coded_dim(t, dim_);
      staging_.assign(size_t(count_ * cd), 0);
#pragma omp parallel for schedule(static)
      for (int64_t r = 0; r < count_; ++r) encode_row(t, values_ + r * dim_, dim_, &staging_[size_t(r * cd)]);
      lowp_.upload(staging_.data(), staging_.size(), s);  // pageable source: copied out before the call returns
      lowp_type_ = t;
    }
    return lowp_.data();
  }

 private:
  const float* values_ = nullptr;
  int64_t count_ = 0, dim_ = 0;
  Exactness exact_;
  DeviceArray<float> scale_, f32_;
  DeviceArray<uint16_t> lowp_;
  std::vector<uint16_t> staging_;
  bool have_f32_ = false;
  ValueType lowp_type_ = ValueType::F32;
};

// One batch's queries and weights, uploaded in the forms needed; each form is kept until the next batch (an
// fp8 batch under the fp8 tensor cores takes bf16 codes for J and fp8 codes for the tokens).
class QueryStore {
 public:
  void reset(const QueryBatch& b) {
    batch_ = &b;
    exact_.reset(b.q.data(), b.q.size());
    have_f32_ = have_wpad_ = false;
    for (auto& f : forms_) f.loaded = false;
  }
  const Exactness& exact() const { return exact_; }
  const float* q_f32(cudaStream_t s) {
    load_f32(s);
    return q32_.data();
  }
  const float* w_f32(cudaStream_t s) {
    load_f32(s);
    return w32_.data();
  }
  // [count, H', query_coded_dim(t, D)] units; padded heads have zero q.
  const uint16_t* q_lowp(ValueType t, cudaStream_t s) {
    if (t == ValueType::BF16x3) t = ValueType::BF16;  // queries are exact in bf16 there: never split
    Form& f = forms_[form_index(t)];
    if (!f.loaded) {
      const QueryBatch& b = *batch_;
      const int64_t hp = round_up(b.heads, 8), cd = coded_dim(t, b.dim);
      staging_q_.assign(size_t(b.count * hp * cd), 0);
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < b.count; ++i) {
        for (int64_t h = 0; h < b.heads; ++h) encode_row(t, b.q_row(i, h), b.dim, &staging_q_[size_t((i * hp + h) * cd)]);
      }
      f.codes.upload(staging_q_.data(), staging_q_.size(), s);
      f.loaded = true;
    }
    return f.codes.data();
  }
  // [count, H'] weights, zero for the padded heads (every low-precision form).
  const float* w_padded(cudaStream_t s) {
    if (!have_wpad_) {
      const QueryBatch& b = *batch_;
      const int64_t hp = round_up(b.heads, 8);
      staging_w_.assign(size_t(b.count * hp), 0.0f);
      for (int64_t i = 0; i < b.count; ++i) std::copy_n(b.w_row(i), b.heads, &staging_w_[size_t(i * hp)]);
      wpad_.upload(staging_w_.data(), staging_w_.size(), s);
      have_wpad_ = true;
    }
    return wpad_.data();
  }

 private:
  struct Form {
    DeviceArray<uint16_t> codes;
    bool loaded = false;
  };
  static size_t form_index(ValueType t) { return t == ValueType::F16 ? 1 : t == ValueType::E4M3 ? 2 : 0; }
  void load_f32(cudaStream_t s) {
    if (have_f32_) return;
    q32_.upload(batch_->q.data(), batch_->q.size(), s);
    w32_.upload(batch_->w.data(), batch_->w.size(), s);
    have_f32_ = true;
  }

  const QueryBatch* batch_ = nullptr;
  Exactness exact_;
  DeviceArray<float> q32_, w32_, wpad_;
  Form forms_[3];  // BF16, F16, E4M3
  std::vector<uint16_t> staging_q_;
  std::vector<float> staging_w_;
  bool have_f32_ = false, have_wpad_ = false;
};

// With fp8_mma (opt-in), fp8 tensor cores when both sides are e4m3 values and the device and shape allow it.
// Otherwise tensor cores when both sides are exact in one 16-bit type and D fits the kernel, or when the queries
// are exact in bf16 and the keys can be split (BF16x3, on devices with the wgmma kernel for the shape); fp32
// CUDA cores otherwise.
inline ValueType choose_type(const Exactness& keys, const Exactness& queries, int64_t heads, int64_t dim, bool fp8_mma) {
  if (fp8_mma && dim <= kFp8Dim && fp8_mma_supported(int(round_up(heads, 8))) && keys.e4m3() && queries.e4m3()) {
    return ValueType::E4M3;
  }
  if (round_up(dim, 16) > kMaxTensorCoreDim) return ValueType::F32;
  if (keys.bf16() && queries.bf16()) return ValueType::BF16;
  if (keys.f16() && queries.f16()) return ValueType::F16;
  if (queries.bf16() && keys.splittable() && split_bf16_supported(int(round_up(heads, 8)), int(round_up(dim, 16)))) {
    return ValueType::BF16x3;
  }
  return ValueType::F32;
}

struct Chunk {
  int64_t first = 0, count = 0;  // queries [first, first + count) of the batch
  int lo = 0, hi = 0;            // keys [lo, hi] covering every visible range of the chunk
  int64_t stride() const { return round_up(int64_t(hi) - lo + 1, 32); }
};

// GPU stage times from reusable event pairs, added to their targets once the stream has been synchronised.
class StageTimer {
 public:
  void begin(cudaStream_t s, double* target) {
    if (n_ == pool_.size()) pool_.push_back(std::make_unique<Pair>());
    pool_[n_]->target = target;
    pool_[n_]->start.record(s);
  }
  void end(cudaStream_t s) { pool_[n_++]->stop.record(s); }
  void collect() {
    for (size_t i = 0; i < n_; ++i) *pool_[i]->target += pool_[i]->stop.since(pool_[i]->start);
    n_ = 0;
  }

 private:
  struct Pair {
    Event start, stop;
    double* target = nullptr;
  };
  std::vector<std::unique_ptr<Pair>> pool_;
  size_t n_ = 0;
};

inline double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}


// One device, one stream, the batch's queries and visible ranges, a chunk plan and the launches every
// scoring pass uses. Users call set_batch() per batch, then plan() and the launches per chunk.
class CudaScoring {
 public:
  // fp8_mma: score e4m3 operands on the fp8 tensor cores (not exact; kernels.hpp ValueType::E4M3).
  CudaScoring(int device, bool fp8_mma);
  const std::string& device_name() const { return name_; }

 protected:
  cudaStream_t s() const { return stream_->get(); }
  void use_device() const;
  // Checks the batch against the layer's keys and uploads each query's visible range [k_start, q_pos].
  void set_batch(const QueryBatch& b, int64_t key_count);
  // Each query's eligible blocks [k_start / B, q_pos / B], uploaded to lo/hi.
  void upload_block_ranges(int64_t B, DeviceArray<int>& lo, DeviceArray<int>& hi);
  // Consecutive queries per chunk, as many as the device memory budget allows (half of what is free now plus
  // what is already held for chunks, at most max_chunk_bytes when not 0): a score row per query when
  // token_scores, J rows for `j_rows` block scorings of block size at least smallest_block, top-k output, and
  // the GPU block choice's buffers for kept_blocks (m) blocks per query when not 0.
  std::vector<Chunk> plan(const QueryBatch& b, bool token_scores, int64_t smallest_block, int64_t topk,
                          size_t max_chunk_bytes, size_t held_bytes, int64_t kept_blocks = 0);
  // The type, keys, queries and weights of a scoring launch of the chunk's queries against `keys` (uploading
  // them in the form the kernel takes when not yet done).
  ScoreLaunch launch_for(KeyStore& keys, const Chunk& c);
  // Keys per tile of the kernel that scores the chunk's queries against `keys` (work lists are built for it).
  int tile_keys(KeyStore& keys, const Chunk& c);
  // One scoring launch of the chunk's queries against `keys` (tokens or pooled blocks), timed into *stage;
  // with `work`, only the keys of its kept blocks (BlockChoice::describe_work).
  void score(KeyStore& keys, const Chunk& c, const int* lo, const int* hi, int range_lo, int range_hi,
             const BlockChoice* work, float* out, int64_t stride, int base, double* stage);
  // Block scores J of the chunk's queries against pooled keys of block size B (lo/hi: each query's eligible
  // blocks), computed into j: row i holds blocks [c.lo / B, c.hi / B].
  void score_blocks(KeyStore& blocks, const Chunk& c, int64_t B, const int* lo, const int* hi, DeviceArray<float>& j,
                    double* stage);
  // The same, then copied to jh, synchronised.
  void score_blocks_to_host(KeyStore& blocks, const Chunk& c, int64_t B, const int* lo, const int* hi,
                            DeviceArray<float>& j, std::vector<float>& jh, double* stage);
  // The chunk's queries' visible scores into scores_ (row stride c.stride(), column 0 = key c.lo): all of them,
  // or with `work` those of the kept blocks.
  void score_tokens(KeyStore& tokens, const Chunk& c, double* stage, const BlockChoice* work = nullptr);
  // Exact top-k of scores_ over each row's segments, into pos/sc/cnt, timed into *stage.
  void run_topk(const Chunk& c, int k, const DeviceArray<int>& segs, const DeviceArray<int>& offs,
                DeviceArray<int>& pos, DeviceArray<float>& sc, DeviceArray<int>& cnt, double* stage);
  void upload_segments(const std::vector<int>& segs, const std::vector<int>& offsets, DeviceArray<int>& dsegs,
                       DeviceArray<int>& doffs);

  int device_;
  bool fp8_mma_;
  bool used_fp8_mma_ = false;  // some launch since the last set_batch() scored on the fp8 tensor cores
  std::string name_;
  std::optional<Stream> stream_;  // created after cudaSetDevice
  const QueryBatch* batch_ = nullptr;
  QueryStore queries_;
  DeviceArray<int> lo_, hi_;
  DeviceArray<float> scores_;
  StageTimer timer_;
};

// UsageError when CUDA device `device` does not exist.
void require_device(int device);

// Each of the chunk's queries' visible range [k_start, q_pos] as one segment: segs gets the pairs, offs (which
// starts at {0}) each row's end.
void append_visible_segments(const QueryBatch& b, const Chunk& c, std::vector<int>& segs, std::vector<int>& offs);

// Visible positions of the kept blocks as merged segments [a, z], appended to segs.
void append_segments(const std::vector<int64_t>& kept, int64_t k_start, int64_t q_pos, int64_t B, std::vector<int>& segs);

}  // namespace hisa::cuda
