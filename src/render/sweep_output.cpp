#include "render/sweep_output.hpp"

#include <algorithm>
#include <cstdio>
#include <string>

#include "core/text_escape.hpp"
#include "render/text_format.hpp"

namespace hisa {

namespace {

std::string num(double v, const char* fmt = "%.6g") { return format_number(v, fmt); }

template <typename T>
std::string joined(const std::vector<T>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(v[i]);
  }
  return s;
}

std::string mode_text(PoolPrecision p, ForcedMode f) {
  return "pool " + std::string(pool_precision_name(p)) + ", forced " + std::string(forced_mode_name(f));
}

nlohmann::json json_of(const CurvePoint& p) {
  return {{"blocks", p.blocks},           {"queries", p.queries},       {"recall_mean", p.recall_mean},
          {"recall_p5", p.recall_p5},     {"recall_min", p.recall_min}, {"iou_mean", p.iou_mean},
          {"scored_keys_mean", p.scored_keys_mean}};
}

nlohmann::json json_of(const LayerRecommendation& l) {
  nlohmann::json j = {{"layer", l.layer},
                      {"block_size", l.block_size},
                      {"blocks", l.blocks},
                      {"meets_targets", l.meets_targets},
                      {"expected_recall_mean", l.expected.recall_mean},
                      {"expected_recall_p5", l.expected.recall_p5},
                      {"expected_recall_min", l.expected.recall_min},
                      {"expected_iou_mean", l.expected.iou_mean},
                      {"scored_keys_mean", l.expected.scored_keys_mean},
                      {"queries", l.expected.queries}};
  j["worst_sample"] = {{"sample", l.worst_sample}, {"recall_mean", l.worst.recall_mean}, {"recall_p5", l.worst.recall_p5}};
  return j;
}

nlohmann::json json_of(const UniformRecommendation& u) {
  return {{"block_size", u.block_size},
          {"blocks", u.blocks},
          {"scored_keys_mean", u.scored_keys_mean},
          {"lowest_layer", {{"layer", u.lowest_layer}, {"recall_mean", u.lowest.recall_mean}, {"recall_p5", u.lowest.recall_p5}}},
          {"worst_sample", {{"sample", u.worst_sample}, {"layer", u.worst_layer}, {"recall_mean", u.worst.recall_mean},
                            {"recall_p5", u.worst.recall_p5}}}};
}

// The lowest recall mean over the layers a group holds, and its layer (-1: none).
std::pair<double, int> lowest(const SweepResult& r, const std::vector<CurvePoint>& per_layer) {
  double low = 0;
  int layer = -1;
  for (size_t i = 0; i < per_layer.size(); ++i) {
    if (per_layer[i].queries == 0) continue;
    if (layer < 0 || per_layer[i].recall_mean < low) low = per_layer[i].recall_mean, layer = r.layers[i].layer;
  }
  return {low, layer};
}

int64_t meeting(const SweepResult& r, const std::vector<CurvePoint>& per_layer) {
  int64_t n = 0;
  for (const auto& p : per_layer) n += r.meets(p) ? 1 : 0;
  return n;
}

// With GPU kernel times: the measured cost of a setting beside the keys-scored model.
void add_measured(const SweepResult& r, int64_t block_size, int64_t blocks, nlohmann::json& e) {
  if (const auto us = r.measured_us(block_size, blocks)) {
    e["measured_us_per_query"] = us->first;
    e["measured_flat_us_per_query"] = us->second;
  }
}

nlohmann::json kernel_times_json(const SweepResult& r) {
  nlohmann::json all = nlohmann::json::array();
  for (const auto& g : r.kernel_times) {
    nlohmann::json points = nlohmann::json::array();
    for (size_t b = 0; b < g.block_sizes.size(); ++b) {
      for (size_t j = 0; j < g.blocks.size(); ++j) {
        points.push_back({{"block_size", g.block_sizes[b]}, {"blocks", g.blocks[j]},
                          {"hisa_kernels_us_per_query", g.hisa_kernels_us[b][j]}});
      }
    }
    all.push_back({{"gpu", g.gpu}, {"context_length", g.keys}, {"heads", g.heads}, {"dim", g.dim}, {"queries", g.queries},
                   {"topk", g.topk}, {"flat_kernels_us_per_query", g.flat_kernels_us}, {"points", points}});
  }
  return all;
}

nlohmann::json json_of(const SweepResult& r, const ModeRecommendation& m) {
  nlohmann::json j = {{"pool_precision", pool_precision_name(m.pool)}, {"forced", forced_mode_name(m.forced)},
                      {"topk", r.topk}, {"targets", {{"recall_mean", r.target_recall}, {"recall_p5", r.target_p5}}}};
  j["layers"] = nlohmann::json::array();
  for (const auto& l : m.layers) {
    nlohmann::json e = json_of(l);
    add_measured(r, l.block_size, l.blocks, e);
    j["layers"].push_back(e);
  }
  j["uniform"] = m.uniform ? json_of(*m.uniform) : nlohmann::json(nullptr);
  if (m.uniform) add_measured(r, m.uniform->block_size, m.uniform->blocks, j["uniform"]);
  j["heaviest_layers"] = nlohmann::json::array();
  for (int layer : m.heaviest) {
    for (const auto& l : m.layers) {
      if (l.layer == layer) j["heaviest_layers"].push_back({{"layer", layer}, {"block_size", l.block_size}, {"blocks", l.blocks},
                                                            {"scored_keys_mean", l.expected.scored_keys_mean}});
    }
  }
  j["unmet_layers"] = m.unmet;
  nlohmann::json by_length = nlohmann::json::array(), by_task = nlohmann::json::array();
  for (const auto& g : m.groups) {
    const SweepGroup& group = r.groups[g.group];
    nlohmann::json e;
    e[group.kind] = group.kind == "context_length" ? nlohmann::json(std::stoll(group.key)) : nlohmann::json(group.key);
    e["samples"] = nlohmann::json::array();
    for (size_t s : group.samples) e["samples"].push_back(r.samples[s].label);
    e["layers_present"] = g.layers_present;
    e["layers_meeting_targets"] = g.layers_meeting;
    if (!g.uniform.empty()) e["uniform_layers_meeting_targets"] = meeting(r, g.uniform);
    e["layers"] = nlohmann::json::array();
    for (size_t i = 0; i < r.layers.size(); ++i) {
      if (g.recommended[i].queries == 0) continue;
      nlohmann::json le = {{"layer", r.layers[i].layer}, {"recommended", json_of(g.recommended[i])}};
      if (!g.uniform.empty()) le["uniform"] = json_of(g.uniform[i]);
      e["layers"].push_back(le);
    }
    (group.kind == "context_length" ? by_length : by_task).push_back(e);
  }
  j["aggregates"] = {{"by_context_length", by_length}, {"by_task", by_task}};
  return j;
}

}  // namespace

