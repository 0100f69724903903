// The CUDA selection engine: scoring (score.cu, score_wgmma.cu), exact top-k and softmax masses (topk.cu), the
// block choice (block_choice.cu) on the GPU, through one scoring context (cuda_scoring.hpp).
//
// HISA's block stage: in select() it stays on the GPU (block_choice.cu: the kept blocks by the top-k kernel
// with keep_blocks' rule, then the token stage's segments, unit masks and per-tile work lists), so nothing
// returns to the host between the block scores and the token top-k. audit() needs J, the kept blocks and the
// bounds on the host for its diagnosis anyway, so there J is copied back and the CPU engine's own functions
// (pool_keys, keep_blocks in src/select/blocks.cpp) choose the blocks, following the Definitions line by line;
// the GPU tests hold both ways to the same results.
//
// Per batch, queries are processed in chunks sized from the free device memory; a chunk has one fp32 score
// row per query over the chunk's key range (needed for top-k and the coverage masses), never a
// [queries·heads, L] array. Every score of a query comes from one computation, so DSA, HISA and block-sparse
// are compared on identical scores, as in the CPU engine. The sweep scores with the same chunks and launches.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>

#include "core/error.hpp"
#include "core/stopwatch.hpp"
#include "core/streaming_rows.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/cuda_engine.hpp"
#include "cuda/cuda_scoring.hpp"
#include "cuda/device_buffer.hpp"
#include "cuda/kernels.hpp"
#include "select/blocks.hpp"

namespace hisa::cuda {

namespace {

// Host stages in milliseconds, as the GPU's events give theirs.
class HostTimer : public Stopwatch {
 public:
  explicit HostTimer(double& ms) : Stopwatch(ms, 1e3) {}
};

// Device positions are int32.
void check_int32(int64_t keys, int64_t topk) {
  if (keys >= int64_t(std::numeric_limits<int>::max()) || topk >= int64_t(std::numeric_limits<int>::max())) {
    throw UsageError("the CUDA engine handles fewer than 2^31 keys and k < 2^31");
  }
}

// Device buffers of one selection's top-k: positions, scores and counts per row.
struct TopkOut {
  DeviceArray<int> segs, offs, pos, count;
  DeviceArray<float> score;
};

// select()'s selections on their way to the caller: each chunk's top-k goes to one of two device slots; a stream
// of its own copies the slot to pinned host memory once the top-k is done, and the host moves the rows into the
// caller's vectors (on every core) while the GPU scores the next chunk. Chunk n uses slot n % 2, whose chunk
// n - 2 the host has finished (so its copy is complete) before chunk n is launched.
class SelectionDownloads {
 public:
  // Both slots sized for the batch's largest chunk before the first launch: growing one later would free
  // memory (cudaFree, cudaFreeHost) in the middle of the pipeline, which waits for the whole device.
  void reserve(int64_t rows, int k) {
    const size_t n = size_t(std::max<int64_t>(rows, 1));
    for (Slot& s : slots_) {
      s.out.pos.resize(n * size_t(k));
      s.out.score.resize(n * size_t(k));
      s.out.count.resize(n);
      s.pos.reserve(n * size_t(k));
      s.count.reserve(n);
    }
  }
  TopkOut& slot(size_t n) { return slots_[n % 2].out; }
  // Chunk n's top-k (k per row) has been launched on `compute`: its positions and counts start down.
  void download(size_t n, const Chunk& c, int k, cudaStream_t compute) {
    if (!copies_) copies_.emplace();  // made on first use, with the engine's GPU current
    Slot& s = slots_[n % 2];
    if (!s.computed) s.computed.emplace();
    const size_t rows = size_t(c.count), width = size_t(k);
    HISA_CUDA_CHECK(cudaEventRecord(s.computed->get(), compute));
    HISA_CUDA_CHECK(cudaStreamWaitEvent(copies_->get(), s.computed->get(), 0));
    s.out.pos.download(s.pos.reserve(rows * width), rows * width, copies_->get());
    s.out.count.download(s.count.reserve(rows), rows, copies_->get());
    s.copied.record(copies_->get());
    s.chunk = c;
    s.width = width;
  }
  // Waits for chunk n's copy, then fills its queries' vectors in `out`; host_ms gets the filling's time.
  void finish(size_t n, std::vector<std::vector<int64_t>>& out, double& host_ms) {
    Slot& s = slots_[n % 2];
    if (!s.copied.pending()) return;
    s.copied.wait();
    HostTimer t(host_ms);
    const int* pos = s.pos.data();
    const int* count = s.count.data();
#pragma omp parallel
    {
#pragma omp for schedule(static) nowait
      for (int64_t i = 0; i < s.chunk.count; ++i) {
        std::vector<int64_t>& row = out[size_t(s.chunk.first + i)];
        row.resize(size_t(count[i]));
        widen_row(pos + size_t(i) * s.width, count[i], row.data());
      }
      finish_streaming_stores();  // before the region's closing barrier, after which the caller reads the rows
    }
  }
  // Forgets the chunks in flight, once their copies are done (a batch started again).
  void drop() {
    for (Slot& s : slots_) s.copied.wait();
  }

