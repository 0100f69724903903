#include "pipelines/crosslayer.hpp"

#include <omp.h>

#include <algorithm>
#include <chrono>

#include "core/error.hpp"
#include "core/log.hpp"
#include "core/progress.hpp"
#include "io/sample_selection.hpp"
#include "pipelines/common.hpp"
#include "run/bytes.hpp"
#include "select/engine.hpp"

namespace hisa {

namespace {

// One (sample, layer): its flat selections, query by query.
class CrosslayerWorker final : public UnitWorker {
 public:
  CrosslayerWorker(const SelectionConfig& config, int device, int threads, bool fp8_mma)
      : config_(config), engine_(make_engine_on(device, threads, fp8_mma)) {}

  void begin(const WorkUnit& u, const LayerKeys& keys) override {
    log_verbose(engine_->name() + ": layer " + std::to_string(u.layer));
    engine_->set_layer(keys, config_);
    current_ = LayerSelections{};
    current_.layer = u.layer;
    current_.compress_ratio = keys.compress_ratio;
  }
  void add(const QueryBatch& batch, std::span<const int64_t>) override {
    engine_->select(batch, Method::Flat, selections_);
    for (int64_t i = 0; i < batch.count; ++i) {
      current_.add(batch.token_position(i), batch.k_start[size_t(i)], selections_[size_t(i)]);
    }
  }
  std::string finish() override {
    ByteWriter w;
    w.put(current_.layer);
    w.put(current_.compress_ratio);
    w.put_vector(current_.q_pos);
    w.put_vector(current_.k_start);
    w.put_vector(current_.positions);
    w.put_vector(current_.offsets);
    return w.take();
  }

