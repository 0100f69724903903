// core/int_list: lists as ranges, so a huge range costs nothing until it meets the layers a file holds.
#include <gtest/gtest.h>

#include "core/error.hpp"
#include "core/int_list.hpp"

namespace hisa {
namespace {

using Range = IntRanges::Range;

TEST(IntRanges, ParsedListsAreSortedMergedRanges) {
  EXPECT_EQ(IntRanges::parse("7,0-3,2,4-5,10", "layers").ranges(), (std::vector<Range>{{0, 5}, {7, 7}, {10, 10}}));
  EXPECT_EQ(IntRanges::parse("0-2147483647", "layers").ranges(), (std::vector<Range>{{0, 2147483647}}));
  EXPECT_EQ(IntRanges::parse("2147483647,0-2147483646", "layers").ranges(), (std::vector<Range>{{0, 2147483647}}));
  EXPECT_EQ(IntRanges({3, 1, 2, 9}).ranges(), (std::vector<Range>{{1, 3}, {9, 9}}));
  const IntRanges r = IntRanges::parse("1-3,9", "layers");
  for (int v : {1, 2, 3, 9}) EXPECT_TRUE(r.contains(v)) << v;
  for (int v : {0, 4, 8, 10, -1}) EXPECT_FALSE(r.contains(v)) << v;
  EXPECT_TRUE(IntRanges{}.empty());
}

TEST(IntRanges, MalformedTextNamesTheOption) {
  for (const char* bad : {"", ",", "a", "1-", "-1", "3-1", "0-2147483648", "1.5"}) {
    try {
      IntRanges::parse(bad, "layers");
      ADD_FAILURE() << "accepted \"" << bad << "\"";
    } catch (const OptionError& e) {
      EXPECT_EQ(e.option(), "layers") << bad;
    }
  }
}

TEST(IntList, ListsTooLongToMaterialiseAreRefused) {
  EXPECT_EQ(parse_int_list("3,0-1", "gpus"), (std::vector<int>{0, 1, 3}));
  EXPECT_THROW(parse_int_list("0-2147483647", "gpus"), OptionError);
  EXPECT_EQ(parse_int_list("0-9", "gpus", 10).size(), 10u);
  EXPECT_THROW(parse_int_list("0-10", "gpus", 10), OptionError);
}

}  // namespace
}  // namespace hisa
