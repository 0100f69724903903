#include "pipelines/live_audit.hpp"

#include <algorithm>
#include <sstream>

#include "analysis/report_pictures.hpp"
#include "core/error.hpp"
#include "io/query_subset.hpp"
#include "pipelines/common.hpp"
#include "render/audit_output.hpp"

namespace hisa {

LiveAudit::LiveAudit(LiveAuditOptions o) : o_(std::move(o)) {
  o_.audit.config.validate();
  audit_ = std::make_unique<LayerAudit>(o_.audit, o_.audit.config, o_.device);
}

LiveAudit::~LiveAudit() = default;

std::string LiveAudit::engine_name() const { return engine_name_on(o_.device, o_.audit.run.fp8_mma); }

LayerStats LiveAudit::add(const std::string& sample, int layer, const LayerKeys& keys, const QueryBatch& batch,
                          std::optional<NeedleRange> needle, std::optional<int64_t> window,
                          const LayerAudit::QueryCallback& on_query, const BatchRows& rows_of) {
  // Nothing of a layer changes until its add has finished: a failed add leaves the audit as it was.
  const auto known = layers_.find(layer);
  if (known != layers_.end() && known->second.samples.count(sample)) {
    throw OptionError("sample", "{sample} \"" + sample + "\" already holds layer " + std::to_string(layer) +
                                    " in this audit (each sample's layer is added once)");
  }
  if (known != layers_.end() && known->second.compress_ratio != keys.compress_ratio) {
    throw OptionError("compress_ratio", "layer " + std::to_string(layer) + " was added with {compress_ratio} " +
                                            std::to_string(known->second.compress_ratio) + ", now " +
                                            std::to_string(keys.compress_ratio) + ": a layer's samples must agree");
  }
  const SelectionConfig& config = o_.audit.config;
  const std::vector<int64_t> seeing = rows_seeing_keys(batch);
  audit_->begin(layer, keys, needle, sample);
  std::vector<double> hisa_iou, block_iou;
  std::vector<std::vector<BudgetPoint>> curves;
  std::ostringstream csv_rows;
  // In batches of kQueryBatch queries, as `hisa audit` reads a layer, then without the queries that see no key
  // row, as it drops them from each batch read: the same batches give the same sums, bit for bit. (The audit of a
  // whole layer at once would also hold every query's selections and block scores together.)
  for (int64_t from = 0; from < batch.count; from += kQueryBatch) {
    const auto first = std::lower_bound(seeing.begin(), seeing.end(), from);
    const auto last = std::lower_bound(first, seeing.end(), from + kQueryBatch);
    const std::span<const int64_t> part(first, last);
    if (part.empty()) continue;
    audit_->add(rows_of(batch, part), part, [&](const QueryAudit& a, const QueryMetrics& m) {
      hisa_iou.push_back(m.hisa.iou);
      block_iou.push_back(m.block.iou);
      curves.push_back(budget_curve(a, config));
      if (o_.query_rows) write_query_csv_row(csv_rows, {kSource, sample, layer, &a, &m, &config});
      if (on_query) on_query(a, m);
    });
  }
  LayerAccumulator acc = audit_->take();
  LayerStats stats = acc.finish();
  stats.compress_ratio = keys.compress_ratio;
  stats.window = window;
  // The report draws each layer's first `pictures` worst queries at most, and a query among the layer's final
  // worst is among its own sample's worst: draw those while the keys are here.
  const size_t drawn = size_t(std::min(o_.audit.worst, o_.pictures));
  for (size_t i = 0; i < std::min(drawn, stats.worst.size()); ++i) {
    const WorstQuery& w = stats.worst[i];
    if (w.iou >= 1.0) continue;  // nothing missed, nothing to draw (choose_pictures skips it too)
    Explanation e;
    e.options.layer = layer;
    e.options.sample = sample;
    e.options.query = w.query;
    e.config = config;
    const QueryBatch one = rows_of(batch, std::vector<int64_t>{w.query});
    if (keys.on_device()) {
      explain_with(audit_->engine(), e, one, keys.compress_ratio, needle);
    } else {
      explain_loaded(e, keys, one, needle);
    }
    pictures_[{sample, layer, w.query}] = picture_of(e, "", sample);  // no file: the page offers no explain command
  }
  LayerState& state = layers_[layer];
  if (state.acc) {
    state.acc->merge(acc);
    state.windows_agree = state.windows_agree && state.window == window;
  } else {
    state.acc.emplace(std::move(acc));
    state.window = window;
  }
  state.compress_ratio = keys.compress_ratio;
  state.samples.insert(sample);
  if (std::find(sample_order_.begin(), sample_order_.end(), sample) == sample_order_.end()) sample_order_.push_back(sample);
  if (drawn > 0) forget_pictures_beyond_the_worst(layer, drawn);
  state.hisa_iou.insert(state.hisa_iou.end(), hisa_iou.begin(), hisa_iou.end());
  state.block_iou.insert(state.block_iou.end(), block_iou.begin(), block_iou.end());
  for (const auto& curve : curves) state.budget.add(curve);
  query_rows_ += csv_rows.str();
  return stats;
}

// A query that left the layer's first `drawn` worst never comes back (later samples only push it further down).
void LiveAudit::forget_pictures_beyond_the_worst(int layer, size_t drawn) {
  const std::vector<WorstQuery> worst = layers_.at(layer).acc->worst();
  std::set<std::pair<std::string, int64_t>> kept;
  for (size_t i = 0; i < std::min(drawn, worst.size()); ++i) kept.insert({worst[i].sample, worst[i].query});
  for (auto it = pictures_.begin(); it != pictures_.end();) {
    const auto& [sample, picture_layer, query] = it->first;
    it = picture_layer == layer && !kept.count({sample, query}) ? pictures_.erase(it) : std::next(it);
  }
}

AuditResult LiveAudit::result() const {
  AuditResult r;
  r.config = o_.audit.config;
  r.engine = engine_name();
  r.files = {kSource};
  r.worst_by = o_.audit.worst_by;
  for (const auto& [layer, state] : layers_) {
    LayerStats stats = state.acc->finish();
    stats.compress_ratio = state.compress_ratio;
    if (state.windows_agree) stats.window = state.window;
    for (const std::string& sample : sample_order_) {
      if (!state.samples.count(sample)) stats.missing_samples.push_back(sample);  // as `hisa audit` lists them
    }
    r.layers.push_back(std::move(stats));
  }
  return r;
}

ReportData LiveAudit::report(const std::string& command_line) const {
  ReportData d;
  d.options.audit = o_.audit;
  d.options.audit.files = {kSource};
  d.options.pictures = o_.pictures;
  d.options.command_line = command_line;
  d.audit = result();
  for (const auto& [layer, state] : layers_) d.layers.push_back({state.hisa_iou, state.block_iou, state.budget.mean()});
  for (const PictureChoice& c : choose_pictures(d.audit.layers, o_.pictures)) {
    const auto p = pictures_.find({c.query->sample, c.layer, c.query->query});
    if (p != pictures_.end()) d.pictures.push_back(p->second);
  }
  return d;
}

}  // namespace hisa
