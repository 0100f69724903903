// What every engine computes on the host the same way (select/query_audit.hpp).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "select/query_audit.hpp"

namespace hisa {
namespace {

TEST(QueryAudit, KthScoreIsTheLowestKeptOrMinusInfinityWhenEveryKeyIsKept) {
  QueryAudit a;
  a.visible = 5;
  a.flat_scores = {3.0f, -1.0f, 2.0f};
  EXPECT_EQ(kth_score(a, 3), -1.0f);
  EXPECT_EQ(kth_score(a, 5), -std::numeric_limits<float>::infinity());  // all 5 visible keys are kept
  EXPECT_EQ(kth_score(a, 8), -std::numeric_limits<float>::infinity());
}

TEST(QueryAudit, PositionAndBoundsOfTheQuerysBlocks) {
  LayerKeys keys;
  keys.count = 10;
  keys.dim = 2;
  for (int s = 0; s < 10; ++s) keys.k.insert(keys.k.end(), {float(s), 1.0f});
  keys.k_scale.assign(10, 1.0f);
  QueryBatch b;
  b.count = 1;
  b.heads = 1;
  b.dim = 2;
  b.q = {1.0f, 0.0f};
  b.w = {1.0f};
  b.q_pos = {8};
  b.k_start = {3};
  QueryAudit a;
  set_query_position(a, b, 0);
  EXPECT_EQ(a.q_pos, 8);
  EXPECT_EQ(a.k_start, 3);
  EXPECT_EQ(a.visible, 6);
  const BlockBounds bounds(keys, 4);
  set_block_bounds(a, bounds, b, 0);
  ASSERT_EQ(a.block_bounds.size(), 3u);  // blocks 0, 1, 2 hold [3, 8]
  // Each bound is at least the block's best score (the key's first value), and every block's own bound.
  for (int64_t blk = 0; blk < 3; ++blk) {
    EXPECT_EQ(a.block_bounds[size_t(blk)], bounds.score_bound(b, 0, blk));
    EXPECT_GE(a.block_bounds[size_t(blk)], float(std::min<int64_t>(blk * 4 + 3, 9)));
  }
}

}  // namespace
}  // namespace hisa
