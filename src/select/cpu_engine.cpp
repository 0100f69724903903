// The CPU engine: GEMM-tiled scoring (score_cpu), exact top-k (topk), HISA's block stage (blocks).
// Queries are grouped into small chunks of neighbouring positions so one GEMM serves several queries;
// chunks run in parallel and each query's result depends only on its own inputs, so the thread count
// never changes a result. The audit, select and sweep score a chunk with the same calls on the same ranges, so
// their DSA sets and J agree bit for bit.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>

#include "core/stopwatch.hpp"
#include "select/blocks.hpp"
#include "select/bounds.hpp"
#include "select/engine.hpp"
#include "select/query_chunks.hpp"
#include "select/score_cpu.hpp"
#include "select/topk.hpp"

namespace hisa {

namespace {

using Chunk = QueryChunk;

double softmax_mass(const float* row_from_lo, int64_t lo, const std::vector<int64_t>& positions, float max) {
  double sum = 0;
  for (int64_t s : positions) sum += softmax_term(row_from_lo[s - lo], max);
  return sum;
}

class CpuEngine final : public SelectionEngine {
 public:
  explicit CpuEngine(int threads) : threads_(threads > 0 ? threads : omp_get_max_threads()) {}
  std::string name() const override { return "cpu"; }
  StageTimes times() const override { return times_; }

  // Operands that live on a GPU (LayerKeys::device) are for the CUDA engine there.
  static void require_host(bool on_device) {
    if (on_device) throw std::invalid_argument("the CPU engine reads operands in host memory, not on a GPU");
  }

  void set_layer(const LayerKeys& keys, const SelectionConfig& config) override {
    config.validate();
    require_host(keys.on_device());
    Stopwatch t(times_.pooling);
    keys_ = &keys;
    config_ = config;
    pooled_ = pool_keys(keys, config.block_size, config.pool);
    bounds_.reset();
    prepared_ = Prepared::Select;
  }

  void audit(const QueryBatch& b, std::vector<QueryAudit>& out) override {
    require(Prepared::Select);
    require_host(b.on_device());
    Stopwatch t(times_.calls);
    out.assign(size_t(b.count), QueryAudit{});
    const auto chunks = make_query_chunks(b);
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads_)
    for (size_t c = 0; c < chunks.size(); ++c) audit_chunk(b, chunks[c], out);
  }

  void select(const QueryBatch& b, Method method, std::vector<std::vector<int64_t>>& out) override {
    require(Prepared::Select);
    require_host(b.on_device());
    Stopwatch t(times_.calls);
    out.assign(size_t(b.count), {});
    const auto chunks = make_query_chunks(b);
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads_)
    for (size_t c = 0; c < chunks.size(); ++c) select_chunk(b, chunks[c], method, out);
  }

  void block_bounds(const QueryBatch& b, std::vector<std::vector<float>>& out) override {
    require(Prepared::Select);
    require_host(b.on_device());
    if (!bounds_) bounds_.emplace(*keys_, config_.block_size);  // made once per layer, on first use
    out.resize(size_t(b.count));
    // Each query's bounds depend on that query alone.
#pragma omp parallel for schedule(dynamic, 4) num_threads(threads_)
    for (int64_t i = 0; i < b.count; ++i) {
      const BlockSpan span = eligible_blocks(b.k_start[size_t(i)], b.q_pos[size_t(i)], config_.block_size);
      std::vector<float>& row = out[size_t(i)];
      row.resize(size_t(span.size()));
      for (int64_t j = 0; j < span.size(); ++j) row[size_t(j)] = bounds_->score_bound(b, i, span.first + j);
    }
  }

  void score_row(const QueryBatch& b, int64_t i, std::vector<float>& out) override {
    require(Prepared::Select);
    require_host(b.on_device());
    if (i < 0 || i >= b.count) throw std::out_of_range("CpuEngine::score_row: row " + std::to_string(i) + " of " + std::to_string(b.count));
    const int64_t from = b.k_start[size_t(i)], n = b.q_pos[size_t(i)] - from + 1;
    out.resize(size_t(std::max<int64_t>(n, 0)));
    if (n > 0) score_keys({b.q_row(i, 0), b.w_row(i), 1, b.heads, b.dim}, keys_->row(from), keys_->k_scale.data() + from, n, out.data(), n);
  }

  void score_positions(const QueryBatch& b, int64_t i, std::span<const int64_t> positions, bool pooled,
                       std::vector<float>& scores, std::vector<double>* magnitudes) override {
    require(Prepared::Select);
    require_host(b.on_device());
    if (i < 0 || i >= b.count) throw std::out_of_range("CpuEngine::score_positions: row " + std::to_string(i) + " of " + std::to_string(b.count));
    const int64_t count = pooled ? pooled_.count : keys_->count;
    for (int64_t p : positions) {
      if (p < 0 || p >= count) throw std::out_of_range("CpuEngine::score_positions: position " + std::to_string(p) + " of " + std::to_string(count));
    }
    const float* keys = pooled ? pooled_.k.data() : keys_->k.data();
    const float* scales = pooled ? pooled_.scale.data() : keys_->k_scale.data();
    scores.resize(positions.size());
    hisa::score_positions(b.q_row(i, 0), b.w_row(i), b.heads, b.dim, keys, scales, positions, scores.data());
    if (magnitudes == nullptr) return;
    magnitudes->resize(positions.size());
    for (size_t n = 0; n < positions.size(); ++n) {
      (*magnitudes)[n] = abs_score(b, i, keys + positions[n] * b.dim, scales[size_t(positions[n])]);
    }
  }

