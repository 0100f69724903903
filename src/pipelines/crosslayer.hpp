#pragma once
// `hisa crosslayer` as a library call: every selected layer's flat DSA selections (any engine), then for every
// sample and pair of layers S < L whose queries sit at the same positions, how well S's selection stands in for
// L's own (analysis/crosslayer.hpp), pooled over samples, and reuse plans with the cheapest one that keeps a
// recall target (docs/commands/crosslayer.md).
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "analysis/crosslayer.hpp"
#include "core/int_list.hpp"
#include "io/dump_reader.hpp"
#include "run/unit_runner.hpp"

namespace hisa {

struct CrosslayerOptions {
  std::vector<std::string> files;
  std::vector<std::string> samples;  // empty: every sample
  IntRanges layers;                  // empty: every layer
  int64_t max_queries = 0;           // 0: every query
  std::optional<int64_t> topk;       // default: the files' index_topk
  std::optional<int> reuse_every;    // --reuse-every N
  std::optional<std::map<int, int>> reuse_map;  // --reuse-map 5:4,6:4
  double recall_target = 0.95;
  int threads = 0;
  bool progress = true;
  RunOptions run;
  ReaderOptions reader;
};

struct CrosslayerPair {
  std::string sample;
  int source = 0, layer = 0;
  PairSummary summary;
};

// One layer under a plan: the layer whose selection it uses and how well that stands in for its own, over every
// sample (its own: recall 1).
struct PlanLayer {
  int layer = 0, source = 0;
  PairSummary summary;
};
struct PlanResult {
  std::string name;
  std::vector<int> indexer_layers;  // the layers that run their own indexer
  std::vector<PlanLayer> layers;
  double min_recall_mean = 1;  // the lowest layer's recall mean
  bool meets_target = false;   // min_recall_mean >= the recall target
};

struct CrosslayerResult {
  int64_t topk = 0;
  std::string engine;
  std::vector<std::string> files, samples;  // sample labels
  std::vector<int> layers;
  std::vector<CrosslayerPair> pairs;  // sample by sample, then source, then layer; S < L
  // pooled[s][l]: layers[s]'s selection against layers[l]'s, over every sample's shared queries (s < l).
  std::vector<std::vector<PairSummary>> pooled;
  double recall_target = 0.95;
  // The plans asked for (--reuse-every, --reuse-map), then the greedy plan, then the cheapest "every N" that
  // meets the target (when another plan does not already).
  std::vector<PlanResult> plans;
  // Of "every N" for every N and the greedy plan: the one with the fewest indexer layers whose every layer's recall
  // mean reaches the target (ties: the higher lowest recall mean). None when the target is above what own indexers
  // give (1).
  std::optional<std::string> cheapest;
  RunStats run;
  double total_seconds = 0;
};

CrosslayerResult run_crosslayer(const CrosslayerOptions& options);

}  // namespace hisa
