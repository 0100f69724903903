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

IntRanges::IntRanges(std::initializer_list<int> values) {
  for (int v : values) add(v, v);
}

void IntRanges::add(int lo, int hi) {
  ranges_.push_back({lo, hi});
  std::sort(ranges_.begin(), ranges_.end(), [](const Range& a, const Range& b) { return a.lo < b.lo; });
  std::vector<Range> merged;
  for (const Range& r : ranges_) {
    // Touching ranges merge too (0-3,4-7 is 0-7); the int64 sum keeps hi + 1 from overflowing.
    if (!merged.empty() && int64_t(r.lo) <= int64_t(merged.back().hi) + 1) {
      merged.back().hi = std::max(merged.back().hi, r.hi);
    } else {
      merged.push_back(r);
    }
  }
  ranges_ = std::move(merged);
}

bool IntRanges::contains(int v) const {
  auto it = std::upper_bound(ranges_.begin(), ranges_.end(), v, [](int x, const Range& r) { return x < r.lo; });
  return it != ranges_.begin() && v <= std::prev(it)->hi;
}

IntRanges IntRanges::parse(const std::string& text, const std::string& option) {
  IntRanges out;
  for (const auto& part : split_list(text)) {
    const size_t dash = part.find('-');
    if (dash == std::string::npos) {
      const int v = parse_int(part, option, text);
      out.add(v, v);
      continue;
    }
    const int lo = parse_int(part.substr(0, dash), option, text), hi = parse_int(part.substr(dash + 1), option, text);
    if (hi < lo) throw OptionError(option, "{" + option + "}: range \"" + part + "\" runs backwards");
    out.add(lo, hi);
  }
  if (out.empty()) throw OptionError(option, "{" + option + "}: empty list");
  return out;
}

std::vector<int> parse_int_list(const std::string& text, const std::string& option, int64_t max_values) {
  const IntRanges ranges = IntRanges::parse(text, option);
  int64_t count = 0;
  for (const auto& r : ranges.ranges()) count += int64_t(r.hi) - r.lo + 1;
  if (count > max_values) {
    throw OptionError(option, "{" + option + "}: \"" + text + "\" lists " + std::to_string(count) + " values, more than " +
                                  std::to_string(max_values));
  }
  std::vector<int> out;
  for (const auto& r : ranges.ranges()) {
    for (int64_t v = r.lo; v <= r.hi; ++v) out.push_back(int(v));
  }
  return out;
}

}  // namespace hisa