 private:
  struct Slot {
    TopkOut out;
    PinnedArray<int> pos, count;
    PendingCopy copied;  // after pos and count: waited for before they are freed
    std::optional<PlainEvent> computed;
    Chunk chunk;
    size_t width = 0;
  };
  std::optional<Stream> copies_;  // before the slots: destroyed after their copies have been waited for
  Slot slots_[2];
};

class CudaEngine final : public SelectionEngine {
 public:
  CudaEngine(int device, size_t max_chunk_bytes, bool fp8_mma) : scoring_(device, fp8_mma), max_chunk_bytes_(max_chunk_bytes) {}
  std::string name() const override { return scoring_.name(); }
  bool inexact_scores() const override { return scoring_.used_fp8_mma(); }
  StageTimes times() const override {
    const StageTimes& t = ms_;
    return {t.calls * 1e-3,       t.pooling * 1e-3, t.token_scores * 1e-3, t.block_scores * 1e-3,
            t.block_choice * 1e-3, t.topk * 1e-3,    t.masses * 1e-3,       (t.transfers + scoring_.transfers_ms()) * 1e-3};
  }

  void set_layer(const LayerKeys& keys, const SelectionConfig& config) override {
    config.validate();
    check_int32(keys.count, config.topk);
    if (keys.on_device() && keys.device != scoring_.device()) {
      throw std::invalid_argument("keys on CUDA device " + std::to_string(keys.device) + " given to the engine on device " +
                                  std::to_string(scoring_.device()));
    }
    HostTimer t(ms_.pooling);
    scoring_.use_device();
    keys_ = &keys;
    config_ = config;
    if (keys.on_device()) {
      pooled_ = pool_on_device(keys, config.block_size, config.pool);
      tokens_.reset_on_device(keys.device_k, keys.device_k_scale, keys.count, keys.dim, "tokens", stream());
    } else {
      pooled_ = pool_keys(keys, config.block_size, config.pool);
      tokens_.reset(keys.k.data(), keys.k_scale.data(), keys.count, keys.dim, "tokens", stream());
    }
    blocks_.reset(pooled_.k.data(), pooled_.scale.data(), pooled_.count, pooled_.dim, pooled_name(config.block_size),
                  stream());
    scoring_.synchronize();
    prepared_for_sweep_ = false;
  }

  void audit(const QueryBatch& b, std::vector<QueryAudit>& out) override {
    HostTimer t(ms_.calls);
    begin_batch(b);
    out.assign(size_t(b.count), QueryAudit{});
    for (const Chunk& c : plan_chunks(b, true, false)) audit_chunk(b, c, out);
  }

  // Host queries are taken as exact in bf16 and checked as they are encoded (QueryStore::reset): checking them
  // first would read the whole batch once more before the first chunk could start. Off the grid, the batch starts
  // again with the check first, so the selections are the same either way.
  // out's rows are resized, not cleared first: a caller that passes the same vectors again (one per layer) has
  // them overwritten in place, without the zero fill that growing an emptied vector costs.
  void select(const QueryBatch& b, Method method, std::vector<std::vector<int64_t>>& out) override {
    HostTimer t(ms_.calls);
    out.resize(size_t(b.count));
    try {
      try {
        select_chunks(b, method, out, true);
      } catch (const QueriesOffBf16Grid&) {
        scoring_.synchronize();
        scoring_.timer().discard();  // the abandoned chunks' stage times: not this call's kernels
        select_chunks(b, method, out, false);
      }
    } catch (...) {
      scoring_.queries().settle();  // no copy left reading the caller's codes
      out.clear();  // no rows of an earlier call left behind
      throw;
    }
  }

