#pragma once
// Parses lists like "0-3,7,10-12" (inclusive ranges) for --layers and similar options.
#include <string>
#include <vector>

namespace hisa {

// Ascending, without duplicates. Throws UsageError naming `option` on malformed text.
std::vector<int> parse_int_list(const std::string& text, const std::string& option);
std::vector<std::string> split_list(const std::string& text, char separator = ',');

}  // namespace hisa
