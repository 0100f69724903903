// The CUDA selection engine: scoring (score.cu), exact top-k and softmax masses (topk.cu) on the GPU.
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
#include "cuda/cuda_scoring.hpp"
#include "cuda/kernels.hpp"
#include "select/blocks.hpp"
#include "select/bounds.hpp"

namespace hisa::cuda {

namespace {

class CudaEngine final : public SelectionEngine, private CudaScoring {
 public:
  CudaEngine(int device, size_t max_chunk_bytes, bool fp8_mma)
      : CudaScoring(device, fp8_mma), max_chunk_bytes_(max_chunk_bytes) {}
  std::string name() const override { return device_name(); }
  bool inexact_scores() const override { return used_fp8_mma_; }

  void set_layer(const LayerKeys& keys, const SelectionConfig& config) override {
    config.validate();
    if (keys.count >= int64_t(std::numeric_limits<int>::max()) || config.topk >= int64_t(std::numeric_limits<int>::max())) {
      throw UsageError("the CUDA engine handles fewer than 2^31 keys and k < 2^31");
    }
    use_device();
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
    for (const Chunk& c : plan_chunks(b, true, false)) audit_chunk(b, c, out);
    times_.total_ms = ms_since(t0);
  }

  void select(const QueryBatch& b, Method method, std::vector<std::vector<int64_t>>& out) override {
    if (method == Method::Certified) throw std::logic_error("the certified selection is select/certified.hpp's");
    const auto t0 = std::chrono::steady_clock::now();
    times_ = {};
    begin_batch(b);
    out.assign(size_t(b.count), {});
    for (const Chunk& c : plan_chunks(b, method != Method::Block, method != Method::Flat)) select_chunk(b, c, method, out);
    times_.total_ms = ms_since(t0);
  }

  const StageTimes& times() const { return times_; }

 private:
  int k() const { return int(config_.topk); }

  void begin_batch(const QueryBatch& b) {
    if (keys_ == nullptr) throw std::logic_error("CudaEngine: set_layer before audit/select");
    set_batch(b, keys_->count);
    upload_block_ranges(config_.block_size, blo_, bhi_);
  }
  // gpu_block_choice: select()'s block stage runs on the GPU (BlockChoice's buffers count); audit() chooses
  // on the host.
  std::vector<Chunk> plan_chunks(const QueryBatch& b, bool token_scores, bool gpu_block_choice) {
    return plan(b, token_scores, config_.block_size, config_.topk, max_chunk_bytes_, j_.capacity_bytes(),
                gpu_block_choice ? std::max(config_.blocks, config_.block_sparse_blocks()) : 0);
  }
  void score_tokens(const Chunk& c, const BlockChoice* work = nullptr) {
    CudaScoring::score_tokens(tokens_, c, &times_.token_scores_ms, work);
  }

  // Block scores J on the GPU, copied to jh_ (row i: blocks [c.lo/B, c.hi/B]).
  void score_blocks_to_host(const Chunk& c) {
    CudaScoring::score_blocks_to_host(blocks_, c, config_.block_size, blo_.data(), bhi_.data(), j_, jh_,
                                      &times_.block_scores_ms);
  }
  std::span<const float> j_row(const Chunk& c, int64_t i, BlockSpan span) const {
    const int64_t jlo = c.lo / config_.block_size, width = c.hi / config_.block_size - jlo + 1;
    return {jh_.data() + i * width + (span.first - jlo), size_t(span.size())};
  }

  void run_topk(const Chunk& c, const DeviceArray<int>& segs, const DeviceArray<int>& offs, DeviceArray<int>& pos,
                DeviceArray<float>& sc, DeviceArray<int>& cnt) {
    CudaScoring::run_topk(c, k(), segs, offs, pos, sc, cnt, &times_.topk_ms);
  }