nlohmann::json sweep_json(const SweepResult& r, bool with_timings) {
  nlohmann::json j;
  nlohmann::json pools = nlohmann::json::array(), forced = nlohmann::json::array();
  for (auto p : r.pools) pools.push_back(pool_precision_name(p));
  for (auto f : r.forced) forced.push_back(forced_mode_name(f));
  j["config"] = {{"topk", r.topk},
                 {"block_sizes", r.block_sizes},
                 {"blocks", r.blocks},
                 {"pool_precisions", pools},
                 {"forced_modes", forced},
                 {"target_recall", r.target_recall},
                 {"target_p5", r.target_p5},
                 {"max_queries", r.max_queries},
                 {"scorer", r.scorer},
                 {"cost", "scored_keys: eligible blocks + visible tokens in kept blocks, per query"}};
  j["files"] = r.files;
  j["samples"] = nlohmann::json::array();
  for (const auto& s : r.samples) {
    j["samples"].push_back({{"label", s.label}, {"file", s.file}, {"name", s.name}, {"context_length", s.context_length},
                            {"task", s.task ? nlohmann::json(*s.task) : nlohmann::json(nullptr)}});
  }
  j["curves"] = nlohmann::json::array();
  for (const auto& l : r.layers) {
    for (size_t v = 0; v < r.variants.size(); ++v) {
      const auto& curve = l.all.points[v];
      const auto pass = r.smallest_passing(curve);
      nlohmann::json points = nlohmann::json::array();
      for (const auto& p : curve) points.push_back(json_of(p));
      j["curves"].push_back({{"layer", l.layer},
                             {"block_size", r.variants[v].block_size},
                             {"pool_precision", pool_precision_name(r.variants[v].pool)},
                             {"forced", forced_mode_name(r.variants[v].forced)},
                             {"queries", l.all.queries},
                             {"smallest_passing_blocks", pass ? nlohmann::json(curve[*pass].blocks) : nlohmann::json(nullptr)},
                             {"points", points}});
    }
  }
  j["recommendations"] = nlohmann::json::array();
  for (const auto& m : r.recommendations) j["recommendations"].push_back(json_of(r, m));
  // Measured times differ from run to run: only in the JSON when measured (GPU runs), never in CPU runs.
  if (!r.kernel_times.empty()) j["kernel_times"] = kernel_times_json(r);
  if (with_timings) {
    const auto& t = r.timings;
    j["timings_seconds"] = {{"total", t.total},       {"reading", t.run.reading}, {"decoding", t.run.decoding}, {"waiting", t.run.waiting},  {"computing", t.run.computing},
                            {"pooling", t.pooling},   {"token_scores", t.token_scores}, {"block_scores", t.block_scores},
                            {"ranking", t.ranking},   {"summaries", t.summaries},       {"workers", t.run.workers},
                            {"ranks", t.run.ranks},   {"units", t.run.units},           {"resumed_units", t.run.resumed},
                            {"kernel_timing", t.kernel_timing}};
  }
  return j;
}

