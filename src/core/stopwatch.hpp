#pragma once
// Wall-clock time of a scope, added to a total: Stopwatch t(times.pooling); ... (the scope's seconds are added
// when t ends). unit scales the seconds (1e3: milliseconds).
#include <chrono>

namespace hisa {

class Stopwatch {
 public:
  explicit Stopwatch(double& into, double unit = 1.0) : into_(into), unit_(unit), t0_(std::chrono::steady_clock::now()) {}
  Stopwatch(const Stopwatch&) = delete;
  Stopwatch& operator=(const Stopwatch&) = delete;
  ~Stopwatch() { into_ += unit_ * std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count(); }

 private:
  double& into_;
  double unit_;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace hisa