  // The keys' block summary once per layer, then every (query, eligible block) bound of the batch in one launch;
  // only the bounds come back.
  void block_bounds(const QueryBatch& b, std::vector<std::vector<float>>& out) override {
    HostTimer t(ms_.calls);
    begin_batch(b);
    const int64_t B = config_.block_size;
    std::vector<int64_t> offsets(size_t(b.count) + 1, 0);
    int64_t max_blocks = 0;
    for (int64_t i = 0; i < b.count; ++i) {
      const BlockSpan span = eligible_blocks(b.k_start[size_t(i)], b.q_pos[size_t(i)], B);
      offsets[size_t(i) + 1] = offsets[size_t(i)] + span.size();
      max_blocks = std::max(max_blocks, span.size());
    }
    std::vector<float> all(size_t(offsets.back()));
    BlockBoundLaunch a;
    a.s = block_summary();
    a.q = scoring_.queries().q_f32(stream());
    a.w = scoring_.queries().w_f32(stream());
    a.rows = int(b.count);
    a.heads = int(b.heads);
    a.dim = int(b.dim);
    a.lo = scoring_.visible_lo();
    a.hi = scoring_.visible_hi();
    bound_offsets_.upload(offsets.data(), offsets.size(), stream());
    a.offsets = bound_offsets_.data();
    a.block_size = int(B);
    a.max_blocks = int(max_blocks);
    bounds_out_.resize(std::max<size_t>(all.size(), 1));
    a.out = bounds_out_.data();
    launch_block_bounds(a, stream());
    bounds_out_.download(all.data(), all.size(), stream());
    scoring_.synchronize();
    out.resize(size_t(b.count));
    for (int64_t i = 0; i < b.count; ++i) {
      out[size_t(i)].assign(all.begin() + offsets[size_t(i)], all.begin() + offsets[size_t(i) + 1]);
    }
  }

  void score_row(const QueryBatch& b, int64_t i, std::vector<float>& out) override {
    HostTimer t(ms_.calls);
    KeyScoresLaunch a = key_scores_of(b, i, false);  // checks i
    a.from = b.k_start[size_t(i)];
    a.count = std::max<int64_t>(0, b.q_pos[size_t(i)] - a.from + 1);
    run_key_scores(a, out, nullptr);
  }

  void score_positions(const QueryBatch& b, int64_t i, std::span<const int64_t> positions, bool pooled,
                       std::vector<float>& scores, std::vector<double>* magnitudes) override {
    HostTimer t(ms_.calls);
    KeyScoresLaunch a = key_scores_of(b, i, pooled);
    const int64_t count = pooled ? pooled_.count : keys_->count;
    for (int64_t p : positions) {
      if (p < 0 || p >= count) throw std::out_of_range("CudaEngine::score_positions: position " + std::to_string(p) + " of " + std::to_string(count));
    }
    positions_.upload(positions.data(), positions.size(), stream());
    a.positions = positions_.data();
    a.count = int64_t(positions.size());
    run_key_scores(a, scores, magnitudes);
  }

  void set_sweep_layer(const LayerKeys& keys, int64_t topk, std::span<const PoolVariant> variants) override {
    if (keys.on_device()) throw std::invalid_argument("CudaEngine: set_sweep_layer() needs keys in host memory");
    check_int32(keys.count, topk);
    HostTimer t(ms_.pooling);
    scoring_.use_device();
    keys_ = &keys;
    config_ = SelectionConfig{};
    config_.topk = topk;
    variants_.assign(variants.begin(), variants.end());
    variant_pooled_ = pool_variants(keys, variants);  // the stores below point into it
    tokens_.reset(keys.k.data(), keys.k_scale.data(), keys.count, keys.dim, "tokens", stream());
    variant_blocks_.resize(variants.size());
    variant_lo_.resize(variants.size());
    variant_hi_.resize(variants.size());
    for (size_t v = 0; v < variants.size(); ++v) {
      const PooledKeys& p = variant_pooled_[v];
      if (!variant_blocks_[v]) variant_blocks_[v] = std::make_unique<KeyStore>();
      variant_blocks_[v]->reset(p.k.data(), p.scale.data(), p.count, p.dim, pooled_name(p.block_size), stream());
    }
    scoring_.synchronize();
    prepared_for_sweep_ = true;
  }

  void sweep(const QueryBatch& b, std::vector<SweepScores>& out) override {
    HostTimer t(ms_.calls);
    if (keys_ == nullptr || !prepared_for_sweep_) throw std::logic_error("CudaEngine: set_sweep_layer before sweep");
    scoring_.set_batch(b, keys_->count);
    start_sweep_scores(b, variants_.size(), out);
    int64_t smallest_block = std::numeric_limits<int64_t>::max();
    for (size_t v = 0; v < variants_.size(); ++v) {
      scoring_.upload_block_ranges(variants_[v].block_size, variant_lo_[v], variant_hi_[v]);
      smallest_block = std::min(smallest_block, variants_[v].block_size);
    }
    for (const Chunk& c : scoring_.plan(b, true, smallest_block, config_.topk, max_chunk_bytes_, j_.capacity_bytes())) {
      sweep_chunk(b, c, out);
    }
  }

