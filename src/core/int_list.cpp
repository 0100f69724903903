#include "core/int_list.hpp"

#include <algorithm>
#include <charconv>

#include "core/error.hpp"

namespace hisa {

std::vector<std::string> split_list(const std::string& text, char separator) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(separator, start);
    if (end == std::string::npos) end = text.size();
    if (end > start) out.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

namespace {

int parse_int(const std::string& s, const std::string& option, const std::string& text) {
  int value = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || ptr != s.data() + s.size() || value < 0) {
    throw OptionError(option, "{" + option + "}: cannot read \"" + text + "\" (expected a list like 0-3,7)");
  }
  return value;
}

int64_t parse_size(const std::string& s, const std::string& option, const std::string& text) {
  int64_t value = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || ptr != s.data() + s.size() || value < 1) {
    throw OptionError(option, "{" + option + "}: cannot read \"" + text + "\" (expected positive integers and doubling ranges, e.g. 8-512 or 8,12,16)");
  }
  return value;
}

}  // namespace

std::vector<int64_t> parse_size_list(const std::string& text, const std::string& option) {
  std::vector<int64_t> out;
  for (const auto& part : split_list(text)) {
    const size_t dash = part.find('-');
    if (dash == std::string::npos) {
      out.push_back(parse_size(part, option, text));
      continue;
    }
    const int64_t lo = parse_size(part.substr(0, dash), option, text), hi = parse_size(part.substr(dash + 1), option, text);
    if (hi < lo) throw OptionError(option, "{" + option + "}: range \"" + part + "\" runs backwards");
    for (int64_t v = lo; v < hi; v = v <= hi / 2 ? v * 2 : hi) out.push_back(v);  // no overflow near hi
    out.push_back(hi);
  }
  if (out.empty()) throw OptionError(option, "{" + option + "}: empty list");
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::vector<int> parse_int_list(const std::string& text, const std::string& option) {
  std::vector<int> out;
  for (const auto& part : split_list(text)) {
    const size_t dash = part.find('-');
    if (dash == std::string::npos) {
      out.push_back(parse_int(part, option, text));
      continue;
    }
    const int lo = parse_int(part.substr(0, dash), option, text), hi = parse_int(part.substr(dash + 1), option, text);
    if (hi < lo) throw OptionError(option, "{" + option + "}: range \"" + part + "\" runs backwards");
    for (int v = lo; v <= hi; ++v) out.push_back(v);
  }
  if (out.empty()) throw OptionError(option, "{" + option + "}: empty list");
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace hisa
