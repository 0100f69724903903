// The sweep's CUDA backend (select/sweep_scorer.hpp): DSA's selection and every pool variant's block scores J
// from the CUDA engine's kernels, chunking and key forms (cuda_scoring.hpp), so its DSA sets and J are the CUDA
// engine's. Per chunk only k positions and the eligible J come back to the host; score rows stay on the GPU.
#include <chrono>
#include <limits>
#include <stdexcept>

#include "core/error.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/cuda_scoring.hpp"
#include "cuda/cuda_sweep_scorer.hpp"
#include "select/blocks.hpp"

namespace hisa::cuda {

namespace {

class CudaSweepScorer final : public SweepScorer, private CudaScoring {
 public:
  CudaSweepScorer(int device, size_t max_chunk_bytes, bool fp8_mma)
      : CudaScoring(device, fp8_mma), max_chunk_bytes_(max_chunk_bytes) {}
  std::string name() const override { return device_name(); }

  void set_layer(const LayerKeys& keys, int64_t topk, std::span<const PoolVariant> variants) override {
    if (keys.count >= int64_t(std::numeric_limits<int>::max()) || topk >= int64_t(std::numeric_limits<int>::max())) {
      throw UsageError("the CUDA engine handles fewer than 2^31 keys and k < 2^31");
    }
    const auto t0 = std::chrono::steady_clock::now();
    use_device();
    keys_ = &keys;
    topk_ = topk;
    variants_.assign(variants.begin(), variants.end());
    // pooled_ must not reallocate once the stores point into it.
    pooled_.assign(variants.size(), {});
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t v = 0; v < variants.size(); ++v) pooled_[v] = pool_keys(keys, variants[v].block_size, variants[v].precision);
    blocks_.resize(variants.size());
    tokens_.reset(keys.k.data(), keys.k_scale.data(), keys.count, keys.dim, s());
    for (size_t v = 0; v < variants.size(); ++v) {
      blocks_[v] = std::make_unique<KeyStore>();
      blocks_[v]->reset(pooled_[v].k.data(), pooled_[v].scale.data(), pooled_[v].count, pooled_[v].dim, s());
    }
    stream_->synchronize();
    smallest_block_ = std::numeric_limits<int64_t>::max();
    for (const auto& v : variants_) smallest_block_ = std::min(smallest_block_, v.block_size);
    times_.pooling += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

  void score(const QueryBatch& b, std::vector<SweepScores>& out) override {
    if (keys_ == nullptr) throw std::logic_error("CudaSweepScorer: set_layer before score");
    set_batch(b, keys_->count);
    out.resize(size_t(b.count));
    for (int64_t i = 0; i < b.count; ++i) {
      out[size_t(i)].q_pos = b.q_pos[size_t(i)];
      out[size_t(i)].k_start = b.k_start[size_t(i)];
      out[size_t(i)].J.resize(variants_.size());
    }
    double token_ms = 0, block_ms = 0;
    for (size_t v = 0; v < variants_.size(); ++v) {
      if (block_lo_.size() <= v) block_lo_.emplace_back(), block_hi_.emplace_back();
      upload_block_ranges(variants_[v].block_size, block_lo_[v], block_hi_[v]);
    }
    for (const Chunk& c : plan(b, true, smallest_block_, topk_, max_chunk_bytes_, j_.capacity_bytes())) {
      // DSA: every visible score, then the exact top-k over [k_start, q_pos].
      score_tokens(tokens_, c, &token_ms);
      std::vector<int> segs, offs{0};
      append_visible_segments(b, c, segs, offs);
      upload_segments(segs, offs, segs_, offs_);
      run_topk(c, int(topk_), segs_, offs_, pos_, pos_score_, count_, &token_ms);
      const size_t n = size_t(c.count), kk = size_t(topk_);
      pos_h_.resize(n * kk);
      count_h_.resize(n);
      pos_.download(pos_h_.data(), pos_h_.size(), s());
      count_.download(count_h_.data(), n, s());
      // J of every variant over the chunk's blocks; each query keeps its eligible slice.
      for (size_t v = 0; v < variants_.size(); ++v) {
        const int64_t B = variants_[v].block_size, jlo = c.lo / B, width = c.hi / B - jlo + 1;
        score_blocks_to_host(*blocks_[v], c, B, block_lo_[v].data(), block_hi_[v].data(), j_, jh_, &block_ms);
        for (int64_t i = 0; i < c.count; ++i) {
          SweepScores& o = out[size_t(c.first + i)];
          const BlockSpan span = eligible_blocks(o.k_start, o.q_pos, B);
          const float* row = jh_.data() + i * width + (span.first - jlo);
          o.J[v].assign(row, row + span.size());
        }
      }
      stream_->synchronize();
      timer_.collect();
      for (size_t i = 0; i < n; ++i) {
        SweepScores& o = out[size_t(c.first) + i];
        o.flat.assign(pos_h_.begin() + ptrdiff_t(i * kk), pos_h_.begin() + ptrdiff_t(i * kk + size_t(count_h_[i])));
      }
    }
    times_.token_scores += token_ms * 1e-3;
    times_.block_scores += block_ms * 1e-3;
  }

  ScoringTimes times() const override { return times_; }

 private:
  size_t max_chunk_bytes_;
  const LayerKeys* keys_ = nullptr;
  int64_t topk_ = 0, smallest_block_ = 1;
  std::vector<PoolVariant> variants_;
  std::vector<PooledKeys> pooled_;
  KeyStore tokens_;
  std::vector<std::unique_ptr<KeyStore>> blocks_;
  std::vector<DeviceArray<int>> block_lo_, block_hi_;
  DeviceArray<int> segs_, offs_, pos_, count_;
  DeviceArray<float> pos_score_, j_;
  std::vector<int> pos_h_, count_h_;
  std::vector<float> jh_;
  ScoringTimes times_;
};

}  // namespace

}  // namespace hisa::cuda

namespace hisa {

std::unique_ptr<SweepScorer> make_cuda_sweep_scorer(int device, size_t max_chunk_bytes, bool fp8_mma) {
  cuda::require_device(device);
  return std::make_unique<cuda::CudaSweepScorer>(device, max_chunk_bytes, fp8_mma);
}

}  // namespace hisa
