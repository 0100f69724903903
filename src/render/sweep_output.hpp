#pragma once
// How sweep results are written: a table for people, JSON for programs and serving configs, tidy CSV curves
// for plotting, and the time breakdown.
#include <nlohmann/json.hpp>
#include <ostream>

#include "pipelines/sweep.hpp"

namespace hisa {

void write_sweep_table(std::ostream& out, const SweepResult& r);
// with_timings: add "timings_seconds" (left out by default so that equal runs give byte-identical files).
nlohmann::json sweep_json(const SweepResult& r, bool with_timings = false);
// One row per sample × layer × variant × m: sample, layer, block_size, blocks, recall_mean, recall_p5,
// recall_min, iou_mean, scored_keys_mean, pool_precision, forced.
void write_sweep_csv(std::ostream& out, const SweepResult& r);
void write_sweep_timings(std::ostream& out, const SweepResult& r);

}  // namespace hisa