 private:
  cudaStream_t stream() const { return scoring_.stream(); }
  int k() const { return int(config_.topk); }
  static std::string pooled_name(int64_t B) { return "pooled keys (B = " + std::to_string(B) + ")"; }

  // pool_keys of keys that live on this GPU: the fp32 means summed here (the same sums, device_operands.hpp), and
  // only they (1/B of the keys) come to the host for pool_keys' last step.
  PooledKeys pool_on_device(const LayerKeys& keys, int64_t B, PoolPrecision precision) {
    PooledKeys p;
    p.block_size = B;
    p.dim = keys.dim;
    p.count = (keys.count + B - 1) / B;
    p.k.resize(size_t(p.count * p.dim));
    DeviceArray<float> means;
    means.resize(p.k.size());
    pool_means_on_device(keys.device_k, keys.device_k_scale, keys.count, keys.dim, B, means.data(), stream());
    means.download(p.k.data(), p.k.size(), stream());
    scoring_.synchronize();
    finish_pooling(p, precision);
    return p;
  }

  // Row i's q and w, and the tokens' or pooled keys' values, for a launch of the key-scores kernel: a batch on
  // this GPU read in place (no pass over the batch), a host batch uploaded.
  KeyScoresLaunch key_scores_of(const QueryBatch& b, int64_t i, bool pooled) {
    if (i < 0 || i >= b.count) throw std::out_of_range("CudaEngine: row " + std::to_string(i) + " of " + std::to_string(b.count));
    if (b.on_device()) {
      if (keys_ == nullptr || prepared_for_sweep_) throw std::logic_error("CudaEngine: set_layer before audit/select");
      if (b.device != scoring_.device()) throw std::invalid_argument("queries on another CUDA device than the engine's");
      scoring_.use_device();
    } else {
      begin_batch(b);
    }
    KeyScoresLaunch a;
    a.q = (b.on_device() ? b.device_q : scoring_.queries().q_f32(stream())) + i * b.heads * b.dim;
    a.w = (b.on_device() ? b.device_w : scoring_.queries().w_f32(stream())) + i * b.heads;
    a.heads = int(b.heads);
    a.dim = int(b.dim);
    KeyStore& keys = pooled ? blocks_ : tokens_;
    a.keys = keys.f32(stream());
    a.scales = keys.scales();
    return a;
  }
  // Runs it and brings its scores (and magnitudes) back.
  void run_key_scores(KeyScoresLaunch a, std::vector<float>& scores, std::vector<double>* magnitudes) {
    const size_t n = size_t(a.count);
    key_scores_.resize(std::max<size_t>(n, 1));
    a.out = key_scores_.data();
    if (magnitudes != nullptr) {
      key_magnitudes_.resize(std::max<size_t>(n, 1));
      a.magnitudes = key_magnitudes_.data();
    }
    launch_key_scores(a, stream());
    scores.resize(n);
    key_scores_.download(scores.data(), n, stream());
    if (magnitudes != nullptr) {
      magnitudes->resize(n);
      key_magnitudes_.download(magnitudes->data(), n, stream());
    }
    scoring_.synchronize();
  }

  // BlockBounds' summary of the layer's keys (block_bounds), made on first use after set_layer.
  BlockSummary block_summary() {
    const int64_t B = config_.block_size, blocks = (keys_->count + B - 1) / B, D = keys_->dim;
    if (summary_for_ != tokens_.generation()) {
      summary_box_.resize(size_t(3 * blocks * D));
      summary_ball_.resize(size_t(2 * blocks));
      summary_scales_.resize(size_t(2 * blocks));
      BlockSummaryLaunch a;
      a.lo = summary_box_.data();
      a.hi = a.lo + blocks * D;
      a.centre = a.hi + blocks * D;
      a.radius = summary_ball_.data();
      a.max_norm = a.radius + blocks;
      a.scale_min = summary_scales_.data();
      a.scale_max = a.scale_min + blocks;
      a.keys = tokens_.f32(stream());
      a.scales = tokens_.scales();
      a.key_count = keys_->count;
      a.blocks = blocks;
      a.dim = int(D);
      a.block_size = int(B);
      launch_block_summary(a, stream());
      summary_ = a;
      summary_for_ = tokens_.generation();
    }
    return summary_;
  }

