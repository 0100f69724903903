#pragma once
// Range checks for numeric flags, shared by every command. CLI11 reports a failed check as a usage error
// ("--flag: ..."), which main() turns into exit status 2.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <thread>

namespace hisa::cli {

// A finite number in [lo, hi]. (CLI::Range lets NaN through: every comparison with NaN is false.)
inline CLI::Validator finite_range(double lo, double hi) {
  std::ostringstream text_of_range;
  text_of_range << "[" << lo << ", " << hi << "]";
  const std::string range = text_of_range.str();
  return CLI::Validator(
      [lo, hi, range](std::string& text) -> std::string {
        double v = 0;
        if (!CLI::detail::lexical_cast(text, v)) return "expected a number, got \"" + text + "\"";
        if (!std::isfinite(v) || v < lo || v > hi) return "must be a finite number in " + range + ", got " + text;
        return "";
      },
      "NUMBER in " + range);
}

// The most threads a run may ask for: 64 per hardware thread, at most 4096. OpenMP ends the process (with exit
// status 1, the threshold code) when it cannot create the threads it was asked for, so absurd counts are
// refused before any work.
inline int max_threads() {
  const int hardware = int(std::max(1u, std::thread::hardware_concurrency()));
  return std::min(4096, 64 * hardware);
}

// --threads N: 0 (every core, the default) up to max_threads().
inline CLI::Validator thread_count() {
  const int most = max_threads();
  return CLI::Validator(
      [most](std::string& text) -> std::string {
        int64_t v = 0;
        if (!CLI::detail::lexical_cast(text, v)) return "expected an integer, got \"" + text + "\"";
        if (v < 0 || v > most) {
          return "must lie in 0.." + std::to_string(most) + " (0: every core; at most 64 x this machine's " +
                 std::to_string(std::max(1u, std::thread::hardware_concurrency())) +
                 " hardware threads, and never above 4096), got " + text;
        }
        return "";
      },
      "0.." + std::to_string(most));
}

// An integer in [lo, hi], with the message saying the range.
inline CLI::Validator int_range(int64_t lo, int64_t hi, const std::string& why = "") {
  const std::string range = std::to_string(lo) + ".." + std::to_string(hi);
  return CLI::Validator(
      [lo, hi, range, why](std::string& text) -> std::string {
        int64_t v = 0;
        if (!CLI::detail::lexical_cast(text, v)) return "expected an integer, got \"" + text + "\"";
        if (v < lo || v > hi) return "must lie in " + range + (why.empty() ? "" : " (" + why + ")") + ", got " + text;
        return "";
      },
      "INT in " + range);
}

}  // namespace hisa::cli
