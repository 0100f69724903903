#include "metrics/layer_stats.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace hisa {

double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  const double at = p / 100.0 * double(sorted.size() - 1);
  const size_t lo = size_t(std::floor(at)), hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (at - double(lo));
}

Distribution summarize(std::vector<double> v) {
  Distribution d;
  d.count = int64_t(v.size());
  if (v.empty()) return d;
  std::sort(v.begin(), v.end());
  double sum = 0;
  for (double x : v) sum += x;  // ascending order: a fixed order, so results never vary between runs
  d.mean = sum / double(v.size());
  if (v.size() > 1) {
    double ss = 0;
    for (double x : v) ss += (x - d.mean) * (x - d.mean);
    d.stderr_ = std::sqrt(ss / double(v.size() - 1)) / std::sqrt(double(v.size()));
  }
  d.min = v.front();
  d.max = v.back();
  d.p1 = percentile(v, 1);
  d.p5 = percentile(v, 5);
  d.p50 = percentile(v, 50);
  return d;
}

int distance_bucket(int64_t distance) {
  if (distance <= 0) return 0;
  int b = 1;
  while (distance >>= 1) ++b;
  return b;
}

std::string distance_bucket_label(int bucket) {
  if (bucket == 0) return "0";
  if (bucket == 1) return "1";
  const int64_t lo = int64_t(1) << (bucket - 1), hi = (int64_t(1) << bucket) - 1;
  return std::to_string(lo) + "-" + std::to_string(hi);
}

void LayerAccumulator::PatternCounts::add(const std::vector<int64_t>& positions, const QueryAudit& a, int64_t block_size) {
  const int64_t sink_block = a.k_start / block_size, own_block = a.q_pos / block_size;
  int64_t distinct = 0, last_block = -1;
  for (int64_t s : positions) {  // ascending, so distinct blocks are counted in one pass
    const int b = distance_bucket(a.q_pos - s);
    if (size_t(b) >= buckets.size()) buckets.resize(size_t(b) + 1, 0);
    ++buckets[size_t(b)];
    sink += (s / block_size == sink_block);
    own += (s / block_size == own_block);
    if (s / block_size != last_block) ++distinct, last_block = s / block_size;
  }
  tokens += int64_t(positions.size());
  blocks_touched.push_back(double(distinct));
}

CoveragePattern LayerAccumulator::PatternCounts::finish() const {
  CoveragePattern p;
  p.tokens = tokens;
  const double total = tokens > 0 ? double(tokens) : 1.0;
  for (int64_t c : buckets) p.distance_share.push_back(double(c) / total);
  p.sink_block_share = double(sink) / total;
  p.own_block_share = double(own) / total;
  std::vector<double> sorted = blocks_touched;
  std::sort(sorted.begin(), sorted.end());
  p.blocks_touched_p50 = percentile(sorted, 50);
  p.blocks_touched_p95 = percentile(sorted, 95);
  return p;
}

void LayerAccumulator::MethodValues::add(const SetComparison& c) {
  iou.push_back(c.iou);
  recall.push_back(c.recall);
  coverage.push_back(c.coverage);
  ratio.push_back(c.coverage_ratio);
  if (c.needle_recall) needle.push_back(*c.needle_recall);
  if (c.first_miss_rank) first_miss.push_back(double(*c.first_miss_rank));
}

namespace {

std::optional<double> mean_of(const std::vector<double>& v) {
  if (v.empty()) return std::nullopt;
  return summarize(v).mean;
}

}  // namespace

MethodStats LayerAccumulator::MethodValues::finish() const {
  MethodStats s;
  s.iou = summarize(iou);
  s.recall = summarize(recall);
  s.coverage = summarize(coverage);
  s.coverage_ratio = summarize(ratio);
  s.exact_share = iou.empty() ? 0 : double(std::count(iou.begin(), iou.end(), 1.0)) / double(iou.size());
  s.needle_recall_mean = mean_of(needle);
  if (!first_miss.empty()) s.first_miss_rank_median = summarize(first_miss).p50;
  return s;
}

void LayerAccumulator::add(const QueryAudit& a, const QueryMetrics& m, const std::string& sample) {
  ++queries_;
  for (size_t c = 0; c < miss_causes_.size(); ++c) miss_causes_[c] += m.miss_causes[c];
  certified_ += m.certified;
  if (m.certified_keys_scored) {
    certified_scored_share_.push_back(double(*m.certified_keys_scored) / double(std::max<int64_t>(1, m.visible)));
    certified_exact_.push_back(m.certified_equals_flat.value_or(false) ? 1.0 : 0.0);
  }
  if (worst_count_ > 0) {
    queries_seen_.push_back({sample, m.query, m.q_pos, m.hisa.iou, m.hisa.recall, m.hisa.coverage_ratio, m.miss_causes});
  }
  coverage_flat_.push_back(m.coverage_flat);
  if (m.needle_recall_flat) needle_flat_.push_back(*m.needle_recall_flat);
  if (m.ref_iou) ref_iou_.push_back(*m.ref_iou);
  ref_tie_swaps_ += m.ref_tie_swaps.value_or(0);
  ref_unexplained_ += m.ref_unexplained.value_or(0);
  hisa_.add(m.hisa);
  block_.add(m.block);
  dsa_.add(a.flat, a, block_size_);
  thread_local std::vector<int64_t> missed;
  missed.clear();
  std::set_difference(a.flat.begin(), a.flat.end(), a.hisa.begin(), a.hisa.end(), std::back_inserter(missed));
  misses_.add(missed, a, block_size_);
}

LayerStats LayerAccumulator::finish() const {
  LayerStats s;
  s.layer = layer_;
  s.queries = queries_;
  s.samples = samples_;
  s.missing_samples = missing_;
  s.coverage_flat_mean = summarize(coverage_flat_).mean;
  s.needle_recall_flat_mean = mean_of(needle_flat_);
  s.hisa = hisa_.finish();
  s.block = block_.finish();
  s.dsa = dsa_.finish();
  s.hisa_misses = misses_.finish();
  s.miss_causes = miss_causes_;
  s.certified_share = queries_ > 0 ? double(certified_) / double(queries_) : 0.0;
  if (!certified_exact_.empty()) {
    s.certified_scored_share = summarize(certified_scored_share_).mean;
    s.certified_exact_share = summarize(certified_exact_).mean;
  }
  if (worst_count_ > 0) {
    // Worst first: lowest IoU, then the largest coverage loss; ties by sample and query for a fixed order.
    std::vector<WorstQuery> sorted = queries_seen_;
    const size_t n = std::min(sorted.size(), size_t(worst_count_));
    std::partial_sort(sorted.begin(), sorted.begin() + n, sorted.end(), [](const WorstQuery& x, const WorstQuery& y) {
      if (x.iou != y.iou) return x.iou < y.iou;
      if (x.coverage_ratio != y.coverage_ratio) return x.coverage_ratio < y.coverage_ratio;
      if (x.sample != y.sample) return x.sample < y.sample;
      return x.query < y.query;
    });
    s.worst.assign(sorted.begin(), sorted.begin() + n);
  }
  if (!ref_iou_.empty()) {
    auto d = summarize(ref_iou_);
    s.ref_iou_mean = d.mean;
    s.ref_iou_min = d.min;
    s.ref_tie_swaps = ref_tie_swaps_;
    s.ref_unexplained = ref_unexplained_;
  }
  return s;
}

}  // namespace hisa
