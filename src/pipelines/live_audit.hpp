#pragma once
// An audit of layers handed over in memory (`import hisa`'s Audit): each (sample, layer) is audited by one
// LayerAudit as it comes, merged per layer in the order added, exactly as `hisa audit` merges a layer's samples,
// and finished into the AuditResult and ReportData that `hisa audit` and `hisa report` write. The worst queries'
// pictures are drawn while their layer is still in memory.
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <set>
#include <span>
#include <tuple>
#include <vector>

#include "analysis/budget_curve.hpp"
#include "io/query_subset.hpp"
#include "pipelines/audit.hpp"
#include "pipelines/layer_audit.hpp"
#include "pipelines/report.hpp"

namespace hisa {

struct LiveAuditOptions {
  AuditOptions audit;     // config (k resolved), threads, worst, worst_by; files and run are not used
  int device = -1;        // resolve_devices()
  int64_t pictures = 6;   // of each layer's worst queries, how many the report draws
  bool query_rows = false;  // keep every query's per-query CSV row (write_query_csv_row)
};

class LiveAudit {
 public:
  explicit LiveAudit(LiveAuditOptions o);
  ~LiveAudit();
  // Its LayerAudit keeps a reference to the options held here: it stays where it was made.
  LiveAudit(const LiveAudit&) = delete;
  LiveAudit& operator=(const LiveAudit&) = delete;

  // The name `hisa audit` gives this run's source in its outputs (files; the per-query CSV's file column).
  static constexpr const char* kSource = "<import hisa>";

  // Audits one sample's layer (needle in key rows; window: the tokens attended besides the selection, reported
  // as context when a layer's samples agree on it). Queries that see no key row (compressed layers) are left
  // out, as `hisa audit` leaves them out. Returns the statistics of this (sample, layer) alone; on_query sees
  // each query. OptionError ("sample", "compress_ratio") when this sample's layer was added before, or the layer
  // was added with another compress_ratio.
  // Keys and batch may live on the GPU of this audit's CUDA engine (cuda/device_layer.hpp): rows_of then gathers
  // rows there, and the pictures are drawn by that engine.
  using BatchRows = std::function<QueryBatch(const QueryBatch&, std::span<const int64_t>)>;
  LayerStats add(const std::string& sample, int layer, const LayerKeys& keys, const QueryBatch& batch,
                 std::optional<NeedleRange> needle, std::optional<int64_t> window = std::nullopt,
                 const LayerAudit::QueryCallback& on_query = {}, const BatchRows& rows_of = BatchRows(batch_rows));

  const LiveAuditOptions& options() const { return o_; }
  std::string engine_name() const;
  // Every layer added so far, ascending, merged over its samples.
  AuditResult result() const;
  // result() with what `hisa report`'s page draws: histograms, budget curves, the worst queries' pictures.
  ReportData report(const std::string& command_line) const;
  // The per-query CSV's rows so far (with query_rows), header excluded.
  const std::string& query_rows() const { return query_rows_; }

 private:
  struct LayerState {
    std::optional<LayerAccumulator> acc;
    int64_t compress_ratio = 1;
    std::optional<int64_t> window;
    bool windows_agree = true;
    std::vector<double> hisa_iou, block_iou;
    BudgetCurveAccumulator budget;
    std::set<std::string> samples;
  };
  void forget_pictures_beyond_the_worst(int layer, size_t drawn);

  LiveAuditOptions o_;
  std::unique_ptr<LayerAudit> audit_;
  std::vector<std::string> sample_order_;  // every sample, in the order first added (for missing_samples)
  std::map<int, LayerState> layers_;
  std::map<std::tuple<std::string, int, int64_t>, QueryPicture> pictures_;  // (sample, layer, query)
  std::string query_rows_;
};

}  // namespace hisa
