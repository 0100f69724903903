#include "render/crosslayer_output.hpp"

#include <cstdio>

#include "core/text_escape.hpp"
#include "render/text_format.hpp"

namespace hisa {

namespace {

// A matrix of at most this many layers is printed as numbers; a larger one as one shaded character per pair.
constexpr size_t kNumberedLayers = 16;

const char* shade(double recall) {
  return recall >= 0.95 ? "█" : recall >= 0.8 ? "▓" : recall >= 0.6 ? "▒" : recall >= 0.4 ? "░" : "·";
}

nlohmann::json pair_json(const std::string& sample, int source, int layer, const PairSummary& s) {
  return {{"sample", sample},          {"source_layer", source},         {"layer", layer},
          {"queries", s.queries},      {"iou_mean", s.iou_mean},         {"recall_mean", s.recall_mean},
          {"recall_p5", s.recall_p5}};
}

}  // namespace

void write_crosslayer_table(std::ostream& out, const CrosslayerResult& r) {
  const size_t n = r.layers.size();
  out << "selections reused across layers: flat DSA top-" << r.topk << ", " << n << " layer" << (n == 1 ? "" : "s")
      << ", " << r.samples.size() << " sample" << (r.samples.size() == 1 ? "" : "s") << "   [engine: " << r.engine
      << "]\n\nrecall of layer L's own selection by layer S's, mean over the queries both hold (rows L, columns S < L)\n";
  char cell[32];
  if (n <= kNumberedLayers) {
    out << "  L \\ S";
    for (size_t s = 0; s + 1 < n; ++s) std::snprintf(cell, sizeof cell, " %6d", r.layers[s]), out << cell;
    out << "\n";
    for (size_t l = 1; l < n; ++l) {
      std::snprintf(cell, sizeof cell, "  %5d", r.layers[l]);
      out << cell;
      for (size_t s = 0; s < l; ++s) {
        const PairSummary& p = r.pooled[s][l];
        if (p.queries == 0) {
          out << "      -";
        } else {
          std::snprintf(cell, sizeof cell, " %6.3f", p.recall_mean);
          out << cell;
        }
      }
      out << "\n";
    }
  } else {
    out << "  one character per pair: █ >= 0.95, ▓ >= 0.8, ▒ >= 0.6, ░ >= 0.4, · below, blank: no shared queries; "
           "columns S from layer " << r.layers.front() << "\n";
    for (size_t l = 1; l < n; ++l) {
      std::snprintf(cell, sizeof cell, "  %5d ", r.layers[l]);
      out << cell;
      for (size_t s = 0; s < l; ++s) out << (r.pooled[s][l].queries == 0 ? " " : shade(r.pooled[s][l].recall_mean));
      out << "\n";
    }
  }
  out << "\nreuse plans (recall target " << format_number(r.recall_target) << ": every layer's recall mean at least that)\n";
  char line[256];
  std::snprintf(line, sizeof line, "  %-28s %16s %16s  %s\n", "plan", "indexer layers", "lowest recall", "meets");
  out << line;
  for (const PlanResult& p : r.plans) {
    const std::string count = std::to_string(p.indexer_layers.size()) + " of " + std::to_string(n);
    std::snprintf(line, sizeof line, "  %-28s %16s %16.4f  %s\n", p.name.c_str(), count.c_str(), p.min_recall_mean,
                  p.meets_target ? "yes" : "no");
    out << line;
  }
  if (r.cheapest) {
    out << "cheapest plan meeting the target: " << *r.cheapest << "\n";
  } else {
    out << "no plan meets the target\n";
  }
}

nlohmann::json crosslayer_json(const CrosslayerResult& r) {
  nlohmann::json j;
  j["topk"] = r.topk;
  j["engine"] = r.engine;
  j["files"] = r.files;
  j["samples"] = r.samples;
  j["layers"] = r.layers;
  j["recall_target"] = r.recall_target;
  j["pairs"] = nlohmann::json::array();
  for (const auto& p : r.pairs) j["pairs"].push_back(pair_json(p.sample, p.source, p.layer, p.summary));
  j["pooled"] = nlohmann::json::array();
  for (size_t s = 0; s < r.layers.size(); ++s) {
    for (size_t l = s + 1; l < r.layers.size(); ++l) j["pooled"].push_back(pair_json("all", r.layers[s], r.layers[l], r.pooled[s][l]));
  }
  j["plans"] = nlohmann::json::array();
  for (const PlanResult& p : r.plans) {
    nlohmann::json layers = nlohmann::json::array();
    for (const PlanLayer& l : p.layers) {
      nlohmann::json e = pair_json("all", l.source, l.layer, l.summary);
      e.erase("sample");
      layers.push_back(e);
    }
    j["plans"].push_back({{"name", p.name},
                          {"indexer_layers", p.indexer_layers},
                          {"layers", layers},
                          {"min_recall_mean", p.min_recall_mean},
                          {"meets_target", p.meets_target}});
  }
  j["cheapest"] = r.cheapest ? nlohmann::json(*r.cheapest) : nlohmann::json(nullptr);
  return j;
}

void write_crosslayer_csv(std::ostream& out, const CrosslayerResult& r) {
  out << "sample,source_layer,layer,queries,iou_mean,recall_mean,recall_p5\n";
  auto row = [&](const std::string& sample, int source, int layer, const PairSummary& s) {
    out << csv_field(sample) << "," << source << "," << layer << "," << s.queries << "," << format_number(s.iou_mean)
        << "," << format_number(s.recall_mean) << "," << format_number(s.recall_p5) << "\n";
  };
  for (const auto& p : r.pairs) row(p.sample, p.source, p.layer, p.summary);
  for (size_t s = 0; s < r.layers.size(); ++s) {
    for (size_t l = s + 1; l < r.layers.size(); ++l) row("all", r.layers[s], r.layers[l], r.pooled[s][l]);
  }
}

}  // namespace hisa
