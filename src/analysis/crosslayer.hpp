#pragma once
// Selections reused across layers (DeepSeek-V4.1, SGLang's IndexCache): how well an earlier layer's flat DSA
// selection stands in for a later layer's own, per pair of layers, and what a reuse plan keeps
// (docs/commands/crosslayer.md).
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace hisa {

// One layer's flat selections in one sample, query by query.
struct LayerSelections {
  int layer = 0;
  int64_t compress_ratio = 1;  // tokens per key row: selections count rows when > 1
  std::vector<int64_t> q_pos, k_start;  // q_pos: token positions
  std::vector<int32_t> positions;  // every query's selection, ascending, one after the other
  std::vector<int64_t> offsets{0};  // query i: positions[offsets[i] .. offsets[i + 1])
  size_t queries() const { return q_pos.size(); }
  std::span<const int32_t> selection(size_t i) const {
    return {positions.data() + offsets[i], size_t(offsets[i + 1] - offsets[i])};
  }
  void add(int64_t pos, int64_t start, std::span<const int64_t> selection);
};

// Per query of `layer` that also sits in `source` (the same q_pos and k_start): the IoU of source's selection
// with layer's, and its recall of layer's, |S ∩ L| / |L| (1 when L is empty). In layer's query order. Layers of
// different compress ratios share no query: their selections count different things.
struct PairValues {
  std::vector<double> iou, recall;
};
PairValues compare_layers(const LayerSelections& source, const LayerSelections& layer);

struct PairSummary {
  int64_t queries = 0;
  // 0 when no query is shared: nothing shows that the source's selection would serve, so no plan relies on it.
  double iou_mean = 0, recall_mean = 0, recall_p5 = 0;
};
PairSummary summarize_pair(const PairValues& v);

// Which layer's selection each layer uses: itself (its own indexer) or an earlier one.
struct ReusePlan {
  std::string name;
  std::map<int, int> source_of;
};
// Each layer uses the selection of the nearest layer at or before it whose number is a multiple of n (itself when
// none is listed).
ReusePlan reuse_every(const std::vector<int>& layers, int n);
// Each listed layer uses the given source (an earlier layer that is itself audited and uses its own indexer); the
// others their own. OptionError("reuse_map") naming the entry otherwise.
ReusePlan reuse_map(const std::vector<int>& layers, const std::map<int, int>& map);
// "5:4,6:4" as a map; OptionError("reuse_map") for anything else.
std::map<int, int> parse_reuse_map(const std::string& text);
// Walks the layers in order: a layer reuses the latest layer that runs its own indexer when that one's recall
// mean of it reaches `target`, else runs its own. recall_mean(source, layer) gives the pooled means.
template <typename RecallMean>
ReusePlan reuse_greedy(const std::vector<int>& layers, double target, RecallMean recall_mean) {
  ReusePlan p;
  p.name = "greedy";
  std::optional<int> source;
  for (int l : layers) {
    if (source && recall_mean(*source, l) >= target) {
      p.source_of[l] = *source;
    } else {
      p.source_of[l] = l;
      source = l;
    }
  }
  return p;
}

}  // namespace hisa