  void set_sweep_layer(const LayerKeys& keys, int64_t topk, std::span<const PoolVariant> variants) override {
    require_host(keys.on_device());
    Stopwatch t(times_.pooling);
    keys_ = &keys;
    config_ = SelectionConfig{};
    config_.topk = topk;
    variants_.assign(variants.begin(), variants.end());
    variant_pooled_ = pool_variants(keys, variants, threads_);
    prepared_ = Prepared::Sweep;
  }

  void sweep(const QueryBatch& b, std::vector<SweepScores>& out) override {
    require(Prepared::Sweep);
    Stopwatch t(times_.calls);
    start_sweep_scores(b, variants_.size(), out);
    const auto chunks = make_query_chunks(b);
    {
      Stopwatch tokens(times_.token_scores);
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads_)
      for (size_t c = 0; c < chunks.size(); ++c) sweep_flat_chunk(b, chunks[c], out);
    }
    Stopwatch blocks(times_.block_scores);
    const int64_t tasks = int64_t(chunks.size() * variants_.size());
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads_)
    for (int64_t t = 0; t < tasks; ++t) {
      sweep_blocks_chunk(b, chunks[size_t(t) / variants_.size()], size_t(t) % variants_.size(), out);
    }
  }

 private:
  // What the last set_layer or set_sweep_layer prepared the engine for.
  enum class Prepared { None, Select, Sweep };
  void require(Prepared p) const {
    if (prepared_ != p) {
      throw std::logic_error(p == Prepared::Select ? "CpuEngine: set_layer before audit/select"
                                                   : "CpuEngine: set_sweep_layer before sweep");
    }
  }

  // Scores of the chunk's queries against keys [lo, hi]; row i starts at rows[i * width].
  void score_rows(const QueryBatch& b, const Chunk& c, std::vector<float>& rows) const {
    const int64_t width = c.hi - c.lo + 1;
    rows.resize(size_t(c.count * width));
    score_keys(score_inputs(b, c.first, c.count), keys_->row(c.lo), keys_->k_scale.data() + c.lo, width, rows.data(),
               width);
  }

  // Block scores J of the chunk's queries against `pooled` for blocks [lo/B, hi/B]; row i starts at J[i * nb].
  static BlockSpan score_blocks(const QueryBatch& b, const Chunk& c, const PooledKeys& pooled, std::vector<float>& J) {
    const BlockSpan all = eligible_blocks(c.lo, c.hi, pooled.block_size);
    J.resize(size_t(c.count * all.size()));
    score_keys(score_inputs(b, c.first, c.count), pooled.k.data() + all.first * pooled.dim,
               pooled.scale.data() + all.first, all.size(), J.data(), all.size());
    return all;
  }

  // Query i's J over its eligible blocks, from the chunk's J rows (score_blocks).
  static std::span<const float> j_row(const std::vector<float>& J, BlockSpan all, int64_t i, BlockSpan span) {
    return {J.data() + i * all.size() + (span.first - all.first), size_t(span.size())};
  }

  void audit_chunk(const QueryBatch& b, const Chunk& c, std::vector<QueryAudit>& out) const {
    thread_local std::vector<float> rows, J, cand_scores;
    thread_local std::vector<int64_t> cand, kept_block;
    score_rows(b, c, rows);
    const BlockSpan all = score_blocks(b, c, pooled_, J);
    const int64_t width = c.hi - c.lo + 1;
    for (int64_t i = 0; i < c.count; ++i) {
      QueryAudit& a = out[size_t(c.first + i)];
      set_query_position(a, b, c.first + i);
      const float* row = rows.data() + i * width;          // row[s - lo] = I[t, s]
      const std::span<const float> visible(row + (a.k_start - c.lo), size_t(a.visible));

      topk_range(visible, a.k_start, config_.topk, a.flat);
      a.flat_scores.clear();
      for (int64_t s : a.flat) a.flat_scores.push_back(row[s - c.lo]);
      a.kth_score = kth_score(a, config_.topk);

      const BlockSpan span = eligible_blocks(a.k_start, a.q_pos, config_.block_size);
      const std::span<const float> j = j_row(J, all, i, span);
      keep_blocks(j, span, config_.blocks, config_.forced, a.hisa_blocks);
      tokens_in_blocks(a.hisa_blocks, config_.block_size, a.k_start, a.q_pos, cand);
      cand_scores.clear();
      for (int64_t s : cand) cand_scores.push_back(row[s - c.lo]);
      topk_positions(cand_scores, cand, config_.topk, a.hisa);
      a.hisa_scores.clear();
      for (int64_t s : a.hisa) a.hisa_scores.push_back(row[s - c.lo]);
      a.block_scores.assign(j.begin(), j.end());
      a.block_best.clear();
      for (int64_t blk = span.first; blk <= span.last; ++blk) {
        const TokenRange range = visible_in_block(blk, config_.block_size, a.k_start, a.q_pos);
        a.block_best.push_back(*std::max_element(row + (range.first - c.lo), row + (range.last - c.lo) + 1));
      }

      keep_blocks(j, span, config_.block_sparse_blocks(), ForcedMode::InBudget, kept_block);
      tokens_in_blocks(kept_block, config_.block_size, a.k_start, a.q_pos, a.block);

      a.row_max = *std::max_element(visible.begin(), visible.end());
      a.mass_visible = 0;
      for (float v : visible) a.mass_visible += softmax_term(v, a.row_max);
      a.mass_flat = softmax_mass(row, c.lo, a.flat, a.row_max);
      a.mass_hisa = softmax_mass(row, c.lo, a.hisa, a.row_max);
      a.mass_block = softmax_mass(row, c.lo, a.block, a.row_max);
    }
  }

  void select_chunk(const QueryBatch& b, const Chunk& c, Method method, std::vector<std::vector<int64_t>>& out) const {
    thread_local std::vector<float> rows, J, cand_scores;
    thread_local std::vector<int64_t> cand, kept;
    if (method == Method::Flat) {
      score_rows(b, c, rows);
      const int64_t width = c.hi - c.lo + 1;
      for (int64_t i = 0; i < c.count; ++i) {
        const size_t q = size_t(c.first + i);
        const int64_t ks = b.k_start[q], visible = b.q_pos[q] - ks + 1;
        topk_range({rows.data() + i * width + (ks - c.lo), size_t(visible)}, ks, config_.topk, out[q]);
      }
      return;
    }
    const BlockSpan all = score_blocks(b, c, pooled_, J);
    for (int64_t i = 0; i < c.count; ++i) {
      const size_t q = size_t(c.first + i);
      const int64_t ks = b.k_start[q], qp = b.q_pos[q];
      const BlockSpan span = eligible_blocks(ks, qp, config_.block_size);
      const std::span<const float> j = j_row(J, all, i, span);
      if (method == Method::Block) {
        keep_blocks(j, span, config_.block_sparse_blocks(), ForcedMode::InBudget, kept);
        tokens_in_blocks(kept, config_.block_size, ks, qp, out[q]);
        continue;
      }
      keep_blocks(j, span, config_.blocks, config_.forced, kept);
      // Token stage: score only the visible part of each kept block, a run of adjacent kept blocks at once.
      tokens_in_blocks(kept, config_.block_size, ks, qp, cand);
      cand_scores.resize(cand.size());
      const ScoreInputs one = score_inputs(b, c.first + i, 1);
      size_t at = 0;
      for (const TokenRange& run : visible_runs(kept, config_.block_size, ks, qp)) {
        score_keys(one, keys_->row(run.first), keys_->k_scale.data() + run.first, run.size(), cand_scores.data() + at, 0);
        at += size_t(run.size());
      }
      topk_positions(cand_scores, cand, config_.topk, out[q]);
    }
  }

  // DSA for the sweep, as audit_chunk: one row per query over the chunk's key range, top-k of the visible part.
  void sweep_flat_chunk(const QueryBatch& b, const Chunk& c, std::vector<SweepScores>& out) const {
    thread_local std::vector<float> rows;
    score_rows(b, c, rows);
    const int64_t width = c.hi - c.lo + 1;
    for (int64_t i = 0; i < c.count; ++i) {
      SweepScores& s = out[size_t(c.first + i)];
      const int64_t visible = s.q_pos - s.k_start + 1;
      s.flat.clear();  // topk_range appends
      topk_range({rows.data() + i * width + (s.k_start - c.lo), size_t(visible)}, s.k_start, config_.topk, s.flat);
    }
  }

  // J of variant v for the chunk, as audit_chunk's, then each query's eligible slice.
  void sweep_blocks_chunk(const QueryBatch& b, const Chunk& c, size_t v, std::vector<SweepScores>& out) const {
    thread_local std::vector<float> J;
    const PooledKeys& p = variant_pooled_[v];
    const BlockSpan all = score_blocks(b, c, p, J);
    for (int64_t i = 0; i < c.count; ++i) {
      SweepScores& s = out[size_t(c.first + i)];
      const auto j = j_row(J, all, i, eligible_blocks(s.k_start, s.q_pos, p.block_size));
      s.J[v].assign(j.begin(), j.end());
    }
  }

  int threads_;
  const LayerKeys* keys_ = nullptr;
  SelectionConfig config_;
  PooledKeys pooled_;
  std::optional<BlockBounds> bounds_;  // block_bounds()'s, for the keys of set_layer
  std::vector<PoolVariant> variants_;
  std::vector<PooledKeys> variant_pooled_;
  Prepared prepared_ = Prepared::None;
  StageTimes times_;
};

}  // namespace

std::unique_ptr<SelectionEngine> make_cpu_engine(int threads) { return std::make_unique<CpuEngine>(threads); }

}  // namespace hisa