  void begin_batch(const QueryBatch& b, bool assume_bf16 = false) {
    if (keys_ == nullptr || prepared_for_sweep_) throw std::logic_error("CudaEngine: set_layer before audit/select");
    if (b.on_device() && b.device != scoring_.device()) {
      throw std::invalid_argument("queries on CUDA device " + std::to_string(b.device) + " given to the engine on device " +
                                  std::to_string(scoring_.device()));
    }
    scoring_.set_batch(b, keys_->count, assume_bf16);
    scoring_.upload_block_ranges(config_.block_size, blo_, bhi_);
  }
  // gpu_block_choice: select()'s block stage runs on the GPU (BlockChoice's buffers count); audit() chooses
  // on the host.
  std::vector<Chunk> plan_chunks(const QueryBatch& b, bool token_scores, bool gpu_block_choice) {
    return scoring_.plan(b, token_scores, config_.block_size, config_.topk, max_chunk_bytes_, j_.capacity_bytes(),
                         gpu_block_choice ? std::max(config_.blocks, config_.block_sparse_blocks()) : 0);
  }
  // Query i's J over its eligible blocks, from the chunk's J on the host (row i: blocks [c.lo/B, c.hi/B]).
  std::span<const float> j_row(const Chunk& c, int64_t i, BlockSpan span, int64_t B) const {
    const int64_t jlo = c.lo / B, width = c.hi / B - jlo + 1;
    return {jh_.data() + i * width + (span.first - jlo), size_t(span.size())};
  }
  void run_topk(const Chunk& c, TopkOut& t) {
    scoring_.run_topk(c, k(), t.segs, t.offs, t.pos, t.score, t.count, &ms_.topk);
  }
  // ---- audit ----------------------------------------------------------------------------------------

  void audit_chunk(const QueryBatch& b, const Chunk& c, std::vector<QueryAudit>& out) {
    scoring_.score_blocks_to_host(blocks_, c, config_.block_size, blo_.data(), bhi_.data(), j_, jh_, &ms_.block_scores);
    scoring_.score_tokens(tokens_, c, &ms_.token_scores);  // runs on the GPU while the host chooses the blocks
    choose_blocks_on_host(b, c, out);
    run_topk(c, flat_);
    run_topk(c, hisa_);
    const int max_blocks = launch_masses_and_block_best(b, c);
    download_audit(c, max_blocks, out);
  }

  // The block stage on the host: the CPU engine's keep_blocks on J, queries in parallel (keep_blocks keeps its
  // scratch thread_local), then the top-k segment lists of DSA, HISA and block-sparse, uploaded.
  void choose_blocks_on_host(const QueryBatch& b, const Chunk& c, std::vector<QueryAudit>& out) {
    HostTimer t(ms_.block_choice);
    const int64_t B = config_.block_size;
    std::vector<std::vector<int>> row_hisa(size_t(c.count)), row_block(size_t(c.count));
#pragma omp parallel for schedule(dynamic, 8)
    for (int64_t i = 0; i < c.count; ++i) {
      QueryAudit& a = out[size_t(c.first + i)];
      set_query_position(a, b, c.first + i);
      const BlockSpan span = eligible_blocks(a.k_start, a.q_pos, B);
      const auto j = j_row(c, i, span, B);
      a.block_scores.assign(j.begin(), j.end());
      std::vector<int64_t> kept_block;
      keep_blocks(j, span, config_.blocks, config_.forced, a.hisa_blocks);
      keep_blocks(j, span, config_.block_sparse_blocks(), ForcedMode::InBudget, kept_block);
      tokens_in_blocks(kept_block, B, a.k_start, a.q_pos, a.block);
      append_segments(a.hisa_blocks, a.k_start, a.q_pos, B, row_hisa[size_t(i)]);
      append_segments(kept_block, a.k_start, a.q_pos, B, row_block[size_t(i)]);
    }
    std::vector<int> flat_segs, flat_offs{0};
    append_visible_segments(b, c, flat_segs, flat_offs);
    scoring_.upload_segments(flat_segs, flat_offs, flat_.segs, flat_.offs);
    upload_rows(row_hisa, hisa_.segs, hisa_.offs);
    upload_rows(row_block, block_segs_, block_offs_);
  }
  // Per-row segment lists concatenated in row order, with each row's end, uploaded.
  void upload_rows(const std::vector<std::vector<int>>& rows, DeviceArray<int>& segs, DeviceArray<int>& offs) {
    std::vector<int> all, ends{0};
    for (const auto& r : rows) {
      all.insert(all.end(), r.begin(), r.end());
      ends.push_back(int(all.size() / 2));
    }
    scoring_.upload_segments(all, ends, segs, offs);
  }

