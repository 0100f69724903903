#pragma once
// One layer of one sample audited batch by batch: the engine's audit, each query's metrics (topk_ref judged
// against its rule, the certified search, the CPU parity check) added to the layer's accumulator in query order.
// `hisa audit` runs one per work unit (pipelines/audit.cpp); `import hisa` runs one per audit_layer call.
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "metrics/layer_stats.hpp"
#include "metrics/query_metrics.hpp"
#include "metrics/ref_judge.hpp"
#include "pipelines/audit.hpp"
#include "select/bounds.hpp"
#include "select/certified.hpp"
#include "select/engine.hpp"

namespace hisa {

class LayerAudit {
 public:
  // The engine audits on `device` (resolve_devices()); o's threads, certified, parity, worst, worst_by, ref and
  // run.fp8_mma apply; config holds k.
  LayerAudit(const AuditOptions& o, const SelectionConfig& config, int device);
  ~LayerAudit();

  const SelectionEngine& engine() const { return *engine_; }
  // Set to the layer of the last begin() (and to the config), until the next: explanations of its queries use it.
  SelectionEngine& engine() { return *engine_; }
  // Starts a layer (keys kept by reference until the next begin): needle in key rows (needle_rows()), label the
  // sample's name in the accumulator. Keys and batches may live on the GPU of a CUDA engine (`import hisa` on
  // CUDA tensors), both or neither; their certificates' block bounds are then the engine's
  // (SelectionEngine::block_bounds), topk_ref is judged with the engine's scores (engine_ref_scorer), and
  // certified and parity, which read operands on the host, are refused (std::invalid_argument).
  void begin(int layer, const LayerKeys& keys, std::optional<NeedleRange> needle, const std::string& label);
  // The batch's queries (part: their indices in the layer), in order; on_query (when set) sees each.
  using QueryCallback = std::function<void(const QueryAudit&, const QueryMetrics&)>;
  void add(const QueryBatch& batch, std::span<const int64_t> part, const QueryCallback& on_query = {});
  // The layer so far, and its end (the accumulator is handed over; begin() starts the next).
  LayerAccumulator& accumulator() { return *acc_; }
  LayerAccumulator take();
  // Every engine's stage times, and the seconds spent in per-query metrics, since this was made.
  StageTimes engine_times() const;
  double metrics_seconds() const { return metrics_seconds_; }

 private:
  void prepare_ref(const QueryBatch& batch);
  QueryMetrics query_metrics(const QueryBatch& batch, int64_t i, int64_t query, const CertifiedResult& certified) const;
  static std::span<const int32_t> ref_row(const QueryBatch& batch, int64_t i);

  const AuditOptions& o_;
  SelectionConfig config_;
  int threads_;
  int device_;
  std::unique_ptr<SelectionEngine> engine_;
  // topk_ref's rule for the layer (prepare_ref); the engine that audits under it when the run's audit does not.
  std::optional<RefLayer> ref_layer_;
  bool ref_covered_ = true;
  std::unique_ptr<SelectionEngine> ref_engine_;
  std::optional<RefRule> ref_engine_rule_;
  std::vector<QueryAudit> ref_audits_;
  const LayerKeys* keys_ = nullptr;
  std::string label_;
  std::optional<NeedleRange> needle_;
  BlockBounds bounds_;                               // host keys: evaluated as certificates need them
  std::vector<std::vector<float>> engine_bounds_;    // operands on a GPU: the batch's, by the engine
  std::vector<RefJudgement> device_judgements_;      // operands on a GPU: the batch's topk_ref judged
  std::optional<LayerAccumulator> acc_;
  std::vector<QueryAudit> audits_;
  std::unique_ptr<SelectionEngine> cpu_;  // --parity
  PooledKeys pooled_;
  int64_t parity_left_ = 0;
  std::vector<QueryAudit> cpu_audits_;
  std::vector<QueryMetrics> metrics_;
  double metrics_seconds_ = 0;
};

}  // namespace hisa