void write_sweep_csv(std::ostream& out, const SweepResult& r) {
  out << "sample,layer,block_size,blocks,recall_mean,recall_p5,recall_min,iou_mean,scored_keys_mean,pool_precision,forced\n";
  for (const auto& l : r.layers) {
    for (size_t s = 0; s < r.samples.size(); ++s) {
      const Curves& c = l.per_sample[s];
      if (c.queries == 0) continue;
      for (size_t v = 0; v < r.variants.size(); ++v) {
        for (const auto& p : c.points[v]) {
          out << csv_field(r.samples[s].label) << "," << l.layer << "," << r.variants[v].block_size << "," << p.blocks
              << "," << num(p.recall_mean) << "," << num(p.recall_p5) << "," << num(p.recall_min) << ","
              << num(p.iou_mean) << "," << num(p.scored_keys_mean, "%.8g") << ","
              << pool_precision_name(r.variants[v].pool) << "," << forced_mode_name(r.variants[v].forced) << "\n";
        }
      }
    }
  }
}

void write_sweep_table(std::ostream& out, const SweepResult& r) {
  char line[1024];
  out << "HISA(B, m) against DSA top-" << r.topk << " over a grid   [scorer: " << r.scorer << "]\n"
      << "block sizes " << joined(r.block_sizes) << "; m = " << joined(r.blocks) << "; targets: recall mean >= "
      << num(r.target_recall) << " and recall p5 >= " << num(r.target_p5) << "; cost = keys scored per query\n";
  for (size_t p = 0; p < r.pools.size(); ++p) {
    for (size_t f = 0; f < r.forced.size(); ++f) {
      out << "\nRecall mean by m (" << mode_text(r.pools[p], r.forced[f])
          << "); m* = the smallest m meeting the targets\n";
      std::string head = "layer     B queries |";
      for (int64_t m : r.blocks) head += num(double(m), " %6.0f");
      out << head << " | " << "    m*  p5 at m*  keys at m*\n";
      for (const auto& l : r.layers) {
        for (size_t b = 0; b < r.block_sizes.size(); ++b) {
          const auto& curve = l.all.points[r.variant_index(b, p, f)];
          std::snprintf(line, sizeof line, "%5d %5lld %7lld |", l.layer, (long long)r.block_sizes[b], (long long)l.all.queries);
          std::string row = line;
          if (l.all.queries == 0) {  // no recall exists: say so rather than print zeros
            out << row << " no queries in the selected samples\n";
            continue;
          }
          for (const auto& pt : curve) row += num(pt.recall_mean, " %6.4f");
          const auto pass = r.smallest_passing(curve);
          if (pass) {
            std::snprintf(line, sizeof line, " | %6lld  %6.4f  %10.1f", (long long)curve[*pass].blocks, curve[*pass].recall_p5,
                          curve[*pass].scored_keys_mean);
          } else {
            std::snprintf(line, sizeof line, " | %6s  %6s  %10s", "-", "-", "-");
          }
          out << row << line << "\n";
        }
      }
    }
  }
  for (const auto& m : r.recommendations) {
    out << "\nRecommendation (" << mode_text(m.pool, m.forced) << "): the cheapest (B, m) per layer meeting the targets\n";
    std::snprintf(line, sizeof line, "%5s %5s %5s %7s %7s %7s %7s %11s  %s\n", "layer", "B", "m", "recall", "p5", "min",
                  "IoU", "keys/query", "worst sample: recall mean");
    out << line;
    for (const auto& l : m.layers) {
      if (l.expected.queries == 0) {
        std::snprintf(line, sizeof line, "%5d  no queries in the selected samples: nothing to recommend\n", l.layer);
        out << line;
        continue;
      }
      std::snprintf(line, sizeof line, "%5d %5lld %5lld %7.4f %7.4f %7.4f %7.4f %11.1f  %s: %.4f%s\n", l.layer,
                    (long long)l.block_size, (long long)l.blocks, l.expected.recall_mean, l.expected.recall_p5,
                    l.expected.recall_min, l.expected.iou_mean, l.expected.scored_keys_mean,
                    terminal_safe(l.worst_sample).c_str(),
                    l.worst.recall_mean, l.meets_targets ? "" : "   (unmet: the grid's best recall)");
      out << line;
      if (const auto us = r.measured_us(l.block_size, l.blocks)) {
        std::snprintf(line, sizeof line, "%17s measured: %.2f us/query against flat %.2f (%.1fx)\n", "", us->first, us->second,
                      us->second / std::max(us->first, 1e-9));
        out << line;
      }
    }
    if (m.uniform) {
      const auto& u = *m.uniform;
      std::snprintf(line, sizeof line,
                    "Uniform: B=%lld, m=%lld meets the targets on every layer at %.1f keys/query (mean over layers); "
                    "lowest layer recall mean %.4f (layer %d); worst sample %s, layer %d: %.4f\n",
                    (long long)u.block_size, (long long)u.blocks, u.scored_keys_mean, u.lowest.recall_mean, u.lowest_layer,
                    terminal_safe(u.worst_sample).c_str(), u.worst_layer, u.worst.recall_mean);
      out << line;
      if (const auto us = r.measured_us(u.block_size, u.blocks)) {
        std::snprintf(line, sizeof line, "  measured on %s at L = %lld: %.2f us/query against flat %.2f (%.1fx)\n",
                      r.kernel_times.back().gpu.c_str(), (long long)r.kernel_times.back().keys, us->first, us->second,
                      us->second / std::max(us->first, 1e-9));
        out << line;
      }
    } else {
      out << "Uniform: no single (B, m) of the grid meets the targets on every layer\n";
    }
    if (!m.heaviest.empty()) {
      out << "Layers that need the most:";
      for (int layer : m.heaviest) {
        for (const auto& l : m.layers) {
          if (l.layer != layer) continue;
          std::snprintf(line, sizeof line, " %d (B=%lld, m=%lld, %.1f keys)", layer, (long long)l.block_size,
                        (long long)l.blocks, l.expected.scored_keys_mean);
          out << line;
        }
      }
      out << "\n";
    }
    // A layer without queries is in no need of a setting: listed apart from the layers the grid fails.
    std::vector<int> empty;
    for (size_t i = 0; i < r.layers.size(); ++i) {
      if (r.layers[i].all.queries == 0) empty.push_back(r.layers[i].layer);
    }
    if (!m.unmet.empty()) out << "Layers no setting of the grid serves: " << joined(m.unmet) << "\n";
    if (!empty.empty()) out << "Layers without queries: " << joined(empty) << "\n";
    for (const char* kind : {"context_length", "task"}) {
      bool header = false;
      for (const auto& g : m.groups) {
        const SweepGroup& group = r.groups[g.group];
        if (group.kind != kind) continue;
        if (!header) {
          out << "By " << (group.kind == "task" ? "task" : "context length")
              << ": layers meeting the targets and the lowest layer recall mean, at the per-layer recommendation"
              << (m.uniform ? " | at the uniform one" : "") << "\n";
          header = true;
        }
        if (g.layers_present == 0) {
          std::snprintf(line, sizeof line, "  %-16s %3zu samples  no queries\n", terminal_safe(group.key).c_str(),
                        group.samples.size());
          out << line;
          continue;
        }
        const auto [low, low_layer] = lowest(r, g.recommended);
        std::snprintf(line, sizeof line, "  %-16s %3zu samples  %4lld/%-4lld %.4f (layer %d)",
                      terminal_safe(group.key).c_str(), group.samples.size(), (long long)g.layers_meeting,
                      (long long)g.layers_present, low, low_layer);
        out << line;
        if (!g.uniform.empty()) {
          const auto [ulow, ulow_layer] = lowest(r, g.uniform);
          std::snprintf(line, sizeof line, " | %4lld/%-4lld %.4f (layer %d)", (long long)meeting(r, g.uniform),
                        (long long)g.layers_present, ulow, ulow_layer);
          out << line;
        }
        out << "\n";
      }
    }
  }
  bool any_missing = false;
  for (const auto& l : r.layers) {
    for (size_t s = 0; s < r.samples.size(); ++s) {
      if (l.per_sample[s].queries == 0 && !any_missing) {
        out << "\nSome samples hold no queries of some layers; every number covers the samples that do.\n";
        any_missing = true;
      }
    }
  }
}

