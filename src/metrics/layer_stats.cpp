#include "metrics/layer_stats.hpp"

#include "run/bytes.hpp"

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

std::string distance_bucket_label(int bucket) {
  if (bucket == 0) return "0";
  if (bucket == 1) return "1";
  const int64_t lo = int64_t(1) << (bucket - 1), hi = (int64_t(1) << bucket) - 1;
  return std::to_string(lo) + "-" + std::to_string(hi);
}

void LayerAccumulator::PatternCounts::add(const PositionPattern& p) {
  if (size_t(p.top_bucket + 1) > buckets.size()) buckets.resize(size_t(p.top_bucket + 1), 0);
  for (int b = 0; b <= p.top_bucket; ++b) buckets[size_t(b)] += p.buckets[size_t(b)];
  sink += p.sink;
  own += p.own;
  tokens += p.tokens;
  blocks_touched.push_back(double(p.blocks));
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
    queries_seen_.push_back({sample, m.query, m.q_pos, m.hisa.iou, m.hisa.recall, m.hisa.coverage_ratio, m.miss_causes,
                             m.ref_iou, m.ref_unexplained.value_or(0)});
  }
  coverage_flat_.push_back(m.coverage_flat);
  if (m.needle_recall_flat) needle_flat_.push_back(*m.needle_recall_flat);
  if (m.ref_iou) ref_iou_.push_back(*m.ref_iou);
  ref_tie_swaps_ += m.ref_tie_swaps.value_or(0);
  ref_near_ties_ += m.ref_near_ties.value_or(0);
  ref_block_flips_ += m.ref_block_flips.value_or(0);
  ref_unexplained_ += m.ref_unexplained.value_or(0);
  ref_queries_unexplained_ += m.ref_unexplained.value_or(0) > 0;
  hisa_.add(m.hisa);
  block_.add(m.block);
  // The patterns come with the metrics when they were computed with the config (in parallel, by the audit).
  dsa_.add(m.dsa_pattern ? *m.dsa_pattern : position_pattern(a.flat, a, block_size_));
  if (m.miss_pattern) {
    misses_.add(*m.miss_pattern);
  } else {
    std::vector<int64_t> missed;
    std::set_difference(a.flat.begin(), a.flat.end(), a.hisa.begin(), a.hisa.end(), std::back_inserter(missed));
    misses_.add(position_pattern(missed, a, block_size_));
  }
}

namespace {

// The same name from every source, else "mixed".
void merge_name(std::string& into, const std::string& from) {
  if (from.empty() || into == from) return;
  into = into.empty() ? from : "mixed";
}

}  // namespace

void LayerAccumulator::add_ref_rule(const std::string& rule, const std::string& method) {
  merge_name(ref_rule_, rule);
  merge_name(ref_method_, method);
}

namespace {

template <typename T>
void append(std::vector<T>& to, const std::vector<T>& from) {
  to.insert(to.end(), from.begin(), from.end());
}

void put_strings(ByteWriter& w, const std::vector<std::string>& v) {
  w.put<uint64_t>(v.size());
  for (const auto& s : v) w.put_string(s);
}
std::vector<std::string> get_strings(ByteReader& r) {
  std::vector<std::string> v(r.get<uint64_t>());
  for (auto& s : v) s = r.get_string();
  return v;
}

}  // namespace

