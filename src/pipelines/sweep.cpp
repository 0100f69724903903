#include "pipelines/sweep.hpp"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <sstream>

#include "core/error.hpp"
#include "core/progress.hpp"
#include "io/dump_reader.hpp"
#include "io/query_subset.hpp"
#include "io/sample_selection.hpp"
#include "metrics/layer_stats.hpp"
#include "run/bytes.hpp"
#include "run/unit_runner.hpp"
#include "select/engine.hpp"
#include "select/sweep_scorer.hpp"
#include "render/sweep_output.hpp"
#include "core/atomic_file.hpp"

namespace hisa {

namespace {

// The audit's batch: the same batches give the same chunks, hence the engine's scores bit for bit.
constexpr int64_t kQueryBatch = 256;
constexpr size_t kHeaviestLayers = 5;

class Stopwatch {
 public:
  explicit Stopwatch(double& into) : into_(into), t0_(std::chrono::steady_clock::now()) {}
  ~Stopwatch() { into_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count(); }

 private:
  double& into_;
  std::chrono::steady_clock::time_point t0_;
};

void validate(const SweepOptions& o) {
  if (o.files.empty()) throw UsageError("no input files");
  auto positive = [](const std::vector<int64_t>& v, const char* flag) {
    if (v.empty()) throw UsageError(std::string(flag) + ": empty list");
    for (int64_t x : v) {
      if (x < 1) throw UsageError(std::string(flag) + " values must be at least 1 (got " + std::to_string(x) + ")");
    }
  };
  positive(o.block_sizes, "--block-sizes");
  positive(o.blocks, "--blocks");
  if (o.pools.empty()) throw UsageError("--pool-precision: empty list");
  if (o.forced.empty()) throw UsageError("--forced: empty list");
  if (!(o.target_recall >= 0 && o.target_recall <= 1)) throw UsageError("--target-recall must lie in [0, 1]");
  if (!(o.target_p5 >= 0 && o.target_p5 <= 1)) throw UsageError("--target-p5 must lie in [0, 1]");
  if (o.topk && *o.topk < 1) throw UsageError("--topk must be at least 1 (got " + std::to_string(*o.topk) + ")");
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
    sample.label = file_count > 1 ? src.reader->path() + ":" + src.sample->name : src.sample->name;
    sample.context_length = src.sample->attributes.context_length.value_or(src.sample->attributes.seq_len);
    sample.task = src.sample->attributes.task;
    out.push_back(sample);
  }
  return out;
}

// Groups by context length (ascending) and by task (alphabetical; samples without a task are in none).
std::vector<SweepGroup> make_groups(const std::vector<SweepSample>& samples) {
  std::map<int64_t, std::vector<size_t>> by_length;
  std::map<std::string, std::vector<size_t>> by_task;
  for (size_t i = 0; i < samples.size(); ++i) {
    by_length[samples[i].context_length].push_back(i);
    if (samples[i].task) by_task[*samples[i].task].push_back(i);
  }
  std::vector<SweepGroup> groups;
  for (auto& [length, members] : by_length) groups.push_back({"context_length", std::to_string(length), members});
  for (auto& [task, members] : by_task) groups.push_back({"task", task, members});
  return groups;
}

// One layer's per-query points: row q holds variants × m values.
struct LayerPoints {
  size_t width = 0;
  std::vector<SweepPoint> points;
  std::vector<std::pair<size_t, size_t>> sample_rows;  // per sample: rows [first, second)
  const SweepPoint* row(size_t q) const { return points.data() + q * width; }
};

// Summaries of the rows of the given samples, for every variant and m.
Curves summarize_rows(const LayerPoints& lp, const std::vector<size_t>& samples, const SweepResult& r) {
  Curves c;
  const size_t nm = r.blocks.size();
  c.points.assign(r.variants.size(), std::vector<CurvePoint>(nm));
  std::vector<size_t> rows;
  for (size_t s : samples) {
    for (size_t q = lp.sample_rows[s].first; q < lp.sample_rows[s].second; ++q) rows.push_back(q);
  }
  c.queries = int64_t(rows.size());
  std::vector<double> recall(rows.size());
  for (size_t v = 0; v < r.variants.size(); ++v) {
    for (size_t j = 0; j < nm; ++j) {
      CurvePoint& p = c.points[v][j];
      p.blocks = r.blocks[j];
      p.queries = c.queries;
      if (rows.empty()) continue;
      double iou = 0, keys = 0;
      for (size_t i = 0; i < rows.size(); ++i) {
        const SweepPoint& x = lp.row(rows[i])[v * nm + j];
        recall[i] = x.recall;
        iou += x.iou;
        keys += double(x.scored_keys);
      }
      const Distribution d = summarize(recall);  // the audit's percentile definition
      p.recall_mean = d.mean;
      p.recall_p5 = d.p5;
      p.recall_min = d.min;
      p.iou_mean = iou / double(rows.size());
      p.scored_keys_mean = keys / double(rows.size());
    }
  }
  return c;
}

// True when a ranks before b as a setting: cheaper first, then the smaller block size, then the smaller m.
bool cheaper(const CurvePoint& a, int64_t block_a, const CurvePoint& b, int64_t block_b) {
  if (a.scored_keys_mean != b.scored_keys_mean) return a.scored_keys_mean < b.scored_keys_mean;
  if (block_a != block_b) return block_a < block_b;
  return a.blocks < b.blocks;
}

// The sample with the lowest recall mean at (variant, m) in one layer (the first of equals).
void worst_sample(const SweepResult& r, const LayerSweep& l, size_t v, size_t j, std::string& label, CurvePoint& point) {
  bool any = false;
  for (size_t s = 0; s < r.samples.size(); ++s) {
    const CurvePoint& p = l.per_sample[s].points[v][j];
    if (p.queries == 0) continue;
    if (!any || p.recall_mean < point.recall_mean) label = r.samples[s].label, point = p, any = true;
  }
}

LayerRecommendation recommend_layer(const SweepResult& r, const LayerSweep& l, size_t pool, size_t forced) {
  LayerRecommendation best;
  best.layer = l.layer;
  bool have = false;
  for (size_t b = 0; b < r.block_sizes.size(); ++b) {
    const size_t v = r.variant_index(b, pool, forced);
    const auto& curve = l.all.points[v];
    if (auto j = r.smallest_passing(curve)) {
      if (!best.meets_targets || cheaper(curve[*j], r.block_sizes[b], best.expected, best.block_size)) {
        best.meets_targets = true, have = true;
        best.variant = v, best.m_index = *j, best.block_size = r.block_sizes[b], best.expected = curve[*j];
      }
      continue;
    }
    if (best.meets_targets) continue;
    for (size_t j = 0; j < curve.size(); ++j) {  // nothing passes yet: the best recall, cheapest among equals
      const CurvePoint& p = curve[j];
      if (!have || p.recall_mean > best.expected.recall_mean ||
          (p.recall_mean == best.expected.recall_mean && cheaper(p, r.block_sizes[b], best.expected, best.block_size))) {
        have = true;
        best.variant = v, best.m_index = j, best.block_size = r.block_sizes[b], best.expected = p;
      }
    }
  }
  best.blocks = best.expected.blocks;
  worst_sample(r, l, best.variant, best.m_index, best.worst_sample, best.worst);
  return best;
}

// The (B, m) that meets the targets on every layer with the least total cost.
std::optional<UniformRecommendation> recommend_uniform(const SweepResult& r, size_t pool, size_t forced) {
  std::optional<UniformRecommendation> best;
  for (size_t b = 0; b < r.block_sizes.size(); ++b) {
    const size_t v = r.variant_index(b, pool, forced);
    for (size_t j = 0; j < r.blocks.size(); ++j) {
      bool all_meet = true;
      double cost = 0;
      size_t layers_with_queries = 0;
      for (const auto& l : r.layers) {
        if (l.all.queries == 0) continue;  // nothing to meet, nothing to pay
        all_meet = all_meet && r.meets(l.all.points[v][j]);
        cost += l.all.points[v][j].scored_keys_mean;
        ++layers_with_queries;
      }
      if (!all_meet || layers_with_queries == 0) continue;
      cost /= double(layers_with_queries);
      // Strictly cheaper only: the grid is walked by block size, then m, so ties keep the smaller ones.
      if (best && cost >= best->scored_keys_mean) continue;
      UniformRecommendation u;
      u.block_size = r.block_sizes[b], u.blocks = r.blocks[j], u.block_index = b, u.m_index = j;
      u.scored_keys_mean = cost;
      bool first = true;
      for (const auto& l : r.layers) {
        const CurvePoint& p = l.all.points[v][j];
        if (l.all.queries == 0) continue;
        if (first || p.recall_mean < u.lowest.recall_mean) u.lowest_layer = l.layer, u.lowest = p;
        std::string label;
        CurvePoint worst;
        worst_sample(r, l, v, j, label, worst);
        if (first || worst.recall_mean < u.worst.recall_mean) u.worst_sample = label, u.worst_layer = l.layer, u.worst = worst;
        first = false;
      }
      best = u;
    }
  }
  return best;
}

}  // namespace