  void audit_chunk(const QueryBatch& b, const Chunk& c, std::vector<QueryAudit>& out) {
    const int64_t B = config_.block_size;
    score_blocks_to_host(c);
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
    append_visible_segments(b, c, flat_segs, flat_offs);
    for (int64_t i = 0; i < c.count; ++i) {
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
    const size_t n = size_t(c.count), kk = size_t(k());
    const DeviceArray<int>*segs = &flat_segs_, *offs = &flat_offs_;
    const BlockChoice* work = nullptr;
    if (method == Method::Flat) {
      std::vector<int> hsegs, hoffs{0};
      append_visible_segments(b, c, hsegs, hoffs);
      upload_segments(hsegs, hoffs, flat_segs_, flat_offs_);
    } else {
      // The block stage stays on the GPU: J, the kept blocks, then (HISA) the token stage's work lists.
      score_blocks(blocks_, c, config_.block_size, blo_.data(), bhi_.data(), j_, &times_.block_scores_ms);
      const bool block_sparse = method == Method::Block;
      // A budget of at least the chunk's widest block range keeps every block of every row, as the whole
      // range itself does; clamping keeps the per-row buffers (m + 2 slots) from following a huge m.
      const int jlo = int(c.lo / config_.block_size);
      const int64_t width = c.hi / config_.block_size - jlo + 1;
      const int m = int(std::min(block_sparse ? config_.block_sparse_blocks() : config_.blocks, width));
      const bool extra = !block_sparse && config_.forced == ForcedMode::Extra;
      const BlockRows rows{j_.data(), width, jlo, blo_.data() + c.first, bhi_.data() + c.first, int(c.count)};
      const int tile = block_sparse ? 0 : tile_keys(tokens_, c);  // (uploads the tokens first, untimed)
      timer_.begin(s(), &times_.block_stage_ms);
      choice_.keep(rows, m, extra, s());
      if (!block_sparse) {
        choice_.token_work(lo_.data() + c.first, hi_.data() + c.first, config_.block_size, c.lo, c.hi, tile, s());
      }
      timer_.end(s());
      if (block_sparse) {
        // Every token of the kept blocks: no token scores needed.
        const size_t cap = size_t(BlockChoice::capacity(m));
        std::vector<int> kept(n * cap), cnt(n);
        HISA_CUDA_CHECK(cudaMemcpyAsync(kept.data(), choice_.kept(), kept.size() * sizeof(int), cudaMemcpyDeviceToHost, s()));
        HISA_CUDA_CHECK(cudaMemcpyAsync(cnt.data(), choice_.kept_count(), n * sizeof(int), cudaMemcpyDeviceToHost, s()));
        stream_->synchronize();
        timer_.collect();
        for (size_t i = 0; i < n; ++i) {
          const size_t q = size_t(c.first) + i;
          const std::vector<int64_t> blocks(kept.begin() + i * cap, kept.begin() + i * cap + cnt[i]);
          tokens_in_blocks(blocks, config_.block_size, b.k_start[q], b.q_pos[q], out[q]);
        }
        return;
      }
      segs = &choice_.segments();
      offs = &choice_.segment_offsets();
      work = &choice_;
    }
    score_tokens(c, work);
    run_topk(c, *segs, *offs, flat_pos_, flat_score_, flat_count_);
    std::vector<int> pos(n * kk), cnt(n);
    flat_pos_.download(pos.data(), pos.size(), s());
    flat_count_.download(cnt.data(), n, s());
    stream_->synchronize();
    timer_.collect();
    for (size_t i = 0; i < n; ++i) out[size_t(c.first) + i].assign(pos.begin() + i * kk, pos.begin() + i * kk + cnt[i]);
  }

  size_t max_chunk_bytes_;  // 0: from the free device memory
  const LayerKeys* keys_ = nullptr;
  SelectionConfig config_;
  PooledKeys pooled_;
  KeyStore tokens_, blocks_;
  DeviceArray<int> blo_, bhi_;
  DeviceArray<float> j_;
  std::vector<float> jh_;
  BlockChoice choice_;
  DeviceArray<int> flat_segs_, flat_offs_, hisa_segs_, hisa_offs_, block_segs_, block_offs_;
  DeviceArray<int> flat_pos_, flat_count_, hisa_pos_, hisa_count_;
  DeviceArray<float> flat_score_, hisa_score_, row_max_, block_best_;
  BlockBounds bounds_;
  DeviceArray<double> mass_;
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

std::unique_ptr<SelectionEngine> make_cuda_engine(int device, size_t max_chunk_bytes, bool fp8_mma) {
  cuda::require_device(device);
  return std::make_unique<cuda::CudaEngine>(device, max_chunk_bytes, fp8_mma);
}

}  // namespace hisa
