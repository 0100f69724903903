#pragma once
// Running the built `hisa` (HISA_BINARY) as a user does, for the CLI tests.
#include <string>
#include <vector>

#include "test_util.hpp"

namespace hisa::test {

// `hisa args...` in `dir` (its output captured there), with extra environment variables ("NAME=value").
inline ProcessResult run_hisa(const std::vector<std::string>& args, const TempDir& dir,
                              const std::vector<std::string>& env = {}) {
  std::vector<std::string> argv{HISA_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_process(argv, dir.path().string(), env);
}

// args with more appended, for a command's shared flags.
inline std::vector<std::string> with(std::vector<std::string> args, const std::vector<std::string>& more) {
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

}  // namespace hisa::test