std::string LayerAccumulator::encode() const {
  ByteWriter w;
  w.put(layer_);
  w.put(block_size_);
  w.put(worst_count_);
  w.put(int(worst_by_));
  w.put<uint64_t>(queries_seen_.size());
  for (const auto& q : queries_seen_) {
    w.put_string(q.sample);
    w.put(q.query), w.put(q.q_pos), w.put(q.iou), w.put(q.recall), w.put(q.coverage_ratio), w.put(q.miss_causes);
    w.put(uint8_t(q.ref_iou.has_value())), w.put(q.ref_iou.value_or(0.0)), w.put(q.ref_unexplained);
  }
  w.put(miss_causes_);
  w.put(certified_);
  w.put_vector(certified_scored_share_);
  w.put_vector(certified_exact_);
  put_strings(w, samples_);
  put_strings(w, missing_);
  w.put(queries_);
  w.put_vector(coverage_flat_);
  w.put_vector(needle_flat_);
  w.put_vector(ref_iou_);
  w.put(ref_tie_swaps_), w.put(ref_near_ties_), w.put(ref_block_flips_), w.put(ref_unexplained_);
  w.put(ref_queries_unexplained_);
  w.put_string(ref_rule_), w.put_string(ref_method_);
  for (const MethodValues* m : {&hisa_, &block_}) {
    for (const auto* v : {&m->iou, &m->recall, &m->coverage, &m->ratio, &m->needle, &m->first_miss}) w.put_vector(*v);
  }
  for (const PatternCounts* p : {&dsa_, &misses_}) {
    w.put_vector(p->buckets);
    w.put(p->sink), w.put(p->own), w.put(p->tokens);
    w.put_vector(p->blocks_touched);
  }
  w.put(parity_);
  return w.take();
}

LayerAccumulator LayerAccumulator::decode(const std::string& bytes) {
  ByteReader r(bytes);
  const int layer = r.get<int>();
  const int64_t block_size = r.get<int64_t>(), worst = r.get<int64_t>();
  const int worst_by = r.get<int>();
  if (worst_by != int(WorstOrder::HisaIou) && worst_by != int(WorstOrder::RefIou)) {
    throw std::runtime_error("layer accumulator: unknown worst-query order");
  }
  LayerAccumulator a(layer, block_size, worst, WorstOrder(worst_by));
  a.queries_seen_.resize(r.get<uint64_t>());
  for (auto& q : a.queries_seen_) {
    q.sample = r.get_string();
    q.query = r.get<int64_t>(), q.q_pos = r.get<int64_t>(), q.iou = r.get<double>(), q.recall = r.get<double>();
    q.coverage_ratio = r.get<double>(), q.miss_causes = r.get<std::array<int64_t, 4>>();
    const bool has_ref = r.get<uint8_t>() != 0;
    const double ref_iou = r.get<double>();
    if (has_ref) q.ref_iou = ref_iou;
    q.ref_unexplained = r.get<int64_t>();
  }
  a.miss_causes_ = r.get<std::array<int64_t, 4>>();
  a.certified_ = r.get<int64_t>();
  a.certified_scored_share_ = r.get_vector<double>();
  a.certified_exact_ = r.get_vector<double>();
  a.samples_ = get_strings(r);
  a.missing_ = get_strings(r);
  a.queries_ = r.get<int64_t>();
  a.coverage_flat_ = r.get_vector<double>();
  a.needle_flat_ = r.get_vector<double>();
  a.ref_iou_ = r.get_vector<double>();
  a.ref_tie_swaps_ = r.get<int64_t>(), a.ref_near_ties_ = r.get<int64_t>(), a.ref_block_flips_ = r.get<int64_t>();
  a.ref_unexplained_ = r.get<int64_t>(), a.ref_queries_unexplained_ = r.get<int64_t>();
  a.ref_rule_ = r.get_string(), a.ref_method_ = r.get_string();
  for (MethodValues* m : {&a.hisa_, &a.block_}) {
    for (auto* v : {&m->iou, &m->recall, &m->coverage, &m->ratio, &m->needle, &m->first_miss}) *v = r.get_vector<double>();
  }
  for (PatternCounts* p : {&a.dsa_, &a.misses_}) {
    p->buckets = r.get_vector<int64_t>();
    p->sink = r.get<int64_t>(), p->own = r.get<int64_t>(), p->tokens = r.get<int64_t>();
    p->blocks_touched = r.get_vector<double>();
  }
  a.parity_ = r.get<ParityCounts>();
  if (!r.done()) throw std::runtime_error("layer accumulator: trailing bytes");
  return a;
}

