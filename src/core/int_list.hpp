#pragma once
// Parses lists like "0-3,7,10-12" (inclusive ranges) for the layers option and similar ones.
#include <cstdint>
#include <string>
#include <vector>

namespace hisa {

// Ascending, without duplicates. Throws an OptionError for `option` (core/error.hpp) on malformed text.
std::vector<int> parse_int_list(const std::string& text, const std::string& option);
// Sizes for sweeps (block sizes, budgets): a comma list of positive integers and doubling ranges, where
// "a-b" means a, 2a, 4a, … up to b, and b itself ("8-512" = 8,16,32,64,128,256,512; "12-100" =
// 12,24,48,96,100). Ascending, without duplicates. Throws an OptionError for `option` (core/error.hpp) on malformed text.
std::vector<int64_t> parse_size_list(const std::string& text, const std::string& option);

std::vector<std::string> split_list(const std::string& text, char separator = ',');

}  // namespace hisa