ModeRecommendation recommend_mode(const SweepResult& r, size_t pool, size_t forced) {
  ModeRecommendation m;
  m.pool = r.pools[pool];
  m.forced = r.forced[forced];
  for (const auto& l : r.layers) m.layers.push_back(recommend_layer(r, l, pool, forced));
  m.uniform = recommend_uniform(r, pool, forced);
  std::vector<const LayerRecommendation*> met;
  for (size_t i = 0; i < m.layers.size(); ++i) {
    const LayerRecommendation& l = m.layers[i];
    if (l.meets_targets) {
      met.push_back(&l);
    } else if (r.layers[i].all.queries > 0) {  // a layer without queries is reported as such, not as unmet
      m.unmet.push_back(l.layer);
    }
  }
  std::stable_sort(met.begin(), met.end(), [](const LayerRecommendation* a, const LayerRecommendation* b) {
    return a->expected.scored_keys_mean > b->expected.scored_keys_mean;
  });
  for (size_t i = 0; i < std::min(kHeaviestLayers, met.size()); ++i) m.heaviest.push_back(met[i]->layer);
  for (size_t g = 0; g < r.groups.size(); ++g) {
    GroupCheck check;
    check.group = g;
    for (size_t i = 0; i < r.layers.size(); ++i) {
      const LayerRecommendation& rec = m.layers[i];
      const CurvePoint& p = r.layers[i].per_group[g].points[rec.variant][rec.m_index];
      check.recommended.push_back(p);
      if (p.queries > 0) ++check.layers_present;
      if (rec.meets_targets && r.meets(p)) ++check.layers_meeting;
      if (m.uniform) {
        check.uniform.push_back(r.layers[i].per_group[g].points[r.variant_index(m.uniform->block_index, pool, forced)]
                                                                [m.uniform->m_index]);
      }
    }
    m.groups.push_back(check);
  }
  return m;
}

