// The CUDA selection engine: scoring (score.cu), exact top-k and softmax masses (topk.cu) on the GPU; HISA's
// pooled keys and block choice on the host with the very functions the CPU engine uses (pool_keys,
// keep_blocks in src/select/blocks.cpp), from block scores J computed on the GPU and copied back (J is small:
// queries × L/B floats), so the block stage follows the Definitions line by line.
//
// Per batch, queries are processed in chunks sized from the free device memory; a chunk has one fp32 score
// row per query over the chunk's key range (needed for top-k and the coverage masses), never a
// [queries·heads, L] array. Every score of a query comes from one computation, so DSA, HISA and block-sparse
// are compared on identical scores, as in the CPU engine.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>

#include "core/error.hpp"
#include "core/numeric.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/cuda_engine.hpp"
#include "cuda/device_buffer.hpp"
#include "cuda/kernels.hpp"
#include "select/blocks.hpp"
#include "select/bounds.hpp"

namespace hisa::cuda {

namespace {

constexpr int64_t kMaxChunkQueries = 4096;

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Which 16-bit types hold every value exactly (the loader hands floats; a bf16 or fp8 dump's values are
// exact in bf16, an f16 dump's in f16). f16 is only examined when asked, since bf16 usually decides.
class Exactness {
 public:
  void reset(const float* values, size_t n) {
    values_ = values;
    n_ = n;
    bf16_ = all_of(values, n, [](float v) { return (std::bit_cast<uint32_t>(v) & 0xFFFFu) == 0; });
    f16_.reset();
  }
  bool bf16() const { return bf16_; }
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

 public:

 private:
  const float* values_ = nullptr;
  size_t n_ = 0;
  bool bf16_ = false;
  mutable std::optional<bool> f16_;
};

uint16_t encode(ValueType t, float v) {
  return t == ValueType::BF16 ? uint16_t(std::bit_cast<uint32_t>(v) >> 16) : float_to_f16(v);
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
  // [count, round_up(dim, 16)] codes, zero-padded.
  const uint16_t* lowp(ValueType t, cudaStream_t s) {
    if (lowp_type_ != t) {
      const int64_t dp = round_up(dim_, 16);
      staging_.assign(size_t(count_ * dp), 0);
#pragma omp parallel for schedule(static)
      for (int64_t r = 0; r < count_; ++r) {
        for (int64_t d = 0; d < dim_; ++d) staging_[size_t(r * dp + d)] = encode(t, values_[r * dim_ + d]);
      }
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

// One batch's queries and weights, uploaded in the forms needed.
class QueryStore {
 public:
  void reset(const QueryBatch& b) {
    batch_ = &b;
    exact_.reset(b.q.data(), b.q.size());
    have_f32_ = false;
    lowp_type_ = ValueType::F32;
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
  // [count, H', D'] codes and [count, H'] weights; padded heads have zero q and zero weight.
  const uint16_t* q_lowp(ValueType t, cudaStream_t s) {
    load_lowp(t, s);
    return q16_.data();
  }
  const float* w_padded(ValueType t, cudaStream_t s) {
    load_lowp(t, s);
    return wpad_.data();
  }

 private:
  void load_f32(cudaStream_t s) {
    if (have_f32_) return;
    q32_.upload(batch_->q.data(), batch_->q.size(), s);
    w32_.upload(batch_->w.data(), batch_->w.size(), s);
    have_f32_ = true;
  }
  void load_lowp(ValueType t, cudaStream_t s) {
    if (lowp_type_ == t) return;
    const QueryBatch& b = *batch_;
    const int64_t hp = round_up(b.heads, 8), dp = round_up(b.dim, 16);
    staging_q_.assign(size_t(b.count * hp * dp), 0);
    staging_w_.assign(size_t(b.count * hp), 0.0f);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < b.count; ++i) {
      for (int64_t h = 0; h < b.heads; ++h) {
        const float* q = b.q_row(i, h);
        for (int64_t d = 0; d < b.dim; ++d) staging_q_[size_t((i * hp + h) * dp + d)] = encode(t, q[d]);
        staging_w_[size_t(i * hp + h)] = b.w_row(i)[h];
      }
    }
    q16_.upload(staging_q_.data(), staging_q_.size(), s);
    wpad_.upload(staging_w_.data(), staging_w_.size(), s);
    lowp_type_ = t;
  }

  const QueryBatch* batch_ = nullptr;
  Exactness exact_;
  DeviceArray<float> q32_, w32_, wpad_;
  DeviceArray<uint16_t> q16_;
  std::vector<uint16_t> staging_q_;
  std::vector<float> staging_w_;
  bool have_f32_ = false;
  ValueType lowp_type_ = ValueType::F32;
};

// Tensor cores when both sides are exact in one 16-bit type and D fits the kernel; fp32 CUDA cores otherwise.
ValueType choose_type(const Exactness& keys, const Exactness& queries, int64_t dim) {
  if (round_up(dim, 16) > kMaxTensorCoreDim) return ValueType::F32;
  if (keys.bf16() && queries.bf16()) return ValueType::BF16;
  if (keys.f16() && queries.f16()) return ValueType::F16;
  return ValueType::F32;
}

struct Chunk {
  int64_t first = 0, count = 0;  // queries [first, first + count) of the batch
  int lo = 0, hi = 0;            // keys [lo, hi] covering every visible range of the chunk
  int64_t stride() const { return round_up(int64_t(hi) - lo + 1, 32); }
};

// Visible positions of the kept blocks as merged segments [a, z], appended to segs.
void append_segments(const std::vector<int64_t>& kept, int64_t k_start, int64_t q_pos, int64_t B, std::vector<int>& segs) {
  const size_t row_begin = segs.size();
  for (int64_t blk : kept) {
    const int a = int(std::max(blk * B, k_start)), z = int(std::min(blk * B + B - 1, q_pos));
    if (segs.size() > row_begin && segs.back() + 1 == a) {
      segs.back() = z;
    } else {
      segs.push_back(a);
      segs.push_back(z);
    }
  }
}


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

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

class CudaEngine final : public SelectionEngine {
 public:
  CudaEngine(int device, size_t max_chunk_bytes) : device_(device), max_chunk_bytes_(max_chunk_bytes) {
    HISA_CUDA_CHECK(cudaSetDevice(device_));
    cudaDeviceProp prop{};
    HISA_CUDA_CHECK(cudaGetDeviceProperties(&prop, device_));
    name_ = std::string("cuda (") + prop.name + ")";
    stream_.emplace();
  }
  std::string name() const override { return name_; }

  void set_layer(const LayerKeys& keys, const SelectionConfig& config) override {
    config.validate();
    if (keys.count >= int64_t(std::numeric_limits<int>::max()) || config.topk >= int64_t(std::numeric_limits<int>::max())) {
      throw UsageError("the CUDA engine handles fewer than 2^31 keys and k < 2^31");
    }
    HISA_CUDA_CHECK(cudaSetDevice(device_));
    keys_ = &keys;
    config_ = config;
    pooled_ = pool_keys(keys, config.block_size, config.pool);
    bounds_ = BlockBounds(keys, config.block_size);
    tokens_.reset(keys.k.data(), keys.k_scale.data(), keys.count, keys.dim, s());
    blocks_.reset(pooled_.k.data(), pooled_.scale.data(), pooled_.count, pooled_.dim, s());
    stream_->synchronize();
  }

  void audit(const QueryBatch& b, std::vector<QueryAudit>& out) override {
    const auto t0 = std::chrono::steady_clock::now();
    times_ = {};
    begin_batch(b);
    out.assign(size_t(b.count), QueryAudit{});
    for (const Chunk& c : plan(b, true)) audit_chunk(b, c, out);
    times_.total_ms = ms_since(t0);
  }

  void select(const QueryBatch& b, Method method, std::vector<std::vector<int64_t>>& out) override {
    if (method == Method::Certified) throw std::logic_error("the certified selection is select/certified.hpp's");
    const auto t0 = std::chrono::steady_clock::now();
    times_ = {};
    begin_batch(b);
    out.assign(size_t(b.count), {});
    for (const Chunk& c : plan(b, method != Method::Block)) select_chunk(b, c, method, out);
    times_.total_ms = ms_since(t0);
  }

  const StageTimes& times() const { return times_; }

 private:
  cudaStream_t s() const { return stream_->get(); }
  int k() const { return int(config_.topk); }

  void begin_batch(const QueryBatch& b) {
    if (keys_ == nullptr) throw std::logic_error("CudaEngine: set_layer before audit/select");
    HISA_CUDA_CHECK(cudaSetDevice(device_));
    batch_ = &b;
    queries_.reset(b);
    const int64_t B = config_.block_size;
    std::vector<int> lo(size_t(b.count)), hi(size_t(b.count)), blo(size_t(b.count)), bhi(size_t(b.count));
    for (int64_t i = 0; i < b.count; ++i) {
      const int64_t ks = b.k_start[size_t(i)], qp = b.q_pos[size_t(i)];
      if (ks < 0 || qp < ks || qp >= keys_->count) throw std::invalid_argument("CudaEngine: query outside the layer's keys");
      lo[size_t(i)] = int(ks);
      hi[size_t(i)] = int(qp);
      blo[size_t(i)] = int(ks / B);
      bhi[size_t(i)] = int(qp / B);
    }
    lo_.upload(lo.data(), lo.size(), s());
    hi_.upload(hi.data(), hi.size(), s());
    blo_.upload(blo.data(), blo.size(), s());
    bhi_.upload(bhi.data(), bhi.size(), s());
  }

  // Consecutive queries per chunk, as many as the device memory budget allows (half of what is free now
  // plus what this engine already holds for chunks).
  std::vector<Chunk> plan(const QueryBatch& b, bool token_scores) {
    size_t free = 0, total = 0;
    HISA_CUDA_CHECK(cudaMemGetInfo(&free, &total));
    const size_t held = scores_.capacity_bytes() + j_.capacity_bytes();
    double budget = 0.5 * double(free + held);
    if (max_chunk_bytes_ > 0) budget = std::min(budget, double(max_chunk_bytes_));
    const int64_t B = config_.block_size;
    auto bytes = [&](int64_t rows, int64_t lo, int64_t hi) {
      const double score_cols = token_scores ? double(round_up(hi - lo + 1, 32)) : 0.0;
      const double j_cols = double(hi / B - lo / B + 1);
      const double mask_cols = double(mask_words(int(lo), int(hi)));
      return double(rows) * ((score_cols + j_cols + mask_cols) * 4.0 + double(config_.topk) * 16.0 + 64.0);
    };
    std::vector<Chunk> chunks;
    int64_t i = 0;
    while (i < b.count) {
      Chunk c{i, 1, int(b.k_start[size_t(i)]), int(b.q_pos[size_t(i)])};
      if (bytes(1, c.lo, c.hi) > budget) {
        throw CudaError("not enough free device memory for one query row of " + std::to_string(c.hi - c.lo + 1) + " keys");
      }
      while (c.first + c.count < b.count && c.count < kMaxChunkQueries) {
        const size_t j = size_t(c.first + c.count);
        const int lo = std::min<int>(c.lo, int(b.k_start[j])), hi = std::max<int>(c.hi, int(b.q_pos[j]));
        if (bytes(c.count + 1, lo, hi) > budget) break;
        c.lo = lo, c.hi = hi, ++c.count;
      }
      chunks.push_back(c);
      i += c.count;
    }
    return chunks;
  }

  void score(KeyStore& keys, const Chunk& c, const int* lo, const int* hi, int range_lo, int range_hi,
             const uint32_t* mask, int words, float* out, int64_t stride, int base, double* stage) {
    const QueryBatch& b = *batch_;
    ScoreLaunch a;
    a.type = choose_type(keys.exact(), queries_.exact(), b.dim);
    if (a.type == ValueType::F32) {
      a.keys = keys.f32(s());
      a.q = queries_.q_f32(s()) + c.first * b.heads * b.dim;
      a.w = queries_.w_f32(s()) + c.first * b.heads;
      a.heads = int(b.heads);
      a.dim = int(b.dim);
    } else {
      const int64_t hp = round_up(b.heads, 8), dp = round_up(b.dim, 16);
      a.keys = keys.lowp(a.type, s());
      a.q = queries_.q_lowp(a.type, s()) + c.first * hp * dp;
      a.w = queries_.w_padded(a.type, s()) + c.first * hp;
      a.heads = int(hp);
      a.dim = int(dp);
    }
    a.scales = keys.scales();
    a.key_count = int(keys.count());
    a.queries = int(c.count);
    a.lo = lo + c.first;
    a.hi = hi + c.first;
    a.range_lo = range_lo;
    a.range_hi = range_hi;
    a.mask = mask;
    a.mask_words = words;
    a.unit_base = mask_unit_base(range_lo);
    a.out = out;
    a.out_stride = stride;
    a.out_base = base;
    timer_.begin(s(), stage);
    launch_score(a, s());
    timer_.end(s());
  }
  void score_tokens(const Chunk& c, const uint32_t* mask = nullptr) {
    scores_.resize(size_t(c.count * c.stride()));
    score(tokens_, c, lo_.data(), hi_.data(), c.lo, c.hi, mask, mask ? mask_words(c.lo, c.hi) : 0, scores_.data(),
          c.stride(), c.lo, &times_.token_scores_ms);
  }

  // Block scores J on the GPU, copied to jh_ (row i: blocks [c.lo/B, c.hi/B]).
  void score_blocks(const Chunk& c) {
    const int B = int(config_.block_size), jlo = c.lo / B, jhi = c.hi / B;
    const int64_t width = jhi - jlo + 1;
    j_.resize(size_t(c.count * width));
    score(blocks_, c, blo_.data(), bhi_.data(), jlo, jhi, nullptr, 0, j_.data(), width, jlo, &times_.block_scores_ms);
    jh_.resize(size_t(c.count * width));
    j_.download(jh_.data(), jh_.size(), s());
    stream_->synchronize();
  }
  std::span<const float> j_row(const Chunk& c, int64_t i, BlockSpan span) const {
    const int64_t jlo = c.lo / config_.block_size, width = c.hi / config_.block_size - jlo + 1;
    return {jh_.data() + i * width + (span.first - jlo), size_t(span.size())};
  }

  void upload_segments(const std::vector<int>& segs, const std::vector<int>& offsets, DeviceArray<int>& dsegs,
                       DeviceArray<int>& doffs) {
    dsegs.upload(segs.data(), std::max<size_t>(segs.size(), 1), s());  // never an empty allocation
    doffs.upload(offsets.data(), offsets.size(), s());
  }

  void run_topk(const Chunk& c, const DeviceArray<int>& segs, const DeviceArray<int>& offs, DeviceArray<int>& pos,
                DeviceArray<float>& sc, DeviceArray<int>& cnt) {
    pos.resize(size_t(c.count) * size_t(k()));
    sc.resize(size_t(c.count) * size_t(k()));
    cnt.resize(size_t(c.count));
    TopkLaunch t;
    t.scores = scores_.data();
    t.stride = c.stride();
    t.base = c.lo;
    t.segments = segs.data();
    t.seg_offsets = offs.data();
    t.rows = int(c.count);
    t.k = k();
    t.out_pos = pos.data();
    t.out_score = sc.data();
    t.out_count = cnt.data();
    timer_.begin(s(), &times_.topk_ms);
    launch_topk(t, s());
    timer_.end(s());
  }

  void audit_chunk(const QueryBatch& b, const Chunk& c, std::vector<QueryAudit>& out) {
    const int64_t B = config_.block_size;
    score_blocks(c);
    score_tokens(c);  // runs on the GPU while the host does the block stage
    const auto host_t0 = std::chrono::steady_clock::now();
    // Block stage on the host: the CPU engine's keep_blocks on J, queries in parallel (keep_blocks keeps
    // its scratch thread_local), then the per-query segment lists are concatenated in query order.
    std::vector<std::vector<int>> row_hisa(size_t(c.count)), row_block(size_t(c.count));
#pragma omp parallel for schedule(dynamic, 8)
    for (int64_t i = 0; i < c.count; ++i) {
      const size_t q = size_t(c.first + i);
      QueryAudit& a = out[q];
      a.q_pos = b.q_pos[q];
      a.k_start = b.k_start[q];
      a.visible = a.q_pos - a.k_start + 1;
      const BlockSpan span = eligible_blocks(a.k_start, a.q_pos, B);
      std::vector<int64_t> kept_block;
      const auto j = j_row(c, i, span);
      a.block_scores.assign(j.begin(), j.end());
      // Score bounds on the host (select/bounds.hpp), as the CPU engine computes them.
      a.block_bounds.clear();
      for (int64_t blk = span.first; blk <= span.last; ++blk) a.block_bounds.push_back(bounds_.score_bound(b, int64_t(q), blk));
      keep_blocks(j_row(c, i, span), span, config_.blocks, config_.forced, a.hisa_blocks);
      keep_blocks(j_row(c, i, span), span, config_.block_sparse_blocks(), ForcedMode::InBudget, kept_block);
      tokens_in_blocks(kept_block, B, a.k_start, a.q_pos, a.block);
      append_segments(a.hisa_blocks, a.k_start, a.q_pos, B, row_hisa[size_t(i)]);
      append_segments(kept_block, a.k_start, a.q_pos, B, row_block[size_t(i)]);
    }
    std::vector<int> flat_segs, flat_offs{0}, hisa_segs, hisa_offs{0}, block_segs, block_offs{0};
    for (int64_t i = 0; i < c.count; ++i) {
      flat_segs.push_back(int(b.k_start[size_t(c.first + i)]));
      flat_segs.push_back(int(b.q_pos[size_t(c.first + i)]));
      flat_offs.push_back(int(flat_segs.size() / 2));
      hisa_segs.insert(hisa_segs.end(), row_hisa[size_t(i)].begin(), row_hisa[size_t(i)].end());
      hisa_offs.push_back(int(hisa_segs.size() / 2));
      block_segs.insert(block_segs.end(), row_block[size_t(i)].begin(), row_block[size_t(i)].end());
      block_offs.push_back(int(block_segs.size() / 2));
    }
    upload_segments(flat_segs, flat_offs, flat_segs_, flat_offs_);
    upload_segments(hisa_segs, hisa_offs, hisa_segs_, hisa_offs_);
    upload_segments(block_segs, block_offs, block_segs_, block_offs_);
    times_.block_stage_ms += ms_since(host_t0);
    run_topk(c, flat_segs_, flat_offs_, flat_pos_, flat_score_, flat_count_);
    run_topk(c, hisa_segs_, hisa_offs_, hisa_pos_, hisa_score_, hisa_count_);
    row_max_.resize(size_t(c.count));
    mass_.resize(size_t(c.count) * 4);
    MassLaunch m;
    m.scores = scores_.data();
    m.stride = c.stride();
    m.base = c.lo;
    m.lo = lo_.data() + c.first;
    m.hi = hi_.data() + c.first;
    m.rows = int(c.count);
    m.a_pos = flat_pos_.data();
    m.a_count = flat_count_.data();
    m.b_pos = hisa_pos_.data();
    m.b_count = hisa_count_.data();
    m.width = k();
    m.c_segments = block_segs_.data();
    m.c_offsets = block_offs_.data();
    m.out_max = row_max_.data();
    m.out_mass = mass_.data();
    timer_.begin(s(), &times_.masses_ms);
    launch_masses(m, s());
    timer_.end(s());
    int max_blocks = 0;
    for (int64_t i = 0; i < c.count; ++i) {
      const size_t q = size_t(c.first + i);
      max_blocks = std::max(max_blocks, int(b.q_pos[q] / B - b.k_start[q] / B + 1));
    }
    block_best_.resize(size_t(c.count) * size_t(max_blocks));
    BlockMaxLaunch bm;
    bm.scores = scores_.data();
    bm.stride = c.stride();
    bm.base = c.lo;
    bm.lo = lo_.data() + c.first;
    bm.hi = hi_.data() + c.first;
    bm.rows = int(c.count);
    bm.block_size = int(B);
    bm.max_blocks = max_blocks;
    bm.out = block_best_.data();
    launch_block_max(bm, s());

    const size_t n = size_t(c.count), kk = size_t(k());
    std::vector<int> fpos(n * kk), fcnt(n), hpos(n * kk), hcnt(n);
    std::vector<float> fsc(n * kk), hsc(n * kk), rmax(n), best(n * size_t(max_blocks));
    std::vector<double> mass(n * 4);
    flat_pos_.download(fpos.data(), fpos.size(), s());
    flat_score_.download(fsc.data(), fsc.size(), s());
    flat_count_.download(fcnt.data(), n, s());
    hisa_pos_.download(hpos.data(), hpos.size(), s());
    hisa_count_.download(hcnt.data(), n, s());
    hisa_score_.download(hsc.data(), hsc.size(), s());
    block_best_.download(best.data(), best.size(), s());
    row_max_.download(rmax.data(), n, s());
    mass_.download(mass.data(), mass.size(), s());
    stream_->synchronize();
    timer_.collect();
    for (size_t i = 0; i < n; ++i) {
      QueryAudit& a = out[size_t(c.first) + i];
      a.flat.assign(fpos.begin() + i * kk, fpos.begin() + i * kk + fcnt[i]);
      a.flat_scores.assign(fsc.begin() + i * kk, fsc.begin() + i * kk + fcnt[i]);
      a.kth_score = a.visible > config_.topk ? *std::min_element(a.flat_scores.begin(), a.flat_scores.end())
                                             : -std::numeric_limits<float>::infinity();
      a.hisa.assign(hpos.begin() + i * kk, hpos.begin() + i * kk + hcnt[i]);
      a.hisa_scores.assign(hsc.begin() + i * kk, hsc.begin() + i * kk + hcnt[i]);
      a.block_best.assign(best.begin() + i * size_t(max_blocks), best.begin() + i * size_t(max_blocks) + a.block_scores.size());
      a.row_max = rmax[i];
      a.mass_visible = mass[4 * i + 0];
      a.mass_flat = mass[4 * i + 1];
      a.mass_hisa = mass[4 * i + 2];
      a.mass_block = mass[4 * i + 3];
    }
  }

  void select_chunk(const QueryBatch& b, const Chunk& c, Method method, std::vector<std::vector<int64_t>>& out) {
    const int64_t B = config_.block_size;
    std::vector<int> segs, offs{0};
    const uint32_t* mask = nullptr;
    if (method == Method::Flat) {
      for (int64_t i = 0; i < c.count; ++i) {
        segs.push_back(int(b.k_start[size_t(c.first + i)]));
        segs.push_back(int(b.q_pos[size_t(c.first + i)]));
        offs.push_back(int(segs.size() / 2));
      }
    } else {
      score_blocks(c);
      const auto host_t0 = std::chrono::steady_clock::now();
      std::vector<std::vector<int>> row_segs(size_t(c.count));
#pragma omp parallel for schedule(dynamic, 8)
      for (int64_t i = 0; i < c.count; ++i) {
        const size_t q = size_t(c.first + i);
        const int64_t ks = b.k_start[q], qp = b.q_pos[q];
        const BlockSpan span = eligible_blocks(ks, qp, B);
        std::vector<int64_t> kept;
        if (method == Method::Block) {
          keep_blocks(j_row(c, i, span), span, config_.block_sparse_blocks(), ForcedMode::InBudget, kept);
          tokens_in_blocks(kept, B, ks, qp, out[q]);
        } else {
          keep_blocks(j_row(c, i, span), span, config_.blocks, config_.forced, kept);
          append_segments(kept, ks, qp, B, row_segs[size_t(i)]);
        }
      }
      if (method == Method::Block) {
        timer_.collect();
        times_.block_stage_ms += ms_since(host_t0);
        return;
      }
      for (int64_t i = 0; i < c.count; ++i) {
        segs.insert(segs.end(), row_segs[size_t(i)].begin(), row_segs[size_t(i)].end());
        offs.push_back(int(segs.size() / 2));
      }
      // HISA's token stage scores only the 64-key units that hold kept tokens.
      const int words = mask_words(c.lo, c.hi), base = mask_unit_base(c.lo);
      std::vector<uint32_t> bits(size_t(c.count * words), 0u);
      for (int64_t i = 0; i < c.count; ++i) {
        for (int j = offs[size_t(i)]; j < offs[size_t(i) + 1]; ++j) {
          for (int u = segs[size_t(2 * j)] / kMaskUnit; u <= segs[size_t(2 * j + 1)] / kMaskUnit; ++u) {
            bits[size_t(i * words + (u - base) / 32)] |= 1u << ((u - base) % 32);
          }
        }
      }
      mask_.upload(bits.data(), bits.size(), s());
      mask = mask_.data();
      times_.block_stage_ms += ms_since(host_t0);
    }
    score_tokens(c, mask);
    upload_segments(segs, offs, flat_segs_, flat_offs_);
    run_topk(c, flat_segs_, flat_offs_, flat_pos_, flat_score_, flat_count_);
    const size_t n = size_t(c.count), kk = size_t(k());
    std::vector<int> pos(n * kk), cnt(n);
    flat_pos_.download(pos.data(), pos.size(), s());
    flat_count_.download(cnt.data(), n, s());
    stream_->synchronize();
    timer_.collect();
    for (size_t i = 0; i < n; ++i) out[size_t(c.first) + i].assign(pos.begin() + i * kk, pos.begin() + i * kk + cnt[i]);
  }

  int device_;
  size_t max_chunk_bytes_;  // 0: from the free device memory
  std::string name_;
  std::optional<Stream> stream_;  // created after cudaSetDevice
  const LayerKeys* keys_ = nullptr;
  const QueryBatch* batch_ = nullptr;  // the batch being processed
  SelectionConfig config_;
  PooledKeys pooled_;
  KeyStore tokens_, blocks_;
  QueryStore queries_;
  DeviceArray<int> lo_, hi_, blo_, bhi_;
  DeviceArray<float> scores_, j_;
  std::vector<float> jh_;
  DeviceArray<uint32_t> mask_;
  DeviceArray<int> flat_segs_, flat_offs_, hisa_segs_, hisa_offs_, block_segs_, block_offs_;
  DeviceArray<int> flat_pos_, flat_count_, hisa_pos_, hisa_count_;
  DeviceArray<float> flat_score_, hisa_score_, row_max_, block_best_;
  BlockBounds bounds_;
  DeviceArray<double> mass_;
  StageTimer timer_;
  StageTimes times_;
};

}  // namespace

StageTimes last_stage_times(const SelectionEngine& engine) {
  const auto* cuda_engine = dynamic_cast<const CudaEngine*>(&engine);
  if (cuda_engine == nullptr) throw std::invalid_argument("last_stage_times: not a CUDA engine");
  return cuda_engine->times();
}

std::vector<std::vector<int64_t>> topk_rows(const std::vector<std::vector<float>>& rows, int64_t first_position,
                                            int64_t k, int device) {
  HISA_CUDA_CHECK(cudaSetDevice(device));
  Stream stream;
  size_t width = 1;
  for (const auto& r : rows) width = std::max(width, r.size());
  const size_t n = rows.size();
  std::vector<float> flat(n * width, 0.0f);
  std::vector<int> segs, offs{0};
  for (size_t i = 0; i < n; ++i) {
    std::copy(rows[i].begin(), rows[i].end(), flat.begin() + i * width);
    if (!rows[i].empty()) {
      segs.push_back(int(first_position));
      segs.push_back(int(first_position + int64_t(rows[i].size()) - 1));
    }
    offs.push_back(int(segs.size() / 2));
  }
  segs.resize(std::max<size_t>(segs.size(), 1));
  DeviceArray<float> scores, out_score;
  DeviceArray<int> dsegs, doffs, out_pos, out_count;
  scores.upload(flat.data(), flat.size(), stream.get());
  dsegs.upload(segs.data(), segs.size(), stream.get());
  doffs.upload(offs.data(), offs.size(), stream.get());
  out_pos.resize(std::max<size_t>(n * size_t(k), 1));
  out_score.resize(std::max<size_t>(n * size_t(k), 1));
  out_count.resize(std::max<size_t>(n, 1));
  TopkLaunch t;
  t.scores = scores.data();
  t.stride = int64_t(width);
  t.base = int(first_position);
  t.segments = dsegs.data();
  t.seg_offsets = doffs.data();
  t.rows = int(n);
  t.k = int(k);
  t.out_pos = out_pos.data();
  t.out_score = out_score.data();
  t.out_count = out_count.data();
  launch_topk(t, stream.get());
  std::vector<int> pos(n * size_t(k)), cnt(n);
  out_pos.download(pos.data(), pos.size(), stream.get());
  out_count.download(cnt.data(), n, stream.get());
  stream.synchronize();
  std::vector<std::vector<int64_t>> result(n);
  for (size_t i = 0; i < n; ++i) result[i].assign(pos.begin() + i * size_t(k), pos.begin() + i * size_t(k) + cnt[i]);
  return result;
}

}  // namespace hisa::cuda

namespace hisa {

std::unique_ptr<SelectionEngine> make_cuda_engine(int device, size_t max_chunk_bytes) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    count = 0;
  }
  if (device < 0 || device >= count) {
    throw UsageError("no CUDA device " + std::to_string(device) + " (" + std::to_string(count) + " found)");
  }
  return std::make_unique<cuda::CudaEngine>(device, max_chunk_bytes);
}

}  // namespace hisa
