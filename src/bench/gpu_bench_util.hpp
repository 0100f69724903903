#pragma once
// What the GPU benchmarks (bench/cuda_bench_run.cpp, bench/kernel_bench_run.cpp) share: random values drawn the
// same for any thread count, medians, and the device they run on with its peaks. Host code for CUDA builds only.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "bench/cuda_bench.hpp"
#include "core/error.hpp"
#include "core/numeric.hpp"
#include "cuda/device_info.hpp"
#include "cuda/kernels.hpp"

namespace hisa::bench {

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// splitmix64: a counter-based hash, so value i of an array depends only on (seed, array, i) and a prefill's
// queries (537M values at L = 64K, H = 64, D = 128) are drawn in parallel, the same for any thread count.
inline uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// n standard normal values times `scale` (Box–Muller on two 24-bit uniforms of one hash), rounded to bf16 when
// asked; `stream` tells the arrays of one seed apart.
inline std::vector<float> random_normal(size_t n, uint64_t seed, uint64_t stream, float scale, bool bf16) {
  std::vector<float> v(n);
  const uint64_t base = splitmix64(seed ^ splitmix64(stream));
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < int64_t(n); ++i) {
    const uint64_t h = splitmix64(base + uint64_t(i));
    const float u1 = (float(h >> 40) + 1.0f) * 0x1p-24f;  // (0, 1]: the log stays finite
    const float u2 = float(h & 0xFFFFFFu) * 0x1p-24f;
    const float x = std::sqrt(-2.0f * std::log(u1)) * std::cos(6.28318531f * u2) * scale;
    v[size_t(i)] = bf16 ? round_to(ElementType::BF16, x) : x;
  }
  return v;
}

// The first device this build's kernels run on; an OptionError for device when there is none.
inline cuda::DeviceInfo bench_device() {
  std::string why = "no GPU found";
  for (const auto& d : cuda::list_devices()) {
    const std::string problem = cuda::kernel_image_problem(d.index);
    if (problem.empty()) return d;
    why = "the kernels cannot run on " + d.name + ": " + problem;
  }
  throw OptionError("device", "{device} cuda: " + why);
}

// Every value rounded to fp8 e4m3 (k_scale stays 1, weights stay fp32: an fp8 dump's operands).
inline void round_to_e4m3(std::vector<float>& v) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < int64_t(v.size()); ++i) v[size_t(i)] = round_to(ElementType::FP8_E4M3, v[size_t(i)]);
}

// The datasheet tensor peaks of the device, and its HBM bandwidth from the device attributes.
inline GpuPeaks device_peaks(const cuda::DeviceInfo& device) {
  GpuPeaks p = datasheet_peaks(device.name);
  if (device.hbm_bytes_per_second > 0) {
    p.hbm_gbs = device.hbm_bytes_per_second * 1e-9;
    p.hbm_source = "2 x " + std::to_string(device.memory_clock_khz / 1000) + " MHz memory clock x " +
                   std::to_string(device.memory_bus_bits) + "-bit bus / 8, from the device attributes";
  } else {
    p.hbm_source = "unknown (the device reports no memory clock or bus width)";
  }
  return p;
}

}  // namespace hisa::bench