std::optional<size_t> SweepResult::smallest_passing(const std::vector<CurvePoint>& curve) const {
  for (size_t j = 0; j < curve.size(); ++j) {
    if (meets(curve[j])) return j;
  }
  return std::nullopt;
}

namespace {

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

// The sweep of one unit on one worker: the scorer's DSA sets and J, then every variant's curve per query.
class SweepWorker final : public UnitWorker {
 public:
  SweepWorker(const SweepResult& r, const std::vector<PoolVariant>& pools, int device, int threads, bool fp8_mma,
              ScoringTimes& total, double& ranking, std::mutex& m)
      : r_(r), pools_(pools), threads_(threads > 0 ? threads : omp_get_max_threads()), total_(total), ranking_total_(ranking),
        m_(m), scorer_(make_sweep_scorer_on(device, threads, fp8_mma)) {}
  ~SweepWorker() override {
    const ScoringTimes t = scorer_->times();
    std::lock_guard lock(m_);
    total_.pooling += t.pooling;
    total_.token_scores += t.token_scores;
    total_.block_scores += t.block_scores;
    ranking_total_ += ranking_;
  }

  void begin(const WorkUnit&, const LayerKeys& keys) override {
    scorer_->set_layer(keys, r_.topk, pools_);
    unit_ = {};
  }
  void add(const QueryBatch& batch, std::span<const int64_t> queries) override {
    scorer_->score(batch, scores_);
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
      unit_.q_pos.push_back(scores_[i].q_pos);
    }
  }
  std::string finish() override { return encode(unit_); }

