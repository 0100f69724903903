#include "metrics/query_metrics.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <iterator>
#include <numeric>

#include "metrics/diagnosis.hpp"
#include "select/topk.hpp"

namespace hisa {

std::vector<char> membership(std::span<const int64_t> x, std::span<const int64_t> y) {
  std::vector<char> in(x.size(), 0);
  size_t j = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    while (j < y.size() && y[j] < x[i]) ++j;
    in[i] = j < y.size() && y[j] == x[i];
  }
  return in;
}

int distance_bucket(int64_t distance) { return distance <= 0 ? 0 : int(std::bit_width(uint64_t(distance))); }

PositionPattern position_pattern(const std::vector<int64_t>& positions, const QueryAudit& a, int64_t block_size) {
  PositionPattern p;
  const int64_t sink_block = a.k_start / block_size, own_block = a.q_pos / block_size;
  int64_t last_block = -1;
  for (int64_t s : positions) {  // ascending, so distinct blocks are counted in one pass
    const int b = distance_bucket(a.q_pos - s);
    ++p.buckets[size_t(b)];
    p.top_bucket = std::max(p.top_bucket, b);
    const int64_t block = s / block_size;
    p.sink += block == sink_block;
    p.own += block == own_block;
    if (block != last_block) ++p.blocks, last_block = block;
  }
  p.tokens = int64_t(positions.size());
  return p;
}

std::vector<int64_t> ref_positions(std::span<const int32_t> topk_ref) {
  std::vector<int64_t> ref;
  for (int32_t v : topk_ref) {
    if (v >= 0) ref.push_back(v);
  }
  std::sort(ref.begin(), ref.end());
  ref.erase(std::unique(ref.begin(), ref.end()), ref.end());
  return ref;
}

std::vector<int64_t> dsa_ranks(const QueryAudit& a) {
  // DSA's order: higher score first, equal scores by lower position; a.flat is ascending, so by lower index. As
  // integers (order keys inverted, then the index) the order is a plain sort.
  std::vector<uint64_t> order(a.flat.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = (uint64_t(~order_key(a.flat_scores[i])) << 32) | uint64_t(i);
  std::sort(order.begin(), order.end());
  std::vector<int64_t> rank(a.flat.size());
  for (size_t r = 0; r < order.size(); ++r) rank[size_t(order[r] & 0xFFFFFFFFu)] = int64_t(r) + 1;
  return rank;
}

std::optional<int64_t> best_rank_not_held(const QueryAudit& a, const std::vector<char>& held) {
  // DSA's order as dsa_ranks': a higher order key first, equal keys by lower index (a.flat is ascending).
  std::optional<size_t> best;
  uint32_t best_key = 0;
  for (size_t i = 0; i < a.flat.size(); ++i) {
    const uint32_t key = order_key(a.flat_scores[i]);
    if (!held[i] && (!best || key > best_key)) best = i, best_key = key;  // strict: the lowest index of equal keys
  }
  if (!best) return std::nullopt;
  int64_t before = 0;  // entries DSA ranks ahead of it
  for (size_t i = 0; i < a.flat.size(); ++i) {
    const uint32_t key = order_key(a.flat_scores[i]);
    before += key > best_key || (key == best_key && i < *best);
  }
  return before + 1;
}

namespace {

std::optional<double> needle_share(const std::vector<int64_t>& x, const QueryAudit& a, std::optional<NeedleRange> needle) {
  if (!needle) return std::nullopt;
  const int64_t lo = std::max(needle->begin, a.k_start), hi = std::min(needle->end, a.q_pos + 1);
  if (hi <= lo) return std::nullopt;  // the needle is not visible to this query
  auto first = std::lower_bound(x.begin(), x.end(), lo), last = std::lower_bound(x.begin(), x.end(), hi);
  return double(last - first) / double(hi - lo);
}

SetComparison compare(const std::vector<int64_t>& x, double mass_x, const QueryAudit& a, std::optional<NeedleRange> needle) {
  SetComparison c;
  // One merge pass: which of DSA's tokens x holds gives both |X∩D| and the first miss.
  const std::vector<char> held = membership(a.flat, x);
  const int64_t common = std::count(held.begin(), held.end(), char(1));
  c.iou = iou_of(common, int64_t(x.size()), int64_t(a.flat.size()));
  c.recall = a.flat.empty() ? 1.0 : double(common) / double(a.flat.size());
  c.coverage = mass_x / a.mass_visible;
  c.coverage_ratio = a.mass_flat > 0 ? mass_x / a.mass_flat : 1.0;
  c.first_miss_rank = best_rank_not_held(a, held);
  c.needle_recall = needle_share(x, a, needle);
  return c;
}

}  // namespace

QueryMetrics compute_query_metrics(const QueryAudit& a, int64_t query_index, std::optional<NeedleRange> needle,
                                   const SelectionConfig* config,
                                   const std::function<float(int64_t block)>& block_bound) {
  QueryMetrics m;
  m.query = query_index;
  m.q_pos = a.token_pos;
  m.visible = a.visible;
  m.coverage_flat = a.mass_flat / a.mass_visible;
  m.needle_recall_flat = needle_share(a.flat, a, needle);
  m.hisa = compare(a.hisa, a.mass_hisa, a, needle);
  m.block = compare(a.block, a.mass_block, a, needle);
  if (config && !a.block_scores.empty()) {
    m.miss_causes = count_miss_causes(a, *config);
    m.dsa_pattern = position_pattern(a.flat, a, config->block_size);
    std::vector<int64_t> missed;
    std::set_difference(a.flat.begin(), a.flat.end(), a.hisa.begin(), a.hisa.end(), std::back_inserter(missed));
    m.miss_pattern = position_pattern(missed, a, config->block_size);
    if (block_bound) m.certified = certify_hisa(a, *config, block_bound);
  }
  return m;
}

}  // namespace hisa
