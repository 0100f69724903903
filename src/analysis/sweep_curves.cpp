#include "analysis/sweep_curves.hpp"

#include <map>

#include "metrics/layer_stats.hpp"

namespace hisa {

namespace {

// One layer's per-query points: row q holds variants × m values.
struct LayerPoints {
  size_t width = 0;
  std::vector<SweepPoint> points;
  std::vector<std::pair<size_t, size_t>> sample_rows;  // per sample: rows [first, second)
  const SweepPoint* row(size_t q) const { return points.data() + q * width; }
};

// Summaries of the rows of the given samples, for every variant and m.
Curves summarize_rows(const LayerPoints& lp, const std::vector<size_t>& samples, const SweepGrid& r) {
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

}  // namespace

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

LayerSweep summarize_layer(const SweepGrid& g, int layer, const std::vector<SamplePoints>& points) {
  LayerPoints lp;
  lp.width = g.variants.size() * g.blocks.size();
  lp.sample_rows.assign(g.samples.size(), {0, 0});
  for (const SamplePoints& s : points) {
    const size_t first = lp.points.size() / lp.width;
    lp.points.insert(lp.points.end(), s.points.begin(), s.points.end());
    lp.sample_rows[s.sample] = {first, lp.points.size() / lp.width};
  }
  LayerSweep ls;
  ls.layer = layer;
  std::vector<size_t> every(g.samples.size());
  for (size_t i = 0; i < every.size(); ++i) every[i] = i;
  ls.all = summarize_rows(lp, every, g);
  for (size_t si = 0; si < g.samples.size(); ++si) ls.per_sample.push_back(summarize_rows(lp, {si}, g));
  for (const auto& group : g.groups) ls.per_group.push_back(summarize_rows(lp, group.samples, g));
  return ls;
}

std::optional<size_t> SweepGrid::smallest_passing(const std::vector<CurvePoint>& curve) const {
  for (size_t j = 0; j < curve.size(); ++j) {
    if (meets(curve[j])) return j;
  }
  return std::nullopt;
}

}  // namespace hisa
