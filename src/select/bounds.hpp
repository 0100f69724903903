#pragma once
// Upper bounds on every token score inside a block, for exactness certificates and the certified
// (branch-and-bound) selection. docs/definitions.md, "Exactness certificates", gives the formulas.
#include <cstdint>
#include <vector>

#include "io/dump_model.hpp"

namespace hisa {

// Per block of B keys: per-dimension min/max, a centre and radius, and the extreme k_scale values.
class BlockBounds {
 public:
  BlockBounds() = default;
  BlockBounds(const LayerKeys& keys, int64_t block_size);

  int64_t block_size() const { return block_size_; }
  int64_t count() const { return count_; }

  // An upper bound on I[t,s] for every key s of `block` (visible or not), safe against fp32 rounding:
  // it is inflated by a margin larger than any rounding error of the fp32 score.
  float score_bound(const QueryBatch& b, int64_t query, int64_t block) const;

 private:
  int64_t block_size_ = 0, count_ = 0, dim_ = 0;
  std::vector<float> lo_, hi_, centre_;              // [count, dim]
  std::vector<double> radius_, max_norm_;            // [count]
  std::vector<float> scale_min_, scale_max_;         // [count]
};

}  // namespace hisa
