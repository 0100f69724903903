#pragma once
// `hisa report` as a library call: one audit, plus what the page's pictures need (per-query IoU, recall and IoU
// for every budget m, the worst queries re-scored), for render/html_report.hpp to write as one HTML page.
#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "analysis/budget_curve.hpp"
#include "pipelines/audit.hpp"
#include "pipelines/explain.hpp"

namespace hisa {

struct ReportOptions {
  AuditOptions audit;        // audit.worst: the worst queries listed per layer
  int64_t pictures = 6;      // of those, how many to draw with their scores (re-scored on the CPU)
  std::string command_line;  // shown under "Configuration"
  std::string sweep_json;    // `hisa sweep --json` output whose recommendation the page shows; empty: none
  std::string crosslayer_json;  // `hisa crosslayer --json` output the page shows; empty: none
};

// Columns of a worst query's picture: its scores are max-pooled to this many values.
inline constexpr int kPictureColumns = 1000;

// A worst query, re-scored by explain_query so the page can draw its row.
struct QueryPicture {
  std::string file, sample;  // as `hisa explain` takes them
  int layer = 0;
  int64_t query = 0, q_pos = 0, k_start = 0;
  int64_t last = 0;  // the last key row it sees (q_pos on an uncompressed layer)
  double iou = 0, recall = 0, coverage_ratio = 0;
  std::array<int64_t, 4> miss_causes{};
  std::vector<float> column_max;                        // scores over [k_start, last], max-pooled
  std::vector<std::pair<int64_t, int64_t>> kept;        // visible positions of HISA's kept blocks, merged runs
  std::vector<int64_t> dsa_kept, missed, hisa_only;     // DSA ∩ HISA, DSA \ HISA, HISA \ DSA
};

struct LayerReport {
  std::vector<double> hisa_iou, block_iou;  // one per query, for the histograms
  std::vector<BudgetPoint> budget;          // mean over the layer's queries; entry m-1 is HISA(B, m)
};

struct ReportData {
  ReportOptions options;
  AuditResult audit;
  std::vector<LayerReport> layers;  // aligned with audit.layers
  std::vector<QueryPicture> pictures;
  nlohmann::json sweep;  // the sweep's JSON, null when none was given
  nlohmann::json crosslayer;  // the crosslayer's JSON, null when none was given
};

// A worst query's picture from its explanation (pipelines/explain.hpp); file and sample name its source.
QueryPicture picture_of(const Explanation& e, const std::string& file, const std::string& sample);

// OptionError for sweep_json (crosslayer_json) when that file is not a sweep's (crosslayer's) JSON.
ReportData collect_report(const ReportOptions& options);

}  // namespace hisa