void write_sweep_timings(std::ostream& out, const SweepResult& r) {
  const auto& t = r.timings;
  char line[160];
  std::snprintf(line, sizeof line, "sweep timings (scorer %s, %d worker%s, %d rank%s, %lld units, %lld resumed)\n",
                r.scorer.c_str(), t.run.workers, t.run.workers == 1 ? "" : "s", t.run.ranks, t.run.ranks == 1 ? "" : "s",
                (long long)t.run.units, (long long)t.run.resumed);
  out << line;
  out << "  wall clock\n";
  const std::pair<const char*, double> wall[] = {
      {"total", t.total}, {"summaries", t.summaries}, {"kernel-time grid (GPU)", t.kernel_timing}};
  for (const auto& [name, seconds] : wall) {
    std::snprintf(line, sizeof line, "    %-24s %9.3f s\n", name, seconds);
    out << line;
  }
  out << "  summed over workers (reading runs beside the scoring; waiting is the reading that did not overlap)\n";
  const std::pair<const char*, double> summed[] = {
      {"I/O: reading (HDF5)", t.run.reading}, {"I/O: decoding + checks", t.run.decoding},
      {"I/O: workers waiting", t.run.waiting},
      {"compute: all (worker time)", t.run.computing}, {"compute: pooling keys", t.pooling},   {"compute: token scores + top-k", t.token_scores},
      {"compute: block scores (J)", t.block_scores}, {"compute: ranking (curves)", t.ranking}};
  for (const auto& [name, seconds] : summed) {
    std::snprintf(line, sizeof line, "    %-30s %9.3f s\n", name, seconds);
    out << line;
  }
}

}  // namespace hisa
