#include "analysis/crosslayer.hpp"

#include <algorithm>
#include <numeric>

#include "core/error.hpp"
#include "metrics/layer_stats.hpp"
#include "metrics/query_metrics.hpp"

namespace hisa {

void LayerSelections::add(int64_t pos, int64_t start, std::span<const int64_t> selection) {
  q_pos.push_back(pos);
  k_start.push_back(start);
  for (int64_t s : selection) positions.push_back(int32_t(s));
  offsets.push_back(int64_t(positions.size()));
}

namespace {

// Query indices of `l` ordered by (q_pos, k_start, index), so that queries can be matched by a merge.
std::vector<size_t> by_position(const LayerSelections& l) {
  std::vector<size_t> order(l.queries());
  std::iota(order.begin(), order.end(), size_t(0));
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (l.q_pos[a] != l.q_pos[b]) return l.q_pos[a] < l.q_pos[b];
    if (l.k_start[a] != l.k_start[b]) return l.k_start[a] < l.k_start[b];
    return a < b;
  });
  return order;
}

}  // namespace

PairValues compare_layers(const LayerSelections& source, const LayerSelections& layer) {
  if (source.compress_ratio != layer.compress_ratio) return {};
  const std::vector<size_t> so = by_position(source), lo = by_position(layer);
  std::vector<std::pair<size_t, size_t>> matched;  // (layer query, source query)
  size_t i = 0, j = 0;
  while (i < lo.size() && j < so.size()) {
    const auto lk = std::pair{layer.q_pos[lo[i]], layer.k_start[lo[i]]};
    const auto sk = std::pair{source.q_pos[so[j]], source.k_start[so[j]]};
    if (lk < sk) {
      ++i;
    } else if (sk < lk) {
      ++j;
    } else {
      matched.emplace_back(lo[i++], so[j++]);  // a position twice in both: matched in order
    }
  }
  std::sort(matched.begin(), matched.end());
  PairValues v;
  for (const auto& [lq, sq] : matched) {
    const auto s = source.selection(sq), l = layer.selection(lq);
    const int64_t common = count_common(s, l);
    v.iou.push_back(iou_of(common, int64_t(s.size()), int64_t(l.size())));
    v.recall.push_back(l.empty() ? 1.0 : double(common) / double(l.size()));
  }
  return v;
}

PairSummary summarize_pair(const PairValues& v) {
  PairSummary s;
  s.queries = int64_t(v.recall.size());
  if (s.queries == 0) return s;
  s.iou_mean = summarize(v.iou).mean;
  const Distribution r = summarize(v.recall);
  s.recall_mean = r.mean;
  s.recall_p5 = r.p5;
  return s;
}

ReusePlan reuse_every(const std::vector<int>& layers, int n) {
  ReusePlan p;
  p.name = "every " + std::to_string(n);
  std::optional<int> source;
  for (int l : layers) {  // ascending
    if (l % n == 0) source = l;
    p.source_of[l] = source.value_or(l);
  }
  return p;
}

std::map<int, int> parse_reuse_map(const std::string& text) {
  std::map<int, int> map;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t end = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, end - start);
    const size_t colon = item.find(':');
    auto number = [&](const std::string& s) {
      if (s.empty() || s.size() > 9 || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        throw OptionError("reuse_map", "{reuse_map}: \"" + item + "\" is not LAYER:SOURCE (e.g. 5:4,6:4)");
      }
      return std::stoi(s);
    };
    if (colon == std::string::npos) number("");
    const int layer = number(item.substr(0, colon)), source = number(item.substr(colon + 1));
    if (!map.emplace(layer, source).second) {
      throw OptionError("reuse_map", "{reuse_map}: layer " + std::to_string(layer) + " is given twice");
    }
    start = end + 1;
  }
  return map;
}

ReusePlan reuse_map(const std::vector<int>& layers, const std::map<int, int>& map) {
  ReusePlan p;
  p.name = "map";
  for (int l : layers) p.source_of[l] = l;
  std::string text;
  for (const auto& [layer, source] : map) {
    const std::string entry = std::to_string(layer) + ":" + std::to_string(source);
    text += (text.empty() ? "" : ",") + entry;
    auto listed = [&](int x) { return std::binary_search(layers.begin(), layers.end(), x); };
    if (!listed(layer) || !listed(source)) {
      throw OptionError("reuse_map", "{reuse_map}: " + entry + ": both layers must be audited (--layers)");
    }
    if (source >= layer) {
      throw OptionError("reuse_map", "{reuse_map}: " + entry + ": a layer can only reuse an earlier layer's selection");
    }
    if (map.count(source) != 0) {
      throw OptionError("reuse_map", "{reuse_map}: " + entry + ": layer " + std::to_string(source) +
                                         " reuses another layer itself, so it has no selection of its own to lend");
    }
    p.source_of[layer] = source;
  }
  p.name = "map " + text;
  return p;
}

}  // namespace hisa
