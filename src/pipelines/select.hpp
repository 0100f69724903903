#pragma once
// `hisa select` as a library call: one method's selections for every query, written to HDF5 as
// /<sample>/layer_<N>/indices int32 [Nq, width] (ascending, -1 padded) with q_pos and query index.
#include <string>

#include "pipelines/audit.hpp"

namespace hisa {

struct SelectOptions {
  AuditOptions input;  // files (one), samples, layers, max_queries, topk, config, device, threads
  Method method = Method::Hisa;
  // With Method::Flat: DSA's selection found by branch and bound (select/certified.hpp), on the CPU whatever the
  // device; written with method "certified".
  bool certified = false;
  std::string output;
};

// Returns the number of queries written.
int64_t run_select(const SelectOptions& options);

// One method's selections (ascending) for every query of the batch by the engine (prepared with set_layer); a
// query that sees no key row (a compressed layer's) gets an empty one without reaching the engine.
void select_batch(SelectionEngine& engine, const QueryBatch& batch, Method method,
                  std::vector<std::vector<int64_t>>& out);
// The selections as `select` writes them: int32 [N, width], ascending, -1 padded; width min(k, L) (no selection
// holds more than L keys), or the largest selection when that is wider (block-sparse).
std::vector<int32_t> selection_matrix(const std::vector<std::vector<int64_t>>& selections, Method method, int64_t topk,
                                      int64_t keys, int64_t& width);

}  // namespace hisa