 private:
  const SweepResult& r_;
  const std::vector<PoolVariant>& pools_;
  int threads_;
  ScoringTimes& total_;
  double& ranking_total_;
  std::mutex& m_;
  std::unique_ptr<SweepScorer> scorer_;
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

// The layer's curves from its units' points, in unit (sample) order.
LayerSweep summarize_layer(const SweepResult& r, int layer, const std::vector<WorkUnit>& units,
                           const std::vector<const UnitPoints*>& points, size_t sources) {
  LayerPoints lp;
  lp.width = r.variants.size() * r.blocks.size();
  lp.sample_rows.assign(sources, {0, 0});
  for (size_t u = 0; u < units.size(); ++u) {
    if (units[u].layer != layer || points[u] == nullptr) continue;
    const size_t first = lp.points.size() / lp.width;
    lp.points.insert(lp.points.end(), points[u]->points.begin(), points[u]->points.end());
    lp.sample_rows[units[u].source] = {first, lp.points.size() / lp.width};
  }
  LayerSweep ls;
  ls.layer = layer;
  std::vector<size_t> every(sources);
  for (size_t i = 0; i < every.size(); ++i) every[i] = i;
  ls.all = summarize_rows(lp, every, r);
  for (size_t si = 0; si < sources; ++si) ls.per_sample.push_back(summarize_rows(lp, {si}, r));
  for (const auto& g : r.groups) ls.per_group.push_back(summarize_rows(lp, g.samples, r));
  return ls;
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
  for (const auto& s : r.samples) lengths.push_back(s.context_length);
  for (int64_t L : sorted_unique(lengths)) {
    CudaBenchOptions b;
    b.keys = {L};
    b.heads = shape.heads;
    b.dim = shape.dim;
    b.queries = 128;
    b.topk = r.topk;
    b.repeat = 3;
    if (L < 2 || shape.dim > 128) continue;  // the tensor-core bench path needs D <= 128
    grids.push_back(time_selection_grid(b, r.block_sizes, r.blocks, device, fp8_mma));
  }
#endif
  return grids;
}

}  // namespace

SweepResult run_sweep(const SweepOptions& o, const std::function<void(const SweepQueryRecord&)>& on_query) {
  const auto start = std::chrono::steady_clock::now();
  validate(o);
  std::vector<DumpReader> readers = open_inputs(o.files);

  SweepResult r;
  for (const auto& reader : readers) r.files.push_back(reader.path());  // directories expanded
  r.topk = resolve_topk(o.topk, readers);
  r.max_queries = o.max_queries;
  r.block_sizes = sorted_unique(o.block_sizes);
  r.blocks = sorted_unique(o.blocks);
  r.pools = sorted_unique(o.pools);
  r.forced = sorted_unique(o.forced);
  r.target_recall = o.target_recall;
  r.target_p5 = o.target_p5;
  std::vector<PoolVariant> pool_variants;  // what the scorer pools: block size × precision
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
  // Every worker of a run has the same kind of scorer: its name, without the GPU's index, describes the run.
  const bool fp8 = fp8_mma_in_effect(plan.devices.front(), o.run.fp8_mma);
  r.scorer = plan.devices.front() < 0 ? "cpu" : fp8 ? "cuda (fp8 tensor cores)" : "cuda";
  plan.fingerprint = sweep_fingerprint(r);

  const std::vector<WorkUnit> units = make_work_units(sources, layers);
  std::vector<int64_t> units_left(layers.size(), 0);
  for (const auto& u : units) ++units_left[size_t(std::lower_bound(layers.begin(), layers.end(), u.layer) - layers.begin())];
  std::vector<std::optional<UnitPoints>> decoded(units.size());
  std::vector<const UnitPoints*> ready(units.size(), nullptr);
  ScoringTimes scoring;
  std::mutex times_mutex;
  Progress progress(int64_t(units.size()), o.progress);
  int64_t done = 0;
  const auto results = run_units(
      sources, units, plan,
      [&](int device) {
        return std::make_unique<SweepWorker>(r, pool_variants, device, o.threads, o.run.fp8_mma, scoring, r.timings.ranking, times_mutex);
      },
      r.timings.run,
      [&](size_t u, const std::string& bytes) {
        progress.advance(++done, "layer " + std::to_string(units[u].layer) + "  " + r.samples[units[u].source].label);
        if (o.run.checkpoint_dir.empty()) return;
        // A layer whose units are all here is written out at once, so an interrupted run leaves finished layers
        // readable: <checkpoint>/layer_<N>.csv, the --csv rows of that layer.
        decoded[u] = decode(bytes);
        ready[u] = &*decoded[u];
        const size_t li = size_t(std::lower_bound(layers.begin(), layers.end(), units[u].layer) - layers.begin());
        if (--units_left[li] > 0) return;
        SweepResult one = r;
        one.layers = {summarize_layer(r, units[u].layer, units, ready, sources.size())};
        write_file_atomically(o.run.checkpoint_dir + "/layer_" + std::to_string(units[u].layer) + ".csv",
                              [&](std::ostream& out) { write_sweep_csv(out, one); });
        for (size_t x = 0; x < units.size(); ++x) {
          if (units[x].layer == units[u].layer) decoded[x].reset(), ready[x] = nullptr;
        }
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
      r.layers.push_back(summarize_layer(r, layer, units, ptr, sources.size()));
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
