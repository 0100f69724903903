#include "pipelines/sweep.hpp"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <sstream>

#include "core/error.hpp"
#include "core/log.hpp"
#include "core/progress.hpp"
#include "core/stopwatch.hpp"
#include "io/dump_reader.hpp"
#include "io/sample_selection.hpp"
#include "pipelines/common.hpp"
#include "render/sweep_output.hpp"
#include "run/bytes.hpp"
#include "run/unit_runner.hpp"
#include "select/engine.hpp"

namespace hisa {

namespace {

void validate(const SweepOptions& o) {
  if (o.files.empty()) throw UsageError("no input files");
  auto sizes = [](const std::vector<int64_t>& v, const std::string& option) {
    if (v.empty()) throw OptionError(option, "{" + option + "}: empty list");
    for (int64_t x : v) check_selection_size(option, x);
  };
  sizes(o.block_sizes, "block_sizes");
  sizes(o.blocks, "blocks");
  if (o.pools.empty()) throw OptionError("pools", "{pools}: empty list");
  if (o.forced.empty()) throw OptionError("forced", "{forced}: empty list");
  if (!(o.target_recall >= 0 && o.target_recall <= 1)) throw OptionError("target_recall", "{target_recall} must lie in [0, 1]");
  if (!(o.target_p5 >= 0 && o.target_p5 <= 1)) throw OptionError("target_p5", "{target_p5} must lie in [0, 1]");
  if (o.topk) check_selection_size("topk", *o.topk);
}

template <typename T>
std::vector<T> sorted_unique(std::vector<T> v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

// The sweep's description of each taking-part sample (its label, context length and task, for the groups).
std::vector<SweepSample> describe_samples(const std::vector<SampleSource>& sources, size_t file_count) {
  std::vector<SweepSample> out;
  for (const auto& src : sources) {
    SweepSample sample;
    sample.file = src.reader->path();
    sample.name = src.sample->name;
    sample.label = sample_label(src, file_count);
    sample.context_length = src.sample->attributes.context_length.value_or(src.sample->attributes.seq_len);
    sample.task = src.sample->attributes.task;
    out.push_back(sample);
  }
  return out;
}

// One unit's per-query results: the layer's query indices, their q_pos, and variants × m points per query.
struct UnitPoints {
  std::vector<int64_t> queries, q_pos;
  std::vector<SweepPoint> points;
};

std::string encode(const UnitPoints& u) {
  ByteWriter w;
  w.put_vector(u.queries);
  w.put_vector(u.q_pos);
  w.put_vector(u.points);
  return w.take();
}

UnitPoints decode(const std::string& bytes) {
  ByteReader r(bytes);
  UnitPoints u;
  u.queries = r.get_vector<int64_t>();
  u.q_pos = r.get_vector<int64_t>();
  u.points = r.get_vector<SweepPoint>();
  return u;
}

// The sweep of one unit on one worker: the engine's DSA sets and J, then every variant's curve per query.
class SweepWorker final : public UnitWorker {
 public:
  SweepWorker(const SweepResult& r, const std::vector<PoolVariant>& pools, int device, int threads, bool fp8_mma,
              StageTimes& total, double& ranking, std::mutex& m)
      : r_(r), pools_(pools), threads_(threads > 0 ? threads : omp_get_max_threads()), total_(total), ranking_total_(ranking),
        m_(m), engine_(make_engine_on(device, threads, fp8_mma)) {}
  ~SweepWorker() override {
    const StageTimes t = engine_->times();
    std::lock_guard lock(m_);
    total_.pooling += t.pooling;
    total_.token_scores += t.token_scores + t.topk;
    total_.block_scores += t.block_scores;
    ranking_total_ += ranking_;
  }

  void begin(const WorkUnit& u, const LayerKeys& keys) override {
    log_verbose(engine_->name() + ": layer " + std::to_string(u.layer) + " of " + r_.samples[u.source].label);
    engine_->set_sweep_layer(keys, r_.topk, pools_);
    unit_ = {};
  }
  void add(const QueryBatch& batch, std::span<const int64_t> queries) override {
    engine_->sweep(batch, scores_);
    Stopwatch t(ranking_);
    const size_t nm = r_.blocks.size(), nf = r_.forced.size(), width = r_.variants.size() * nm;
    const size_t first = unit_.queries.size();
    unit_.points.resize((first + queries.size()) * width);
    // Each query's points depend only on its own scores: the thread count never changes a result.
#pragma omp parallel for schedule(dynamic, 8) num_threads(threads_)
    for (size_t i = 0; i < queries.size(); ++i) {
      const SweepScores& s = scores_[i];
      SweepPoint* row = unit_.points.data() + (first + i) * width;
      for (size_t v = 0; v < r_.variants.size(); ++v) {
        SweepQuery q;
        q.k_start = s.k_start, q.q_pos = s.q_pos;
        q.block_size = r_.variants[v].block_size, q.topk = r_.topk, q.forced = r_.variants[v].forced;
        q.flat = s.flat;
        q.J = s.J[v / nf];  // variants run through the forced modes of each pool variant
        sweep_query(q, r_.blocks, row + v * nm);
      }
    }
    for (size_t i = 0; i < queries.size(); ++i) {
      unit_.queries.push_back(queries[i]);
      unit_.q_pos.push_back(batch.token_position(int64_t(i)));
    }
  }
  std::string finish() override { return encode(unit_); }

 private:
  const SweepResult& r_;
  const std::vector<PoolVariant>& pools_;
  int threads_;
  StageTimes& total_;
  double& ranking_total_;
  std::mutex& m_;
  std::unique_ptr<SelectionEngine> engine_;
  std::vector<SweepScores> scores_;
  UnitPoints unit_;
  double ranking_ = 0;
};

// Everything that decides a unit's points, for checkpoints.
std::string sweep_fingerprint(const SweepResult& r) {
  std::ostringstream f;
  f << "sweep v1 topk=" << r.topk << " blocks=";
  for (auto m : r.blocks) f << m << ",";
  f << " variants=";
  for (const auto& v : r.variants) f << v.block_size << "/" << pool_precision_name(v.pool) << "/" << forced_mode_name(v.forced) << ",";
  f << " scorer=" << r.scorer;
  return f.str();
}

// The layer's curves from its units' points, in unit (sample) order; units of other layers are null.
LayerSweep summarize_units(const SweepResult& r, int layer, const std::vector<WorkUnit>& units,
                           const std::vector<const UnitPoints*>& points) {
  std::vector<SamplePoints> samples;
  for (size_t u = 0; u < units.size(); ++u) {
    if (units[u].layer == layer && points[u] != nullptr) samples.push_back({units[u].source, points[u]->points});
  }
  return summarize_layer(r, layer, samples);
}

// The CUDA engine's times for every (B, m) of the grid at each context length of the samples, with the heads
// and dims of the first sample's first layer, on a random bf16 layer (as `hisa bench`), or with fp8_mma an
// e4m3 layer on the fp8 tensor cores.
std::vector<SelectionTimeGrid> measure_kernel_times([[maybe_unused]] const SweepResult& r,
                                                    [[maybe_unused]] const std::vector<SampleSource>& sources,
                                                    [[maybe_unused]] int device, [[maybe_unused]] bool fp8_mma) {
  std::vector<SelectionTimeGrid> grids;
#ifdef HISA_HAVE_CUDA
  const SampleSource& first = sources.front();
  const LayerShape shape = first.reader->open_layer(first.sample->name, first.sample->layers.front()).shape();
  std::vector<int64_t> lengths;
  // The engine works on key rows: a compressed layer holds context_length / compress_ratio of them.
  for (const auto& s : r.samples) lengths.push_back(s.context_length / shape.compress_ratio);
  for (int64_t L : sorted_unique(lengths)) {
    if (L < 2 || shape.dim > 128) continue;  // the tensor-core bench path needs D <= 128
    SelectionTimeShape b;
    b.keys = L;
    b.heads = shape.heads;
    b.dim = shape.dim;
    b.queries = 128;
    b.topk = r.topk;
    b.repeat = 3;
    grids.push_back(time_selection_grid(b, r.block_sizes, r.blocks, device, fp8_mma));
  }
#endif
  return grids;
}

}  // namespace

SweepResult run_sweep(const SweepOptions& o, const std::function<void(const SweepQueryRecord&)>& on_query) {
  const auto start = std::chrono::steady_clock::now();
  validate(o);
  std::vector<DumpReader> readers = open_inputs(o.files, o.reader);

  SweepResult r;
  for (const auto& reader : readers) r.files.push_back(reader.path());  // directories expanded
  r.topk = resolve_topk(o.topk, readers);
  check_selection_size("topk", r.topk);  // the files' index_topk, when no k was given
  r.max_queries = o.max_queries;
  r.block_sizes = sorted_unique(o.block_sizes);
  r.blocks = sorted_unique(o.blocks);
  r.pools = sorted_unique(o.pools);
  r.forced = sorted_unique(o.forced);
  r.target_recall = o.target_recall;
  r.target_p5 = o.target_p5;
  std::vector<PoolVariant> pool_variants;  // what the engine pools: block size × precision
  for (int64_t b : r.block_sizes) {
    for (PoolPrecision p : r.pools) {
      pool_variants.push_back({b, p});
      for (ForcedMode f : r.forced) r.variants.push_back({b, p, f});
    }
  }
  const std::vector<SampleSource> sources = select_samples(readers, o.samples);
  r.samples = describe_samples(sources, readers.size());
  const std::vector<int> layers = select_layers(sources, o.layers);
  r.groups = make_groups(r.samples);

  RunPlan plan = make_run_plan(o.run, o.max_queries, kQueryBatch);
  plan.threads = o.threads;
  // Every worker of a run has the same kind of engine: its kind, without the GPU's name, describes the run.
  r.scorer = engine_kind_on(plan.devices.front(), o.run.fp8_mma);
  plan.fingerprint = sweep_fingerprint(r);

  const std::vector<WorkUnit> units = make_work_units(sources, layers);
  StageTimes scoring;
  std::mutex times_mutex;
  Progress progress(int64_t(units.size()), o.progress);
  int64_t done = 0;
  // A layer whose units are all here is written out at once: <checkpoint>/layer_<N>.csv, the --csv rows of
  // that layer.
  LayerFiles layer_files(o.run.checkpoint_dir, ".csv", units,
                         [&](int layer, const std::vector<const std::string*>& results, std::ostream& out) {
                           std::vector<UnitPoints> decoded(units.size());
                           std::vector<const UnitPoints*> ready(units.size(), nullptr);
                           for (size_t u = 0; u < units.size(); ++u) {
                             if (results[u] != nullptr) decoded[u] = decode(*results[u]), ready[u] = &decoded[u];
                           }
                           SweepResult one = r;
                           one.layers = {summarize_units(r, layer, units, ready)};
                           write_sweep_csv(out, one);
                         });
  const auto results = run_units(
      sources, units, plan,
      [&](int device) {
        return std::make_unique<SweepWorker>(r, pool_variants, device, o.threads, o.run.fp8_mma, scoring, r.timings.ranking,
                                             times_mutex);
      },
      r.timings.run,
      [&](size_t u, const std::string& bytes) {
        progress.advance(++done, "layer " + std::to_string(units[u].layer) + "  " + r.samples[units[u].source].label);
        layer_files.add(u, bytes);
      });
  progress.finish();
  r.timings.pooling = scoring.pooling;
  r.timings.token_scores = scoring.token_scores;
  r.timings.block_scores = scoring.block_scores;
  if (!is_output_rank()) return r;  // rank 0 merges and writes; the others are done

  {
    Stopwatch t(r.timings.summaries);
    std::vector<UnitPoints> all(units.size());
    std::vector<const UnitPoints*> ptr(units.size());
    for (size_t u = 0; u < units.size(); ++u) all[u] = decode(results[u]), ptr[u] = &all[u];
    const size_t width = r.variants.size() * r.blocks.size();
    for (int layer : layers) {
      if (on_query) {
        for (size_t u = 0; u < units.size(); ++u) {
          if (units[u].layer != layer) continue;
          for (size_t i = 0; i < all[u].queries.size(); ++i) {
            on_query({&r.samples[units[u].source], layer, all[u].queries[i], all[u].q_pos[i],
                      {all[u].points.data() + i * width, width}});
          }
        }
      }
      r.layers.push_back(summarize_units(r, layer, units, ptr));
    }
    for (size_t p = 0; p < r.pools.size(); ++p) {
      for (size_t f = 0; f < r.forced.size(); ++f) r.recommendations.push_back(recommend_mode(r, p, f));
    }
  }
  if (o.kernel_times && plan.devices.front() >= 0) {
    Stopwatch t(r.timings.kernel_timing);
    r.kernel_times = measure_kernel_times(r, sources, plan.devices.front(), o.run.fp8_mma);
  }
  r.timings.total = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

std::optional<std::pair<double, double>> SweepResult::measured_us(int64_t block_size, int64_t m) const {
  if (kernel_times.empty()) return std::nullopt;
  const SelectionTimeGrid& g = kernel_times.back();
  const auto b = std::find(g.block_sizes.begin(), g.block_sizes.end(), block_size);
  const auto j = std::find(g.blocks.begin(), g.blocks.end(), m);
  if (b == g.block_sizes.end() || j == g.blocks.end()) return std::nullopt;
  return std::pair{g.hisa_kernels_us[size_t(b - g.block_sizes.begin())][size_t(j - g.blocks.begin())], g.flat_kernels_us};
}

}  // namespace hisa
