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

}  // namespace hisa
