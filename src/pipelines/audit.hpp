#pragma once
// `hisa audit` as a library call: reads dumps layer by layer, selects with an engine, computes metrics.
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "io/dump_reader.hpp"
#include "metrics/layer_stats.hpp"
#include "metrics/ref_rule.hpp"
#include "run/unit_runner.hpp"
#include "core/int_list.hpp"
#include "select/config.hpp"
#include "select/engine.hpp"

namespace hisa {

struct AuditOptions {
  std::vector<std::string> files;
  std::vector<std::string> samples;  // empty: every sample
  IntRanges layers;                  // empty: every layer; else each one must be in some selected sample
  int64_t max_queries = 0;           // 0: every query
  std::optional<int64_t> topk;       // default: the files' index_topk
  SelectionConfig config;            // topk is filled in by run_audit
  RunOptions run;                    // device, GPUs, read-ahead, checkpoints
  ReaderOptions reader;              // whether what lies outside the files is followed
  int threads = 0;
  bool progress = true;
  int64_t worst = 0;  // list this many worst queries per layer
  WorstOrder worst_by = WorstOrder::HisaIou;
  // How each layer's topk_ref is judged: overrides of what it declares, and the near-tie tolerance.
  RefOverrides ref;
  // Also find DSA's selection by branch and bound (select/certified.hpp) and report what it scored.
  bool certified = false;
  // Also audit the first N queries of each (sample, layer) with the CPU engine and count the differences
  // (metrics/parity.hpp): how far the run's engine (the CUDA engine) agrees with the CPU's.
  int64_t parity = 0;
};

// Seconds of wall clock; run holds the workers' reading, waiting and computing; engine and metrics split the
// computing, summed over this process's workers: the engines' stages (select/engine.hpp) and the per-query
// metrics (with the certificates and the comparison with topk_ref).
struct AuditTimings {
  double total = 0, merging = 0;
  RunStats run;
  StageTimes engine;
  double metrics = 0;
};

struct QueryRecord {
  std::string file, sample;
  int layer = 0;
  const QueryAudit* audit = nullptr;
  const QueryMetrics* metrics = nullptr;
  const SelectionConfig* config = nullptr;  // the run's selection rule, with k resolved
};

struct AuditResult {
  SelectionConfig config;
  std::string engine;
  std::vector<std::string> files;
  std::vector<LayerStats> layers;
  WorstOrder worst_by = WorstOrder::HisaIou;  // how each layer's worst queries were ranked
  AuditTimings timings;
};

// on_query (optional) sees every query as it is finished, in layer, sample, query order, on one worker thread;
// a run with on_query takes one worker in one process (an OptionError for per_query with several GPUs or MPI
// ranks, or with resume).
AuditResult run_audit(const AuditOptions& options, const std::function<void(const QueryRecord&)>& on_query = {});

}  // namespace hisa
