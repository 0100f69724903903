#include "pipelines/audit.hpp"


#include <algorithm>
#include <chrono>
#include <mutex>

#include "core/error.hpp"
#include "core/log.hpp"
#include "core/progress.hpp"
#include "io/dump_reader.hpp"
#include "io/h5.hpp"
#include "io/sample_selection.hpp"
#include "pipelines/common.hpp"
#include "pipelines/layer_audit.hpp"
#include "render/audit_output.hpp"
#include "run/cluster.hpp"
#include "run/unit_runner.hpp"
#include "select/engine.hpp"

namespace hisa {

namespace {

// One (sample, layer) of the audit on one worker: a LayerAudit on the worker's device, whose accumulator for this
// sample is merged with the other samples' in unit order by run_audit.
class AuditWorker final : public UnitWorker {
 public:
  // The worker's engine stage times and per-query metrics time are added to `timings` (under `times_mutex`) when
  // it ends.
  AuditWorker(const AuditOptions& o, const AuditResult& r, const std::vector<SampleSource>& sources, size_t files,
              int device, const std::function<void(const QueryRecord&)>& on_query, AuditTimings& timings,
              std::mutex& times_mutex)
      : r_(r), sources_(sources), files_(files), on_query_(on_query), timings_(timings), times_mutex_(times_mutex),
        audit_(o, r.config, device) {}

  void begin(const WorkUnit& u, const LayerKeys& keys) override {
    src_ = &sources_[u.source];
    layer_ = u.layer;
    const std::string label = sample_label(*src_, files_);
    log_verbose(audit_.engine().name() + ": layer " + std::to_string(u.layer) + " of " + label);
    std::optional<NeedleRange> needle;
    const auto& attrs = src_->sample->attributes;
    if (attrs.has_needle()) needle = needle_rows({*attrs.needle_begin, *attrs.needle_end}, keys.compress_ratio);
    audit_.begin(u.layer, keys, needle, label);
  }

  void add(const QueryBatch& batch, std::span<const int64_t> part) override {
    if (!on_query_) return audit_.add(batch, part);
    audit_.add(batch, part, [&](const QueryAudit& a, const QueryMetrics& m) {
      on_query_({src_->reader->path(), src_->sample->name, layer_, &a, &m, &r_.config});
    });
  }

  std::string finish() override { return audit_.take().encode(); }

  ~AuditWorker() override {
    std::lock_guard lock(times_mutex_);
    timings_.engine = timings_.engine + audit_.engine_times();
    timings_.metrics += audit_.metrics_seconds();
  }

