#include "core/progress.hpp"

#include <unistd.h>

#include <cstdio>

#include "core/text_escape.hpp"

namespace hisa {

Progress::Progress(int64_t total, bool enabled)
    : total_(total), active_(enabled && total > 0 && isatty(STDERR_FILENO)), start_(std::chrono::steady_clock::now()) {}

Progress::~Progress() { finish(); }

void Progress::advance(int64_t done, const std::string& label) {
  if (!active_) return;
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double fraction = total_ > 0 ? double(done) / double(total_) : 1.0;
  const double eta = fraction > 0 ? elapsed * (1.0 - fraction) / fraction : 0.0;
  std::fprintf(stderr, "\r\033[K%s  %3.0f%%  elapsed %.0fs  ETA %.0fs", terminal_safe(label).c_str(), 100.0 * fraction, elapsed, eta);
  std::fflush(stderr);
}

void Progress::finish() {
  if (!active_) return;
  std::fprintf(stderr, "\r\033[K");
  std::fflush(stderr);
  active_ = false;
}

}  // namespace hisa
