#include "core/log.hpp"

#include <atomic>
#include <cstdio>
#include <mutex>

#include "core/text_escape.hpp"

namespace hisa {

namespace {
std::atomic<bool> g_verbose{false};
std::mutex g_lines;
}  // namespace

void set_verbose(bool on) { g_verbose.store(on); }
bool verbose() { return g_verbose.load(); }

void log_verbose(const std::string& line) {
  if (!verbose()) return;
  std::lock_guard lock(g_lines);
  std::fprintf(stderr, "hisa: %s\n", terminal_safe(line).c_str());  // lines name samples from files
  std::fflush(stderr);
}

}  // namespace hisa