 private:
  const AuditResult& r_;
  const std::vector<SampleSource>& sources_;
  size_t files_;
  const std::function<void(const QueryRecord&)>& on_query_;
  AuditTimings& timings_;
  std::mutex& times_mutex_;
  LayerAudit audit_;
  const SampleSource* src_ = nullptr;
  int layer_ = 0;
};

// Everything besides the unit that decides a unit's result, for checkpoints.
std::string audit_fingerprint(const AuditOptions& o, const AuditResult& r, const std::string& engine_kind) {
  const SelectionConfig& c = r.config;
  const RefOverrides& ref = o.ref;
  auto opt = [](const auto& v, auto name) { return v ? std::string(name(*v)) : std::string("-"); };
  char tolerance[40];
  std::snprintf(tolerance, sizeof tolerance, "%a", ref.tolerance);  // exact: two tolerances never print alike
  const std::string ref_text =
      " ref_method=" + opt(ref.method, ref_method_name) +
      " ref_B=" + opt(ref.block_size, [](int64_t v) { return std::to_string(v); }) +
      " ref_m=" + opt(ref.blocks, [](int64_t v) { return std::to_string(v); }) +
      " ref_forced=" + opt(ref.forced, forced_mode_name) + " ref_pool=" + opt(ref.pool, pool_precision_name) +
      " ref_tolerance=" + tolerance + " worst_by=" + std::to_string(int(o.worst_by));
  return "audit v2 topk=" + std::to_string(c.topk) + " B=" + std::to_string(c.block_size) + " m=" + std::to_string(c.blocks) +
         " forced=" + std::string(forced_mode_name(c.forced)) + " pool=" + std::string(pool_precision_name(c.pool)) +
         " method=" + (o.certified ? "certified" : "hisa") + " worst=" + std::to_string(o.worst) +
         " parity=" + std::to_string(o.parity) + " engine=" + engine_kind + " files=" + std::to_string(o.files.size()) + ref_text;
}

// The layer's compress_ratio and window, from its groups' attributes alone. Every sample must agree on the ratio, or the
// numbers would mix rows of different sizes; the window is context only, reported when the samples agree on it.
void set_layer_compression(LayerStats& stats, const std::vector<SampleSource>& sources) {
  std::optional<int64_t> ratio;
  std::optional<int64_t> window;
  bool windows_agree = true;
  std::string first_at;
  for (const SampleSource& src : sources) {
    const auto& layers = src.sample->layers;
    if (!std::binary_search(layers.begin(), layers.end(), stats.layer)) continue;
    KeyCompression here;
    {
      // Layers finish while readers still run: HDF5 is used under its lock (io/h5.hpp).
      std::lock_guard lock(h5::library_mutex());
      here = src.reader->layer_compression(src.sample->name, stats.layer);
    }
    const std::string group = src.reader->layer_group_path(src.sample->name, stats.layer);
    if (!ratio) {
      ratio = here.compress_ratio;
      window = here.window;
      first_at = src.reader->path() + ": " + group;
    } else if (here.compress_ratio != *ratio) {
      throw InputError(src.reader->path(), group,
                       "compress_ratio " + std::to_string(here.compress_ratio) + " differs from " + first_at + "'s " +
                           std::to_string(*ratio) + ": a layer's samples must describe their keys alike");
    } else if (here.window != window) {
      windows_agree = false;
    }
  }
  if (ratio) stats.compress_ratio = *ratio;
  if (windows_agree) stats.window = window;
}

// The layer's statistics from its units' accumulators, merged in sample order; samples without the layer
// are listed as missing, as a sequential run lists them.
LayerStats merge_layer(int layer, const AuditResult& r, const AuditOptions& o, const std::vector<SampleSource>& sources,
                       size_t files, const std::vector<WorkUnit>& units, const std::vector<const std::string*>& results) {
  LayerAccumulator acc(layer, r.config.block_size, o.worst, o.worst_by);
  for (size_t s = 0; s < sources.size(); ++s) {
    const std::string* bytes = nullptr;
    for (size_t u = 0; u < units.size(); ++u) {
      if (units[u].layer == layer && units[u].source == s) bytes = results[u];
    }
    if (bytes != nullptr) {
      acc.merge(LayerAccumulator::decode(*bytes));
    } else {
      acc.add_missing_sample(sample_label(sources[s], files));
    }
  }
  LayerStats stats = acc.finish();
  set_layer_compression(stats, sources);
  return stats;
}

}  // namespace

AuditResult run_audit(const AuditOptions& o, const std::function<void(const QueryRecord&)>& on_query) {
  const auto start = std::chrono::steady_clock::now();
  if (o.files.empty()) throw UsageError("no input files");
  std::vector<DumpReader> readers = open_inputs(o.files, o.reader);

  AuditResult result;
  for (const auto& reader : readers) result.files.push_back(reader.path());  // directories expanded
  result.config = o.config;
  result.worst_by = o.worst_by;
  result.config.topk = resolve_topk(o.topk, readers);
  result.config.validate();
  RunPlan plan = make_run_plan(o.run, o.max_queries, kQueryBatch);
  plan.threads = o.threads;
  if (on_query && (plan.devices.size() > 1 || Cluster::get().size() > 1)) {
    throw OptionError("per_query", "per-query output streams queries in order: it runs on one GPU in one process");
  }
  if (on_query && plan.resume) {
    throw OptionError("per_query", "per-query output cannot resume: it needs every query");
  }
  // The engine's name describes the run (every worker has the same kind); the first worker's.
  result.engine = engine_name_on(plan.devices.front(), o.run.fp8_mma);
  plan.fingerprint = audit_fingerprint(o, result, engine_kind_on(plan.devices.front(), o.run.fp8_mma));

  const std::vector<SampleSource> sources = select_samples(readers, o.samples);
  const std::vector<int> layers = select_layers(sources, o.layers);
  const std::vector<WorkUnit> units = make_work_units(sources, layers);
  Progress progress(int64_t(units.size()), o.progress);
  int64_t done = 0;
  std::mutex times_mutex;
  // Finished layers are written to the checkpoint directory as they complete (layer_<N>.json).
  LayerFiles layer_files(o.run.checkpoint_dir, ".json", units,
                         [&](int layer, const std::vector<const std::string*>& results, std::ostream& out) {
                           AuditResult one = result;
                           one.layers = {merge_layer(layer, result, o, sources, readers.size(), units, results)};
                           out << audit_json(one).dump(2) << "\n";
                         });
  const auto results = run_units(
      sources, units, plan,
      [&](int device) {
        return std::make_unique<AuditWorker>(o, result, sources, readers.size(), device, on_query, result.timings, times_mutex);
      },
      result.timings.run,
      [&](size_t u, const std::string& bytes) {
        progress.advance(++done, "layer " + std::to_string(units[u].layer) + "  " +
                                     sample_label(sources[units[u].source], readers.size()));
        layer_files.add(u, bytes);
      });
  progress.finish();
  if (!is_output_rank()) return result;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<const std::string*> ptr(units.size());
  for (size_t u = 0; u < units.size(); ++u) ptr[u] = &results[u];
  for (int layer : layers) result.layers.push_back(merge_layer(layer, result, o, sources, readers.size(), units, ptr));
  result.timings.merging = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  result.timings.total = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace hisa