 private:
  SelectionConfig config_;
  std::unique_ptr<SelectionEngine> engine_;
  LayerSelections current_;
  std::vector<std::vector<int64_t>> selections_;
};

// A unit's bytes back; runtime_error when they do not hold one layer's selections (checkpoints are checked
// whole before this, so this guards against a foreign or truncated blob).
LayerSelections decode(const std::string& bytes) {
  ByteReader r(bytes);
  LayerSelections l;
  l.layer = r.get<int>();
  l.compress_ratio = r.get<int64_t>();
  l.q_pos = r.get_vector<int64_t>();
  l.k_start = r.get_vector<int64_t>();
  l.positions = r.get_vector<int32_t>();
  l.offsets = r.get_vector<int64_t>();
  bool ok = r.done() && l.compress_ratio >= 1 && l.k_start.size() == l.q_pos.size() && l.offsets.size() == l.q_pos.size() + 1 &&
            l.offsets.front() == 0 && l.offsets.back() == int64_t(l.positions.size());
  for (size_t i = 0; ok && i + 1 < l.offsets.size(); ++i) ok = l.offsets[i] <= l.offsets[i + 1];
  if (!ok) throw std::runtime_error("crosslayer: a unit's result is not one layer's selections");
  return l;
}

// Where layer `layer` sits in the run's ascending list of layers.
size_t index_of(const std::vector<int>& layers, int layer) {
  return size_t(std::lower_bound(layers.begin(), layers.end(), layer) - layers.begin());
}

PlanResult evaluate(const ReusePlan& plan, const CrosslayerResult& r, const std::vector<int64_t>& own_queries) {
  PlanResult p;
  p.name = plan.name;
  for (size_t l = 0; l < r.layers.size(); ++l) {
    const int source = plan.source_of.at(r.layers[l]);
    PlanLayer pl;
    pl.layer = r.layers[l];
    pl.source = source;
    if (source == pl.layer) {
      p.indexer_layers.push_back(pl.layer);
      pl.summary = {own_queries[l], 1.0, 1.0, 1.0};  // its own selection
    } else {
      pl.summary = r.pooled[index_of(r.layers, source)][l];
    }
    p.min_recall_mean = std::min(p.min_recall_mean, pl.summary.recall_mean);
    p.layers.push_back(pl);
  }
  p.meets_target = p.min_recall_mean >= r.recall_target;
  return p;
}

}  // namespace

CrosslayerResult run_crosslayer(const CrosslayerOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  if (o.files.empty()) throw UsageError("no input files");
  if (o.reuse_every && *o.reuse_every < 1) {
    throw OptionError("reuse_every", "{reuse_every} must be at least 1 (got " + std::to_string(*o.reuse_every) + ")");
  }
  std::vector<DumpReader> readers = open_inputs(o.files, o.reader);
  CrosslayerResult r;
  for (const auto& reader : readers) r.files.push_back(reader.path());
  r.topk = resolve_topk(o.topk, readers);
  r.recall_target = o.recall_target;
  SelectionConfig config;
  config.topk = r.topk;
  config.validate();
  const std::vector<SampleSource> sources = select_samples(readers, o.samples);
  for (const auto& s : sources) r.samples.push_back(sample_label(s, readers.size()));
  r.layers = select_layers(sources, o.layers);
  std::optional<ReusePlan> asked_map;
  if (o.reuse_map) asked_map = reuse_map(r.layers, *o.reuse_map);  // checked before any work

  RunPlan plan = make_run_plan(o.run, o.max_queries, kQueryBatch);
  plan.threads = o.threads;
  r.engine = engine_name_on(plan.devices.front(), o.run.fp8_mma);
  // v2: a unit carries its layer's compress_ratio, so v1 checkpoints are not taken.
  plan.fingerprint = "crosslayer v2 topk=" + std::to_string(r.topk) + " engine=" +
                     engine_kind_on(plan.devices.front(), o.run.fp8_mma) + " files=" + std::to_string(o.files.size());
  const std::vector<WorkUnit> units = make_work_units(sources, r.layers);
  Progress progress(int64_t(units.size()), o.progress);
  int64_t done = 0;
  const auto results = run_units(
      sources, units, plan,
      [&](int device) { return std::make_unique<CrosslayerWorker>(config, device, o.threads, o.run.fp8_mma); }, r.run,
      [&](size_t u, const std::string&) {
        progress.advance(++done, "layer " + std::to_string(units[u].layer) + "  " + r.samples[units[u].source]);
      });
  progress.finish();
  if (!is_output_rank()) return r;

  // Each sample's layers, in layer order (index into r.layers; null where the sample lacks the layer).
  const size_t n = r.layers.size();
  std::vector<std::vector<std::optional<LayerSelections>>> by_sample(sources.size(), std::vector<std::optional<LayerSelections>>(n));
  for (size_t u = 0; u < units.size(); ++u) {
    by_sample[units[u].source][index_of(r.layers, units[u].layer)] = decode(results[u]);
  }
  std::vector<int64_t> own_queries(n, 0);
  for (const auto& layers : by_sample) {
    for (size_t l = 0; l < n; ++l) own_queries[l] += layers[l] ? int64_t(layers[l]->queries()) : 0;
  }
  // Every (sample, s < l) pair, computed in parallel; the values are kept in pair order so that pooling over
  // samples does not depend on the thread count.
  struct Task {
    size_t sample, s, l;
  };
  std::vector<Task> tasks;
  for (size_t smp = 0; smp < sources.size(); ++smp) {
    for (size_t s = 0; s < n; ++s) {
      for (size_t l = s + 1; l < n; ++l) {
        if (by_sample[smp][s] && by_sample[smp][l]) tasks.push_back({smp, s, l});
      }
    }
  }
  std::vector<PairValues> values(tasks.size());
#pragma omp parallel for schedule(dynamic, 1) num_threads(o.threads > 0 ? o.threads : omp_get_max_threads())
  for (size_t t = 0; t < tasks.size(); ++t) {
    values[t] = compare_layers(*by_sample[tasks[t].sample][tasks[t].s], *by_sample[tasks[t].sample][tasks[t].l]);
  }
  std::vector<std::vector<PairValues>> pooled_values(n, std::vector<PairValues>(n));
  for (size_t t = 0; t < tasks.size(); ++t) {
    const Task& k = tasks[t];
    r.pairs.push_back({r.samples[k.sample], r.layers[k.s], r.layers[k.l], summarize_pair(values[t])});
    PairValues& p = pooled_values[k.s][k.l];
    p.iou.insert(p.iou.end(), values[t].iou.begin(), values[t].iou.end());
    p.recall.insert(p.recall.end(), values[t].recall.begin(), values[t].recall.end());
  }
  r.pooled.assign(n, std::vector<PairSummary>(n));
  for (size_t s = 0; s < n; ++s) {
    for (size_t l = s + 1; l < n; ++l) r.pooled[s][l] = summarize_pair(pooled_values[s][l]);
  }

  // Plans: the asked ones, then the candidates for the cheapest.
  auto recall_mean = [&](int source, int layer) {
    return r.pooled[index_of(r.layers, source)][index_of(r.layers, layer)].recall_mean;
  };
  if (o.reuse_every) r.plans.push_back(evaluate(reuse_every(r.layers, *o.reuse_every), r, own_queries));
  if (asked_map) r.plans.push_back(evaluate(*asked_map, r, own_queries));
  const PlanResult greedy = evaluate(reuse_greedy(r.layers, r.recall_target, recall_mean), r, own_queries);
  std::optional<PlanResult> best;
  auto better = [](const PlanResult& a, const PlanResult& b) {
    if (a.indexer_layers.size() != b.indexer_layers.size()) return a.indexer_layers.size() < b.indexer_layers.size();
    return a.min_recall_mean > b.min_recall_mean;
  };
  const int widest = r.layers.empty() ? 1 : std::max(1, r.layers.back() + 1);
  for (int every = 1; every <= widest; ++every) {
    PlanResult p = evaluate(reuse_every(r.layers, every), r, own_queries);
    if (p.meets_target && (!best || better(p, *best))) best = std::move(p);
  }
  if (greedy.meets_target && (!best || better(greedy, *best))) best = greedy;
  r.plans.push_back(greedy);
  if (best) {
    r.cheapest = best->name;
    const bool listed = std::any_of(r.plans.begin(), r.plans.end(), [&](const PlanResult& p) { return p.name == best->name; });
    if (!listed) r.plans.push_back(*best);
  }
  r.total_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace hisa
