#include "metrics/parity.hpp"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <vector>

#include "select/blocks.hpp"
#include "select/score_cpu.hpp"
#include "select/topk.hpp"

namespace hisa {

int64_t unexplained_differences(std::span<const int64_t> got, std::span<const int64_t> want,
                                const std::function<double(int64_t)>& score, const std::function<double(int64_t)>& abs,
                                double tolerance) {
  if (std::equal(got.begin(), got.end(), want.begin(), want.end())) return 0;
  int64_t bad = std::abs(int64_t(got.size()) - int64_t(want.size()));
  if (want.empty()) return bad + int64_t(got.size());
  int64_t cut = want.front();
  for (int64_t p : want) {
    if (ranks_before(float(score(cut)), cut, float(score(p)), p)) cut = p;  // the lowest-ranked kept one
  }
  const double c = score(cut), ca = abs(cut);
  std::vector<int64_t> diff;
  std::set_symmetric_difference(got.begin(), got.end(), want.begin(), want.end(), std::back_inserter(diff));
  for (int64_t p : diff) {
    if (!near_tie(score(p), abs(p), c, ca, tolerance)) ++bad;
  }
  return bad;
}

QueryParity compare_query(const QueryAudit& got, const QueryAudit& want, const QueryBatch& b, int64_t i, const LayerKeys& keys,
                          const PooledKeys& pooled, const SelectionConfig& config, double tolerance) {
  QueryParity p;
  p.flat_differ = got.flat != want.flat;
  p.hisa_differ = got.hisa != want.hisa;
  if (!p.flat_differ && !p.hisa_differ && got.hisa_blocks == want.hisa_blocks) return p;
  // The CPU's scores of the visible keys, one row.
  std::vector<float> row(size_t(want.visible));
  const ScoreInputs one{b.q_row(i, 0), b.w_row(i), 1, b.heads, b.dim};
  score_keys(one, keys.row(want.k_start), keys.k_scale.data() + want.k_start, want.visible, row.data(), want.visible);
  auto score = [&](int64_t s) { return double(row[size_t(s - want.k_start)]); };
  auto abs = [&](int64_t s) { return abs_score(b, i, keys.row(s), keys.k_scale[size_t(s)]); };
  p.unexplained += unexplained_differences(got.flat, want.flat, score, abs, tolerance);
  if (got.hisa_blocks == want.hisa_blocks) {
    p.unexplained += unexplained_differences(got.hisa, want.hisa, score, abs, tolerance);
    return p;
  }
  // Kept blocks differ: each differing block must be a near-tie, by J, of the CPU's lowest-ranked kept block
  // that HISA chose by J (forced blocks are kept by both).
  const BlockSpan span = eligible_blocks(want.k_start, want.q_pos, config.block_size);
  auto J = [&](int64_t blk) { return double(want.block_scores[size_t(blk - span.first)]); };
  auto absJ = [&](int64_t blk) { return abs_score(b, i, pooled.k.data() + blk * pooled.dim, pooled.scale[size_t(blk)]); };
  auto forced = [&](int64_t blk) { return blk == span.first || blk == span.last; };
  int64_t cut = -1;
  for (int64_t blk : want.hisa_blocks) {
    if (config.forced == ForcedMode::InBudget && forced(blk)) continue;
    if (cut < 0 || ranks_before(float(J(cut)), cut, float(J(blk)), blk)) cut = blk;
  }
  std::vector<int64_t> diff;
  std::set_symmetric_difference(got.hisa_blocks.begin(), got.hisa_blocks.end(), want.hisa_blocks.begin(),
                                want.hisa_blocks.end(), std::back_inserter(diff));
  for (int64_t blk : diff) {
    if (cut < 0 || blk < span.first || blk > span.last ||
        !near_tie(J(blk), absJ(blk), J(cut), absJ(cut), tolerance)) {
      ++p.unexplained;
    }
  }
  return p;
}

}  // namespace hisa
