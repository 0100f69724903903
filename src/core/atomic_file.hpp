#pragma once
// Output files that are either complete or absent: written to PATH.tmp and renamed over PATH, so an
// interrupted run (SIGINT, a crash, a full disk) never leaves a truncated result behind.
#include <functional>
#include <ostream>
#include <string>

namespace hisa {

// UsageError naming `flag` when PATH cannot be written (checked by creating and removing PATH.tmp), so a bad
// path fails before the work rather than after it.
void check_writable(const std::string& path, const std::string& flag);

// Calls write(out) on a stream to PATH.tmp, then renames it to PATH. UsageError when writing fails.
void write_file_atomically(const std::string& path, const std::function<void(std::ostream&)>& write);

}  // namespace hisa