  // Softmax masses over the visible keys and the three selections, and each eligible block's best score.
  // Returns the blocks per row of the block maxima.
  int launch_masses_and_block_best(const QueryBatch& b, const Chunk& c) {
    const int64_t B = config_.block_size;
    row_max_.resize(size_t(c.count));
    mass_.resize(size_t(c.count) * 4);
    MassLaunch m;
    m.scores = scoring_.scores();
    m.stride = c.stride();
    m.base = c.lo;
    m.lo = scoring_.visible_lo() + c.first;
    m.hi = scoring_.visible_hi() + c.first;
    m.rows = int(c.count);
    m.a_pos = flat_.pos.data();
    m.a_count = flat_.count.data();
    m.b_pos = hisa_.pos.data();
    m.b_count = hisa_.count.data();
    m.width = k();
    m.c_segments = block_segs_.data();
    m.c_offsets = block_offs_.data();
    m.out_max = row_max_.data();
    m.out_mass = mass_.data();
    scoring_.timer().begin(stream(), &ms_.masses);
    launch_masses(m, stream());
    int max_blocks = 0;
    for (int64_t i = 0; i < c.count; ++i) {
      const size_t q = size_t(c.first + i);
      max_blocks = std::max(max_blocks, int(b.q_pos[q] / B - b.k_start[q] / B + 1));
    }
    block_best_.resize(size_t(c.count) * size_t(max_blocks));
    BlockMaxLaunch bm;
    bm.scores = scoring_.scores();
    bm.stride = c.stride();
    bm.base = c.lo;
    bm.lo = scoring_.visible_lo() + c.first;
    bm.hi = scoring_.visible_hi() + c.first;
    bm.rows = int(c.count);
    bm.block_size = int(B);
    bm.max_blocks = max_blocks;
    bm.out = block_best_.data();
    launch_block_max(bm, stream());
    scoring_.timer().end(stream());
    return max_blocks;
  }

