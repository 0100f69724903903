#pragma once
// Where a command's human-readable text goes when one of its outputs may be standard output.
#include <iostream>
#include <vector>

#include "core/atomic_file.hpp"

namespace hisa::cli {

// Standard output, unless an output is written there ("-"): then standard error, so the output stays clean.
inline std::ostream& table_stream(const std::vector<OutputSpec>& outputs) {
  for (const auto& o : outputs) {
    if (is_stdout(o.path)) return std::cerr;
  }
  return std::cout;
}

}  // namespace hisa::cli
