#pragma once
// Every kind of bad input the loader must reject (datasets/FORMAT.md, "What the loader checks"), each as a
// recipe that writes the bad file, with the HDF5 path and the words the error message must contain. The library
// tests (test_dump_io.cpp) and the CLI tests (test_cli_errors.cpp) run the same list.
#include <functional>
#include <ostream>
#include <string>
#include <vector>

namespace hisa::test {

struct BadCase {
  std::string name;                          // a gtest-friendly identifier
  std::function<void(const std::string&)> make;  // writes the bad file at the given path
  std::string hdf5_path;                     // where the problem is; "" when it is the file itself
  std::vector<std::string> found;            // substrings the message must contain (what was found/expected)
  bool needs_no_plugins = false;             // run with HDF5 filter plugins out of reach
};

const std::vector<BadCase>& bad_cases();
// gtest prints parameters with this (instead of their bytes).
inline void PrintTo(const BadCase& c, std::ostream* os) { *os << c.name; }

// The good file the bad cases start from: one sample "s0" with layer 0 (L = 40, Nq = 3, H = 2, D = 8,
// q_pos = {0, 19, 39}, k_start = {0, 9, 19}, topk_ref width 4 = index_topk), elements of the given types.
enum class BaseKind { F32, Fp8, Bf16Custom, Bf16Uint16 };
void write_base_file(const std::string& path, BaseKind kind);

// The id and name of the compression filter the "unavailable filter" case uses (LZ4's registered id).
inline constexpr int kAbsentFilterId = 32004;

}  // namespace hisa::test