void LayerAccumulator::merge(const LayerAccumulator& b) {
  append(queries_seen_, b.queries_seen_);
  for (size_t c = 0; c < miss_causes_.size(); ++c) miss_causes_[c] += b.miss_causes_[c];
  certified_ += b.certified_;
  append(certified_scored_share_, b.certified_scored_share_);
  append(certified_exact_, b.certified_exact_);
  append(samples_, b.samples_);
  append(missing_, b.missing_);
  queries_ += b.queries_;
  append(coverage_flat_, b.coverage_flat_);
  append(needle_flat_, b.needle_flat_);
  append(ref_iou_, b.ref_iou_);
  ref_tie_swaps_ += b.ref_tie_swaps_, ref_near_ties_ += b.ref_near_ties_, ref_block_flips_ += b.ref_block_flips_;
  ref_unexplained_ += b.ref_unexplained_, ref_queries_unexplained_ += b.ref_queries_unexplained_;
  merge_name(ref_rule_, b.ref_rule_);
  merge_name(ref_method_, b.ref_method_);
  for (auto [to, from] : {std::pair{&hisa_, &b.hisa_}, std::pair{&block_, &b.block_}}) {
    append(to->iou, from->iou), append(to->recall, from->recall), append(to->coverage, from->coverage);
    append(to->ratio, from->ratio), append(to->needle, from->needle), append(to->first_miss, from->first_miss);
  }
  for (auto [to, from] : {std::pair{&dsa_, &b.dsa_}, std::pair{&misses_, &b.misses_}}) {
    if (to->buckets.size() < from->buckets.size()) to->buckets.resize(from->buckets.size(), 0);
    for (size_t i = 0; i < from->buckets.size(); ++i) to->buckets[i] += from->buckets[i];
    to->sink += from->sink, to->own += from->own, to->tokens += from->tokens;
    append(to->blocks_touched, from->blocks_touched);
  }
  parity_ += b.parity_;
}

std::vector<WorstQuery> LayerAccumulator::worst() const {
  // Worst first: lowest IoU, then the largest coverage loss; ties by sample and query for a fixed order.
  std::vector<WorstQuery> sorted = queries_seen_;
  const size_t n = std::min(sorted.size(), size_t(worst_count_));
  const bool by_ref = worst_by_ == WorstOrder::RefIou;
  std::partial_sort(sorted.begin(), sorted.begin() + n, sorted.end(), [by_ref](const WorstQuery& x, const WorstQuery& y) {
    if (by_ref) {
      // Queries without topk_ref last; then the lowest ref IoU, the most unexplained tokens.
      if (x.ref_iou.has_value() != y.ref_iou.has_value()) return x.ref_iou.has_value();
      if (x.ref_iou != y.ref_iou) return *x.ref_iou < *y.ref_iou;
      if (x.ref_unexplained != y.ref_unexplained) return x.ref_unexplained > y.ref_unexplained;
    }
    if (x.iou != y.iou) return x.iou < y.iou;
    if (x.coverage_ratio != y.coverage_ratio) return x.coverage_ratio < y.coverage_ratio;
    if (x.sample != y.sample) return x.sample < y.sample;
    return x.query < y.query;
  });
  sorted.resize(n);
  return sorted;
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
  if (parity_.queries > 0) s.parity = parity_;
  s.certified_share = queries_ > 0 ? double(certified_) / double(queries_) : 0.0;
  if (!certified_exact_.empty()) {
    s.certified_scored_share = summarize(certified_scored_share_).mean;
    s.certified_exact_share = summarize(certified_exact_).mean;
  }
  s.worst = worst();
  if (!ref_iou_.empty()) {
    auto d = summarize(ref_iou_);
    s.ref_iou_mean = d.mean;
    s.ref_iou_min = d.min;
    s.ref_tie_swaps = ref_tie_swaps_;
    s.ref_near_ties = ref_near_ties_;
    s.ref_block_flips = ref_block_flips_;
    s.ref_unexplained = ref_unexplained_;
    s.ref_queries_unexplained = ref_queries_unexplained_;
    s.ref_rule = ref_rule_;
    s.ref_method = ref_method_;
  }
  return s;
}

}  // namespace hisa
