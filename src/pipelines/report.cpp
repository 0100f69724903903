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
  return picture_of(explain_query(o), file, sample);
}

// A JSON input of the page (`option` names its flag), read whole and checked by `check` for what the page reads,
// before the audit runs.
template <typename Check>
nlohmann::json read_json_input(const std::string& path, const std::string& option, const std::string& made_by, Check check) {
  // A FIFO or a device would be waited on or read forever.
  std::error_code ec;
  if (std::filesystem::exists(path, ec) && !std::filesystem::is_regular_file(path, ec)) {
    throw OptionError(option, "{" + option + "}: " + path + " is not a regular file");
  }
  std::ifstream in(path);
  if (!in) throw OptionError(option, "{" + option + "}: cannot read " + path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
    check(j);
  } catch (const nlohmann::json::exception& e) {
    throw OptionError(option, "{" + option + "}: " + path + " is not the JSON of `" + made_by + "`: " + e.what());
  }
  return j;
}

nlohmann::json read_sweep_json(const std::string& path) {
  return read_json_input(path, "sweep_json", "hisa sweep --json", [](const nlohmann::json& j) {
    for (const auto& mode : j.at("recommendations")) {
      mode.at("pool_precision").get<std::string>();
      mode.at("targets").at("recall_p5").get<double>();
      for (const auto& l : mode.at("layers")) l.at("expected_recall_min").get<double>();
      mode.at("uniform");
    }
  });
}

nlohmann::json read_crosslayer_json(const std::string& path) {
  return read_json_input(path, "crosslayer_json", "hisa crosslayer --json", [](const nlohmann::json& j) {
    j.at("layers").get<std::vector<int>>();
    j.at("topk").get<int64_t>();
    j.at("samples").size();
    j.at("recall_target").get<double>();
    for (const auto& p : j.at("pooled")) {
      p.at("source_layer").get<int>(), p.at("layer").get<int>(), p.at("queries").get<int64_t>();
      p.at("recall_mean").get<double>();
    }
    for (const auto& p : j.at("plans")) {
      p.at("name").get<std::string>(), p.at("indexer_layers").get<std::vector<int>>();
      p.at("min_recall_mean").get<double>(), p.at("meets_target").get<bool>();
    }
    if (!j.at("cheapest").is_null()) j.at("cheapest").get<std::string>();
  });
}

}  // namespace

QueryPicture picture_of(const Explanation& e, const std::string& file, const std::string& sample) {
  const QueryAudit& a = e.audit;
  const SelectionConfig& config = e.config;
  QueryPicture p;
  p.file = file;
  p.sample = sample;
  p.layer = e.options.layer;
  p.query = e.options.query;
  p.q_pos = a.token_pos;
  p.last = a.q_pos;
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

ReportData collect_report(const ReportOptions& o) {
  ReportData d;
  d.options = o;
  if (!o.sweep_json.empty()) d.sweep = read_sweep_json(o.sweep_json);
  if (!o.crosslayer_json.empty()) d.crosslayer = read_crosslayer_json(o.crosslayer_json);
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
