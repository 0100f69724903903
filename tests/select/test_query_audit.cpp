// What every engine computes on the host the same way (select/query_audit.hpp).
#include <gtest/gtest.h>

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

TEST(QueryAudit, PositionOfTheQuery) {
  QueryBatch b;
  b.count = 2;
  b.q_pos = {8, 4};
  b.k_start = {3, 0};
  QueryAudit a;
  set_query_position(a, b, 0);
  EXPECT_EQ(a.q_pos, 8);
  EXPECT_EQ(a.k_start, 3);
  EXPECT_EQ(a.visible, 6);
  set_query_position(a, b, 1);
  EXPECT_EQ(a.visible, 5);
}

}  // namespace
}  // namespace hisa
