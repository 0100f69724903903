// The sweep's CPU backend. Scores exactly as the CPU engine's audit does (same chunks, same score_keys
// calls on the same ranges), so the sweep's DSA sets and block scores are the engine's.
#include <omp.h>

#include <chrono>

#include "select/blocks.hpp"
#include "select/query_chunks.hpp"
#include "select/score_cpu.hpp"
#include "select/sweep_scorer.hpp"
#include "select/topk.hpp"

namespace hisa {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

class CpuSweepScorer final : public SweepScorer {
 public:
  explicit CpuSweepScorer(int threads) : threads_(threads > 0 ? threads : omp_get_max_threads()) {}
  std::string name() const override { return "cpu"; }

  void set_layer(const LayerKeys& keys, int64_t topk, std::span<const PoolVariant> variants) override {
    const auto t0 = std::chrono::steady_clock::now();
    keys_ = &keys;
    topk_ = topk;
    variants_.assign(variants.begin(), variants.end());
    pooled_.assign(variants.size(), {});
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads_)
    for (size_t v = 0; v < variants.size(); ++v) pooled_[v] = pool_keys(keys, variants[v].block_size, variants[v].precision);
    times_.pooling += seconds_since(t0);
  }

  void score(const QueryBatch& b, std::vector<SweepScores>& out) override {
    out.resize(size_t(b.count));
    for (int64_t i = 0; i < b.count; ++i) {
      out[size_t(i)].q_pos = b.q_pos[size_t(i)];
      out[size_t(i)].k_start = b.k_start[size_t(i)];
      out[size_t(i)].flat.clear();  // topk_range appends
      out[size_t(i)].J.resize(variants_.size());
    }
    const auto chunks = make_query_chunks(b);
    auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads_)
    for (size_t c = 0; c < chunks.size(); ++c) flat_chunk(b, chunks[c], out);
    times_.token_scores += seconds_since(t0);

    t0 = std::chrono::steady_clock::now();
    const int64_t tasks = int64_t(chunks.size() * variants_.size());
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads_)
    for (int64_t t = 0; t < tasks; ++t) {
      blocks_chunk(b, chunks[size_t(t) / variants_.size()], size_t(t) % variants_.size(), out);
    }
    times_.block_scores += seconds_since(t0);
  }

  ScoringTimes times() const override { return times_; }

 private:
  // As CpuEngine::audit_chunk: one row per query over the chunk's key range, then top-k of the visible part.
  void flat_chunk(const QueryBatch& b, const QueryChunk& c, std::vector<SweepScores>& out) const {
    thread_local std::vector<float> rows;
    const int64_t width = c.hi - c.lo + 1;
    rows.resize(size_t(c.count * width));
    score_keys(score_inputs(b, c.first, c.count), keys_->row(c.lo), keys_->k_scale.data() + c.lo, width, rows.data(),
               width);
    for (int64_t i = 0; i < c.count; ++i) {
      SweepScores& s = out[size_t(c.first + i)];
      const int64_t visible = s.q_pos - s.k_start + 1;
      topk_range({rows.data() + i * width + (s.k_start - c.lo), size_t(visible)}, s.k_start, topk_, s.flat);
    }
  }

  // As CpuEngine::score_blocks: J for the blocks covering the chunk's key range, then each query's slice.
  void blocks_chunk(const QueryBatch& b, const QueryChunk& c, size_t v, std::vector<SweepScores>& out) const {
    thread_local std::vector<float> J;
    const PooledKeys& p = pooled_[v];
    const BlockSpan all = eligible_blocks(c.lo, c.hi, p.block_size);
    J.resize(size_t(c.count * all.size()));
    score_keys(score_inputs(b, c.first, c.count), p.k.data() + all.first * p.dim, p.scale.data() + all.first,
               all.size(), J.data(), all.size());
    for (int64_t i = 0; i < c.count; ++i) {
      SweepScores& s = out[size_t(c.first + i)];
      const BlockSpan span = eligible_blocks(s.k_start, s.q_pos, p.block_size);
      const float* row = J.data() + i * all.size() + (span.first - all.first);
      s.J[v].assign(row, row + span.size());
    }
  }

  int threads_;
  const LayerKeys* keys_ = nullptr;
  int64_t topk_ = 0;
  std::vector<PoolVariant> variants_;
  std::vector<PooledKeys> pooled_;
  ScoringTimes times_;
};

}  // namespace

std::unique_ptr<SweepScorer> make_cpu_sweep_scorer(int threads) { return std::make_unique<CpuSweepScorer>(threads); }

}  // namespace hisa
