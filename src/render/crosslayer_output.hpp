#pragma once
// How `hisa crosslayer` results are written: a table and heatmap for people, JSON and tidy CSV for programs.
#include <nlohmann/json.hpp>
#include <ostream>

#include "pipelines/crosslayer.hpp"

namespace hisa {

void write_crosslayer_table(std::ostream& out, const CrosslayerResult& r);
// {"topk", "engine", "files", "samples", "layers", "recall_target", "pairs": [{"sample", "source_layer", "layer",
// "queries", "iou_mean", "recall_mean", "recall_p5"}], "pooled": [... the same with sample "all"], "plans":
// [{"name", "indexer_layers", "layers": [{"layer", "source_layer", "queries", "iou_mean", "recall_mean",
// "recall_p5"}], "min_recall_mean", "meets_target"}], "cheapest"}
nlohmann::json crosslayer_json(const CrosslayerResult& r);
// One row per pair: sample, source_layer, layer, queries, iou_mean, recall_mean, recall_p5; the pooled pairs
// last with sample "all".
void write_crosslayer_csv(std::ostream& out, const CrosslayerResult& r);

}  // namespace hisa
