#pragma once
// Progress with an ETA on stderr, only when stderr is a terminal (never in logs or pipes).
#include <chrono>
#include <cstdint>
#include <string>

namespace hisa {

class Progress {
 public:
  explicit Progress(int64_t total, bool enabled = true);
  ~Progress();
  void advance(int64_t done_units, const std::string& label);  // done_units: cumulative
  void finish();

 private:
  int64_t total_;
  bool active_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace hisa