  void download_audit(const Chunk& c, int max_blocks, std::vector<QueryAudit>& out) {
    const size_t n = size_t(c.count), kk = size_t(k());
    std::vector<int> fpos(n * kk), fcnt(n), hpos(n * kk), hcnt(n);
    std::vector<float> fsc(n * kk), hsc(n * kk), rmax(n), best(n * size_t(max_blocks));
    std::vector<double> mass(n * 4);
    scoring_.synchronize();  // the copies alone are timed
    {
      HostTimer copies(ms_.transfers);
      flat_.pos.download(fpos.data(), fpos.size(), stream());
      flat_.score.download(fsc.data(), fsc.size(), stream());
      flat_.count.download(fcnt.data(), n, stream());
      hisa_.pos.download(hpos.data(), hpos.size(), stream());
      hisa_.count.download(hcnt.data(), n, stream());
      hisa_.score.download(hsc.data(), hsc.size(), stream());
      block_best_.download(best.data(), best.size(), stream());
      row_max_.download(rmax.data(), n, stream());
      mass_.download(mass.data(), mass.size(), stream());
      scoring_.synchronize();
    }
    scoring_.timer().collect();
    for (size_t i = 0; i < n; ++i) {
      QueryAudit& a = out[size_t(c.first) + i];
      a.flat.assign(fpos.begin() + i * kk, fpos.begin() + i * kk + fcnt[i]);
      a.flat_scores.assign(fsc.begin() + i * kk, fsc.begin() + i * kk + fcnt[i]);
      a.kth_score = kth_score(a, config_.topk);
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

  // ---- select ---------------------------------------------------------------------------------------

  // The chunks with the most score cells first, so that the score rows, the largest per-chunk buffer, are
  // allocated once (a later cudaFree would wait for the whole device and stall the pipeline); the result slots
  // are sized for the largest chunk up front. Each chunk's selections come down and into `out` while the GPU
  // runs the next chunk (SelectionDownloads).
  void select_chunks(const QueryBatch& b, Method method, std::vector<std::vector<int64_t>>& out, bool assume_bf16) {
    results_.drop();  // chunks of a call that was abandoned (the batch started again, or an error)
    begin_batch(b, assume_bf16);
    std::vector<Chunk> chunks = plan_chunks(b, method != Method::Block, method != Method::Flat);
    std::stable_sort(chunks.begin(), chunks.end(),
                     [](const Chunk& x, const Chunk& y) { return x.count * x.stride() > y.count * y.stride(); });
    if (method == Method::Block) {
      for (const Chunk& c : chunks) select_block(b, c, out);
      return;
    }
    int64_t most_rows = 0;
    for (const Chunk& c : chunks) most_rows = std::max(most_rows, c.count);
    results_.reserve(most_rows, k());
    // Per chunk, the host encodes the next chunk's queries while the GPU scores this one, and only then waits
    // for the chunk before's selections: encoding after that wait kept the GPU idle until it was done.
    KeyStore& first_scored = method == Method::Flat ? tokens_ : blocks_;
    for (size_t n = 0; n < chunks.size(); ++n) {
      TopkOut& dst = results_.slot(n);
      if (method == Method::Flat) select_flat(b, chunks[n], dst);
      if (method == Method::Hisa) select_hisa(chunks[n], dst);
      results_.download(n, chunks[n], k(), stream());
      if (n + 1 < chunks.size()) {
        scoring_.prefetch_queries(first_scored, chunks[n + 1]);
        if (method == Method::Hisa) scoring_.prefetch_queries(tokens_, chunks[n + 1]);  // the same codes when both are 16-bit
      }
      if (n > 0) results_.finish(n - 1, out, ms_.transfers);
    }
    if (!chunks.empty()) results_.finish(chunks.size() - 1, out, ms_.transfers);
    scoring_.synchronize();
    scoring_.timer().collect();
  }

  void select_flat(const QueryBatch& b, const Chunk& c, TopkOut& dst) {
    std::vector<int> segs, offs{0};
    append_visible_segments(b, c, segs, offs);
    scoring_.upload_segments(segs, offs, dst.segs, dst.offs);
    scoring_.score_tokens(tokens_, c, &ms_.token_scores);
    run_topk(c, dst);
  }

  // The block stage stays on the GPU: J, the kept blocks (at most the chunk's widest block range: a budget of
  // at least that keeps every block, as the whole range does, and the per-row buffers do not follow a huge m),
  // then the token stage's work lists, the kept blocks' token scores and their top-k.
  void select_hisa(const Chunk& c, TopkOut& dst) {
    const int tile = scoring_.tile_keys(tokens_);
    keep_blocks_on_gpu(c, config_.blocks, config_.forced == ForcedMode::Extra);
    scoring_.timer().begin(stream(), &ms_.block_choice);
    choice_.token_work(scoring_.visible_lo() + c.first, scoring_.visible_hi() + c.first, config_.block_size, c.lo, c.hi,
                       tile, stream());
    scoring_.timer().end(stream());
    scoring_.score_tokens(tokens_, c, &ms_.token_scores, &choice_);
    scoring_.run_topk(c, k(), choice_.segments(), choice_.segment_offsets(), dst.pos, dst.score, dst.count, &ms_.topk);
  }

  // Every token of the kept blocks: no token scores needed.
  void select_block(const QueryBatch& b, const Chunk& c, std::vector<std::vector<int64_t>>& out) {
    const int m = keep_blocks_on_gpu(c, config_.block_sparse_blocks(), false);
    const size_t n = size_t(c.count), cap = size_t(BlockChoice::capacity(m));
    std::vector<int> kept(n * cap), cnt(n);
    HISA_CUDA_CHECK(cudaMemcpyAsync(kept.data(), choice_.kept(), kept.size() * sizeof(int), cudaMemcpyDeviceToHost, stream()));
    HISA_CUDA_CHECK(cudaMemcpyAsync(cnt.data(), choice_.kept_count(), n * sizeof(int), cudaMemcpyDeviceToHost, stream()));
    scoring_.synchronize();
    scoring_.timer().collect();
    for (size_t i = 0; i < n; ++i) {
      const size_t q = size_t(c.first) + i;
      const std::vector<int64_t> blocks(kept.begin() + i * cap, kept.begin() + i * cap + cnt[i]);
      tokens_in_blocks(blocks, config_.block_size, b.k_start[q], b.q_pos[q], out[q]);
    }
  }

  // J of the chunk and the m best blocks per row (keep_blocks' rule) on the GPU; returns m as clamped.
  int keep_blocks_on_gpu(const Chunk& c, int64_t m, bool forced_extra) {
    const int64_t B = config_.block_size;
    scoring_.score_blocks(blocks_, c, B, blo_.data(), bhi_.data(), j_, &ms_.block_scores);
    const int jlo = int(c.lo / B);
    const int64_t width = c.hi / B - jlo + 1;
    const int kept = int(std::min(m, width));
    const BlockRows rows{j_.data(), width, jlo, blo_.data() + c.first, bhi_.data() + c.first, int(c.count)};
    scoring_.timer().begin(stream(), &ms_.block_choice);
    choice_.keep(rows, kept, forced_extra, stream());
    scoring_.timer().end(stream());
    return kept;
  }

  // ---- sweep ----------------------------------------------------------------------------------------

  // DSA over [k_start, q_pos], then J of every variant over the chunk's blocks; each query keeps its eligible
  // slice. Only k positions and the eligible J come back; score rows stay on the GPU.
  void sweep_chunk(const QueryBatch& b, const Chunk& c, std::vector<SweepScores>& out) {
    scoring_.score_tokens(tokens_, c, &ms_.token_scores);
    std::vector<int> segs, offs{0};
    append_visible_segments(b, c, segs, offs);
    scoring_.upload_segments(segs, offs, flat_.segs, flat_.offs);
    run_topk(c, flat_);
    const size_t n = size_t(c.count), kk = size_t(k());
    pos_h_.resize(n * kk);
    count_h_.resize(n);
    flat_.pos.download(pos_h_.data(), pos_h_.size(), stream());
    flat_.count.download(count_h_.data(), n, stream());
    for (size_t v = 0; v < variants_.size(); ++v) {
      const int64_t B = variants_[v].block_size;
      scoring_.score_blocks_to_host(*variant_blocks_[v], c, B, variant_lo_[v].data(), variant_hi_[v].data(), j_, jh_,
                                    &ms_.block_scores);
      for (int64_t i = 0; i < c.count; ++i) {
        SweepScores& o = out[size_t(c.first + i)];
        const auto j = j_row(c, i, eligible_blocks(o.k_start, o.q_pos, B), B);
        o.J[v].assign(j.begin(), j.end());
      }
    }
    scoring_.synchronize();
    scoring_.timer().collect();
    for (size_t i = 0; i < n; ++i) {
      out[size_t(c.first) + i].flat.assign(pos_h_.begin() + ptrdiff_t(i * kk),
                                           pos_h_.begin() + ptrdiff_t(i * kk + size_t(count_h_[i])));
    }
  }

  CudaScoring scoring_;
  size_t max_chunk_bytes_;  // 0: from the free device memory
  const LayerKeys* keys_ = nullptr;
  bool prepared_for_sweep_ = false;  // the last call was set_sweep_layer, not set_layer
  SelectionConfig config_;
  // set_layer: the pooled keys of config_.
  PooledKeys pooled_;
  KeyStore tokens_, blocks_;
  // block_bounds(): the summary of the keys of generation summary_for_ (0: none), the offsets and the bounds.
  DeviceArray<float> summary_box_, summary_scales_, bounds_out_;
  DeviceArray<double> summary_ball_;
  DeviceArray<int64_t> bound_offsets_;
  // score_row() and score_positions(): the positions, scores and magnitudes.
  DeviceArray<int64_t> positions_;
  DeviceArray<float> key_scores_;
  DeviceArray<double> key_magnitudes_;
  BlockSummary summary_;
  uint64_t summary_for_ = 0;
  DeviceArray<int> blo_, bhi_;
  // set_sweep_layer: the pooled keys of every variant, and each query's eligible blocks per variant.
  std::vector<PoolVariant> variants_;
  std::vector<PooledKeys> variant_pooled_;
  std::vector<std::unique_ptr<KeyStore>> variant_blocks_;
  std::vector<DeviceArray<int>> variant_lo_, variant_hi_;
  // Per chunk.
  DeviceArray<float> j_;
  std::vector<float> jh_;
  BlockChoice choice_;
  TopkOut flat_, hisa_;
  DeviceArray<int> block_segs_, block_offs_;
  DeviceArray<float> row_max_, block_best_;
  DeviceArray<double> mass_;
  std::vector<int> pos_h_, count_h_;
  SelectionDownloads results_;
  StageTimes ms_;  // milliseconds
};

}  // namespace

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

std::unique_ptr<SelectionEngine> make_cuda_engine(int device, size_t max_chunk_bytes, bool fp8_mma) {
  cuda::require_device(device);
  return std::make_unique<cuda::CudaEngine>(device, max_chunk_bytes, fp8_mma);
}

}  // namespace hisa
