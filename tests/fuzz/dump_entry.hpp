#pragma once
// The one piece of code the fuzz target (fuzz_dump.cpp) and the regression test (tests/io/test_fuzz_regressions.cpp)
// share: what `hisa inspect --check` and a small `hisa audit` do with a file, through the library.
#include <cstddef>
#include <cstdint>
#include <string>

namespace hisa::fuzz {

// Opens the dump, describes every layer, reads every key and query, and audits a few queries per layer with the
// CPU engine on a small config. Returns for a good file; a bad file must end in InputError or UsageError (what the
// CLI turns into exit status 2). Any other exception, a crash or a sanitizer report is a bug.
void exercise_dump(const std::string& path);

enum class Outcome { Accepted, Rejected };

// Writes the bytes to `path` and runs exercise_dump on it: Accepted when it returns, Rejected on InputError or
// UsageError; every other exception propagates (the fuzzer reports it as a crash).
Outcome exercise_bytes(const uint8_t* data, size_t size, const std::string& path);

}  // namespace hisa::fuzz
