// The CPU engine: GEMM-tiled scoring (score_cpu), exact top-k (topk), HISA's block stage (blocks).
// Queries are grouped into small chunks of neighbouring positions so one GEMM serves several queries;
// chunks run in parallel and each query's result depends only on its own inputs, so the thread count
// never changes a result.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

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

  void set_layer(const LayerKeys& keys, const SelectionConfig& config) override {
    config.validate();
    keys_ = &keys;
    config_ = config;
    pooled_ = pool_keys(keys, config.block_size, config.pool);
    bounds_ = BlockBounds(keys, config.block_size);
  }

  void audit(const QueryBatch& b, std::vector<QueryAudit>& out) override {
    out.assign(size_t(b.count), QueryAudit{});
    const auto chunks = make_query_chunks(b);
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads_)
    for (size_t c = 0; c < chunks.size(); ++c) audit_chunk(b, chunks[c], out);
  }

  void select(const QueryBatch& b, Method method, std::vector<std::vector<int64_t>>& out) override {
    if (method == Method::Certified) throw std::logic_error("the certified selection is select/certified.hpp's");
    out.assign(size_t(b.count), {});
    const auto chunks = make_query_chunks(b);
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads_)
    for (size_t c = 0; c < chunks.size(); ++c) select_chunk(b, chunks[c], method, out);
  }

 private:
  // Scores of the chunk's queries against keys [lo, hi]; row i starts at rows[i * width].
  void score_rows(const QueryBatch& b, const Chunk& c, std::vector<float>& rows) const {
    const int64_t width = c.hi - c.lo + 1;
    rows.resize(size_t(c.count * width));
    score_keys(score_inputs(b, c.first, c.count), keys_->row(c.lo), keys_->k_scale.data() + c.lo, width, rows.data(),
               width);
  }

  // Block scores J of the chunk's queries for blocks [lo/B, hi/B]; row i starts at J[i * nb].
  BlockSpan score_blocks(const QueryBatch& b, const Chunk& c, std::vector<float>& J) const {
    const BlockSpan all = eligible_blocks(c.lo, c.hi, config_.block_size);
    J.resize(size_t(c.count * all.size()));
    score_keys(score_inputs(b, c.first, c.count), pooled_.k.data() + all.first * pooled_.dim,
               pooled_.scale.data() + all.first, all.size(), J.data(), all.size());
    return all;
  }

  void audit_chunk(const QueryBatch& b, const Chunk& c, std::vector<QueryAudit>& out) const {
    thread_local std::vector<float> rows, J, cand_scores;
    thread_local std::vector<int64_t> cand, kept_block;
    score_rows(b, c, rows);
    const BlockSpan all = score_blocks(b, c, J);
    const int64_t width = c.hi - c.lo + 1;
    for (int64_t i = 0; i < c.count; ++i) {
      const size_t q = size_t(c.first + i);
      QueryAudit& a = out[q];
      a.q_pos = b.q_pos[q];
      a.k_start = b.k_start[q];
      a.visible = a.q_pos - a.k_start + 1;
      const float* row = rows.data() + i * width;          // row[s - lo] = I[t, s]
      const std::span<const float> visible(row + (a.k_start - c.lo), size_t(a.visible));

      topk_range(visible, a.k_start, config_.topk, a.flat);
      a.flat_scores.clear();
      for (int64_t s : a.flat) a.flat_scores.push_back(row[s - c.lo]);
      a.kth_score = a.visible > config_.topk ? *std::min_element(a.flat_scores.begin(), a.flat_scores.end())
                                             : -std::numeric_limits<float>::infinity();

      const BlockSpan span = eligible_blocks(a.k_start, a.q_pos, config_.block_size);
      const std::span<const float> j_row(J.data() + i * all.size() + (span.first - all.first), size_t(span.size()));
      keep_blocks(j_row, span, config_.blocks, config_.forced, a.hisa_blocks);
      tokens_in_blocks(a.hisa_blocks, config_.block_size, a.k_start, a.q_pos, cand);
      cand_scores.clear();
      for (int64_t s : cand) cand_scores.push_back(row[s - c.lo]);
      topk_positions(cand_scores, cand, config_.topk, a.hisa);
      a.hisa_scores.clear();
      for (int64_t s : a.hisa) a.hisa_scores.push_back(row[s - c.lo]);
      a.block_scores.assign(j_row.begin(), j_row.end());
      a.block_best.clear();
      a.block_bounds.clear();
      for (int64_t blk = span.first; blk <= span.last; ++blk) {
        const TokenRange visible = visible_in_block(blk, config_.block_size, a.k_start, a.q_pos);
        a.block_best.push_back(*std::max_element(row + (visible.first - c.lo), row + (visible.last - c.lo) + 1));
        a.block_bounds.push_back(bounds_.score_bound(b, c.first + i, blk));
      }

      keep_blocks(j_row, span, config_.block_sparse_blocks(), ForcedMode::InBudget, kept_block);
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
    const BlockSpan all = score_blocks(b, c, J);
    for (int64_t i = 0; i < c.count; ++i) {
      const size_t q = size_t(c.first + i);
      const int64_t ks = b.k_start[q], qp = b.q_pos[q];
      const BlockSpan span = eligible_blocks(ks, qp, config_.block_size);
      const std::span<const float> j_row(J.data() + i * all.size() + (span.first - all.first), size_t(span.size()));
      if (method == Method::Block) {
        keep_blocks(j_row, span, config_.block_sparse_blocks(), ForcedMode::InBudget, kept);
        tokens_in_blocks(kept, config_.block_size, ks, qp, out[q]);
        continue;
      }
      keep_blocks(j_row, span, config_.blocks, config_.forced, kept);
      // Token stage: score only the visible part of each kept block.
      tokens_in_blocks(kept, config_.block_size, ks, qp, cand);
      cand_scores.resize(cand.size());
      const ScoreInputs one = score_inputs(b, c.first + i, 1);
      size_t at = 0;
      while (at < cand.size()) {  // runs of consecutive positions (adjacent kept blocks merge)
        size_t end = at + 1;
        while (end < cand.size() && cand[end] == cand[end - 1] + 1) ++end;
        score_keys(one, keys_->row(cand[at]), keys_->k_scale.data() + cand[at], int64_t(end - at),
                   cand_scores.data() + at, 0);
        at = end;
      }
      topk_positions(cand_scores, cand, config_.topk, out[q]);
    }
  }

  int threads_;
  const LayerKeys* keys_ = nullptr;
  SelectionConfig config_;
  PooledKeys pooled_;
  BlockBounds bounds_;
};

}  // namespace

std::unique_ptr<SelectionEngine> make_cpu_engine(int threads) { return std::make_unique<CpuEngine>(threads); }

}  // namespace hisa
