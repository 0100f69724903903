#pragma once
// Flat DSA's selection by branch and bound: blocks are scored in order of their score bound, and the
// search stops when the next bound cannot beat the current k-th score. Exact by construction.
#include <cstdint>
#include <vector>

#include "io/dump_model.hpp"
#include "select/bounds.hpp"

namespace hisa {

struct CertifiedResult {
  std::vector<std::vector<int64_t>> selections;  // ascending positions, per query
  std::vector<int64_t> keys_scored;              // tokens scored per query (flat scores every visible key)
};

// bounds must be built from `keys` with the block size to search by. threads <= 0: all cores.
CertifiedResult certified_select(const LayerKeys& keys, const BlockBounds& bounds, const QueryBatch& batch,
                                 int64_t topk, int threads);

}  // namespace hisa
