#include "pipelines/report.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "analysis/report_pictures.hpp"
#include "core/error.hpp"
#include "pipelines/common.hpp"
#include "pipelines/explain.hpp"
#include "render/svg.hpp"
#include "select/blocks.hpp"

namespace hisa {

namespace {

struct LayerCollect {
  std::vector<double> hisa_iou, block_iou;
  BudgetCurveAccumulator budget;
};

// A worst query, re-scored by explain_query so the page can draw its row.
QueryPicture picture_of(const std::string& file, const std::string& sample, int layer, const WorstQuery& w,
                        const SelectionConfig& config, const ReaderOptions& reader) {
  ExplainOptions o;
  o.reader = reader;
  o.file = file;
  o.sample = sample;
  o.layer = layer;
  o.query = w.query;
  o.topk = config.topk;
  o.config = config;
  const Explanation e = explain_query(o);
  const QueryAudit& a = e.audit;
  QueryPicture p;
  p.file = file;
  p.sample = sample;
  p.layer = layer;
  p.query = w.query;
  p.q_pos = a.q_pos;
  p.k_start = a.k_start;
  p.iou = e.metrics.hisa.iou;
  p.recall = e.metrics.hisa.recall;
  p.coverage_ratio = e.metrics.hisa.coverage_ratio;
  p.miss_causes = e.metrics.miss_causes;
  p.column_max = svg::max_pool(e.row, kPictureColumns);
  for (const TokenRange& run : visible_runs(a.hisa_blocks, config.block_size, a.k_start, a.q_pos)) {
    p.kept.push_back({run.first, run.last});
  }
  std::set_intersection(a.flat.begin(), a.flat.end(), a.hisa.begin(), a.hisa.end(), std::back_inserter(p.dsa_kept));
  std::set_difference(a.flat.begin(), a.flat.end(), a.hisa.begin(), a.hisa.end(), std::back_inserter(p.missed));
  p.hisa_only = e.extras;
  return p;
}

// The sweep's JSON, checked for what the page reads, before the audit runs.
nlohmann::json read_sweep_json(const std::string& path) {
  // A FIFO or a device would be waited on or read forever.
  std::error_code ec;
  if (std::filesystem::exists(path, ec) && !std::filesystem::is_regular_file(path, ec)) {
    throw OptionError("sweep_json", "{sweep_json}: " + path + " is not a regular file");
  }
  std::ifstream in(path);
  if (!in) throw OptionError("sweep_json", "{sweep_json}: cannot read " + path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
    for (const auto& mode : j.at("recommendations")) {
      mode.at("pool_precision").get<std::string>();
      mode.at("targets").at("recall_p5").get<double>();
      for (const auto& l : mode.at("layers")) l.at("expected_recall_min").get<double>();
      mode.at("uniform");
    }
  } catch (const nlohmann::json::exception& e) {
    throw OptionError("sweep_json", "{sweep_json}: " + path + " is not the JSON of `hisa sweep --json`: " + e.what());
  }
  return j;
}

}  // namespace

ReportData collect_report(const ReportOptions& o) {
  ReportData d;
  d.options = o;
  if (!o.sweep_json.empty()) d.sweep = read_sweep_json(o.sweep_json);
  std::map<int, LayerCollect> layers;
  std::set<std::pair<std::string, std::string>> sources;  // (file, sample) of every query
  d.audit = run_audit(o.audit, [&](const QueryRecord& q) {
    LayerCollect& l = layers[q.layer];
    l.hisa_iou.push_back(q.metrics->hisa.iou);
    l.block_iou.push_back(q.metrics->block.iou);
    l.budget.add(budget_curve(*q.audit, *q.config));
    sources.insert({q.file, q.sample});
  });
  for (const auto& stats : d.audit.layers) {
    LayerCollect& c = layers[stats.layer];
    d.layers.push_back({std::move(c.hisa_iou), std::move(c.block_iou), c.budget.mean()});
  }
  // A worst query names its sample by its label; the picture needs the file and the sample.
  std::map<std::string, std::pair<std::string, std::string>> by_label;
  for (const auto& [file, sample] : sources) by_label[sample_label(file, sample, d.audit.files.size())] = {file, sample};
  for (const PictureChoice& c : choose_pictures(d.audit.layers, o.pictures)) {
    const auto source = by_label.find(c.query->sample);
    if (source == by_label.end()) continue;
    d.pictures.push_back(picture_of(source->second.first, source->second.second, c.layer, *c.query, d.audit.config,
                                    o.audit.reader));
  }
  return d;
}

}  // namespace hisa
