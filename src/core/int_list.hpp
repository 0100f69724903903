#pragma once
// Parses lists like "0-3,7,10-12" (inclusive ranges) for the layers option and similar ones.
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

namespace hisa {

// A set of non-negative ints kept as ascending, disjoint inclusive ranges, so that "0-2147483647" costs two
// numbers rather than 2^31 (a layer list is then checked against the layers a file holds without listing it).
class IntRanges {
 public:
  struct Range {
    int lo, hi;
    bool operator==(const Range&) const = default;
  };
  IntRanges() = default;
  IntRanges(std::initializer_list<int> values);  // single values, in any order
  // Parses "0-3,7,10-12" (inclusive ranges); OptionError for `option` (core/error.hpp) on malformed text.
  static IntRanges parse(const std::string& text, const std::string& option);
  bool empty() const { return ranges_.empty(); }
  bool contains(int v) const;
  const std::vector<Range>& ranges() const { return ranges_; }
  bool operator==(const IntRanges&) const = default;

 private:
  void add(int lo, int hi);  // then sorted and merged
  std::vector<Range> ranges_;
};

// Ascending, without duplicates. Throws an OptionError for `option` (core/error.hpp) on malformed text, and
// on a list of more than max_values values (it is materialised).
std::vector<int> parse_int_list(const std::string& text, const std::string& option, int64_t max_values = 65536);
// Sizes for sweeps (block sizes, budgets): a comma list of positive integers and doubling ranges, where
// "a-b" means a, 2a, 4a, … up to b, and b itself ("8-512" = 8,16,32,64,128,256,512; "12-100" =
// 12,24,48,96,100). Ascending, without duplicates. Throws an OptionError for `option` (core/error.hpp) on malformed text.
std::vector<int64_t> parse_size_list(const std::string& text, const std::string& option);

std::vector<std::string> split_list(const std::string& text, char separator = ',');

}  // namespace hisa
