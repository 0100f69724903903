#include "pipelines/layer_audit.hpp"

#include <omp.h>

#include <numeric>
#include <stdexcept>

#include "core/log.hpp"
#include "core/stopwatch.hpp"
#include "io/query_subset.hpp"
#include "metrics/parity.hpp"
#include "select/certified.hpp"

namespace hisa {

namespace {

// The first n queries of a batch, as a batch.
QueryBatch first_queries(const QueryBatch& b, int64_t n) {
  std::vector<int64_t> rows(static_cast<size_t>(n));
  std::iota(rows.begin(), rows.end(), int64_t(0));
  return batch_rows(b, rows);
}

}  // namespace

LayerAudit::LayerAudit(const AuditOptions& o, const SelectionConfig& config, int device)
    : o_(o), config_(config), threads_(o.threads > 0 ? o.threads : omp_get_max_threads()), device_(device),
      engine_(make_engine_on(device, o.threads, o.run.fp8_mma)) {
  if (o.parity > 0) cpu_ = make_cpu_engine(o.threads);
}

LayerAudit::~LayerAudit() = default;

void LayerAudit::begin(int layer, const LayerKeys& keys, std::optional<NeedleRange> needle, const std::string& label) {
  keys_ = &keys;
  label_ = label;
  if (keys.on_device() && (o_.certified || o_.parity > 0)) {
    throw std::invalid_argument("LayerAudit: --certified and --parity read keys in host memory, not on a GPU");
  }
  engine_->set_layer(keys, config_);
  // The certificates' score bounds: of keys on a GPU, evaluated there per batch (add()).
  bounds_ = keys.on_device() ? BlockBounds() : BlockBounds(keys, config_.block_size);
  acc_.emplace(layer, config_.block_size, o_.worst, o_.worst_by);
  acc_->add_sample(label_);
  ref_layer_.reset();
  ref_engine_rule_.reset();
  needle_ = needle;
  if (cpu_) {
    cpu_->set_layer(keys, config_);
    pooled_ = pool_keys(keys, config_.block_size, config_.pool);
    parity_left_ = o_.parity;
  }
}

void LayerAudit::add(const QueryBatch& batch, std::span<const int64_t> part, const QueryCallback& on_query) {
  if (batch.on_device() != keys_->on_device()) {
    throw std::invalid_argument("LayerAudit: queries and keys must both be in host memory or both on the GPU");
  }
  engine_->audit(batch, audits_);
  if (batch.on_device()) engine_->block_bounds(batch, engine_bounds_);
  if (batch.ref_width > 0) prepare_ref(batch);
  // topk_ref of a batch on a GPU: judged here, query by query, by the engine that audits under its rule
  // (engine_ref_scorer: the engines are not shared between threads); the metrics below take the judgements.
  device_judgements_.clear();
  if (batch.on_device() && batch.ref_width > 0) {
    SelectionEngine& rule_engine = ref_covered_ ? *engine_ : *ref_engine_;
    for (int64_t i = 0; i < batch.count; ++i) {
      const RefScorer scorer = engine_ref_scorer(rule_engine, batch, i, ref_layer_->rule.config.block_size);
      device_judgements_.push_back(judge_ref_row(*ref_layer_, batch, i, ref_covered_ ? audits_[size_t(i)] : ref_audits_[size_t(i)],
                                                 ref_row(batch, i), &scorer));
    }
  }
  cpu_audits_.clear();
  if (cpu_ && parity_left_ > 0) {
    const QueryBatch head = first_queries(batch, std::min(parity_left_, batch.count));
    cpu_->audit(head, cpu_audits_);
    parity_left_ -= head.count;
  }
  CertifiedResult certified;
  if (o_.certified) certified = certified_select(*keys_, bounds_, batch, config_.topk, o_.threads);
  Stopwatch t(metrics_seconds_);
  // Each query's metrics depend on that query alone: computed in parallel, then added in query order, so the
  // results never depend on the thread count.
  metrics_.assign(part.size(), QueryMetrics{});
#pragma omp parallel for schedule(dynamic, 4) num_threads(threads_)
  for (size_t i = 0; i < part.size(); ++i) metrics_[i] = query_metrics(batch, int64_t(i), part[i], certified);
  for (size_t i = 0; i < part.size(); ++i) {
    const QueryMetrics& m = metrics_[i];
    acc_->add(audits_[i], m, label_);
    if (m.ref_iou) acc_->add_ref_rule(describe_ref_rule(ref_layer_->rule), ref_method_name(ref_layer_->rule.method));
    if (i < cpu_audits_.size()) {
      const QueryParity p = compare_query(audits_[i], cpu_audits_[i], batch, int64_t(i), *keys_, pooled_, config_,
                                          parity_tolerance(engine_->inexact_scores()));
      acc_->add_parity(p.flat_differ, p.hisa_differ, p.unexplained);
    }
    if (on_query) on_query(audits_[i], m);
  }
}

LayerAccumulator LayerAudit::take() {
  LayerAccumulator a = std::move(*acc_);
  acc_.reset();
  return a;
}

StageTimes LayerAudit::engine_times() const {
  StageTimes t = engine_->times();
  if (ref_engine_) t = t + ref_engine_->times();
  return t;
}

// The rule this batch's topk_ref is judged by, and its exact selections: the run's audit when it holds them,
// else an audit of the batch under the rule's config by a second engine of the same kind.
void LayerAudit::prepare_ref(const QueryBatch& batch) {
  const RefRule rule = resolve_ref_rule(batch.ref_declaration, o_.ref, config_);
  if (!ref_layer_ || !(ref_layer_->rule == rule)) ref_layer_ = make_ref_layer(*keys_, rule, o_.ref.tolerance);
  ref_covered_ = audit_covers(rule, config_);
  if (ref_covered_) return;
  if (!ref_engine_) ref_engine_ = make_engine_on(device_, o_.threads, o_.run.fp8_mma);
  if (!ref_engine_rule_ || !(*ref_engine_rule_ == rule)) {
    ref_engine_->set_layer(*keys_, rule.config);
    ref_engine_rule_ = rule;
  }
  ref_engine_->audit(batch, ref_audits_);
}

// Row i's topk_ref.
std::span<const int32_t> LayerAudit::ref_row(const QueryBatch& batch, int64_t i) {
  return {batch.topk_ref.data() + i * batch.ref_width, size_t(batch.ref_width)};
}

// Row i of the batch (the layer's query `query`): its metrics, the judgement of the dump's topk_ref, and what
// the certified search found.
QueryMetrics LayerAudit::query_metrics(const QueryBatch& batch, int64_t i, int64_t query,
                                       const CertifiedResult& certified) const {
  const QueryAudit& a = audits_[size_t(i)];
  const int64_t first_block = a.k_start / config_.block_size;
  QueryMetrics m = compute_query_metrics(a, query, needle_, &config_, [&](int64_t block) {
    return batch.on_device() ? engine_bounds_[size_t(i)][size_t(block - first_block)] : bounds_.score_bound(batch, i, block);
  });
  if (batch.ref_width > 0) {
    set_ref_metrics(batch.on_device() ? device_judgements_[size_t(i)]
                                      : judge_ref_row(*ref_layer_, batch, i, ref_covered_ ? a : ref_audits_[size_t(i)], ref_row(batch, i)),
                    m);
  }
  if (o_.certified) {
    m.certified_keys_scored = certified.keys_scored[size_t(i)];
    m.certified_equals_flat = certified.selections[size_t(i)] == a.flat;
  }
  return m;
}

}  // namespace hisa
