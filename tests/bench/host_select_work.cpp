// The CUDA engine's select() host work for a 64K-query prefill (H = 64, D = 128, k = 2048), alone, on every core:
// the queries' bf16 codes written with plain stores (as before 2026-12-03) and with AVX2 streaming stores
// (core/streaming_rows.cpp), and the selections widened into per-query vectors with vector::assign and with
// streaming stores. Shows how much host time select() must hide behind the kernels
// (tests/bench/results/2026-12-03-h200-select-pipeline.txt). The streaming arms call the engine's own writers;
// the plain arms are the code they replaced. Build and run on the machine in question:
//   g++ -O2 -std=c++20 -mavx2 -mfma -fopenmp -Isrc tests/bench/host_select_work.cpp src/core/streaming_rows.cpp -o /tmp/host_select_work
//   /tmp/host_select_work
#include <omp.h>
#include <bit>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include <algorithm>

#include "core/streaming_rows.hpp"
using clk = std::chrono::steady_clock;
static double ms(clk::time_point a) { return std::chrono::duration<double, std::milli>(clk::now() - a).count(); }
int main() {
  const int64_t Q = 4096, H = 64, D = 128, K = 2048, chunks = 16;
  std::vector<float> q(size_t(Q * chunks * H * D));
  #pragma omp parallel for
  for (int64_t i = 0; i < int64_t(q.size()); ++i) q[i] = std::bit_cast<float>(uint32_t(0x3f800000u + ((i * 2654435761u) & 0x7f0000u)));
  uint16_t* codes = (uint16_t*)aligned_alloc(4096, size_t(Q * H * D * 2));
  std::memset(codes, 0, size_t(Q*H*D*2));
  std::vector<int> pos(size_t(Q * K));
  for (size_t i = 0; i < pos.size(); ++i) pos[i] = int(i);
  std::vector<std::vector<int64_t>> out(size_t(Q * chunks));
  printf("threads %d\n", omp_get_max_threads());
  for (int rep = 0; rep < 3; ++rep) {
    // plain: zero-fill, encode, check, as QueryStore did
    auto t = clk::now();
    for (int64_t c = 0; c < chunks; ++c) {
      bool bad = false;
      #pragma omp parallel for schedule(static) reduction(||:bad)
      for (int64_t r = 0; r < Q * H; ++r) {
        uint16_t* o = codes + r * D;
        std::fill_n(o, D, uint16_t(0));
        const float* v = q.data() + (c * Q * H + r) * D;
        for (int64_t d = 0; d < D; ++d) o[d] = uint16_t(std::bit_cast<uint32_t>(v[d]) >> 16);
        uint32_t low = 0;
        for (int64_t d = 0; d < D; ++d) low |= std::bit_cast<uint32_t>(v[d]) & 0xFFFFu;
        bad = bad || low;
      }
    }
    printf("bf16 codes of 2 GiB fp32, plain stores      %.1f ms\n", ms(t));
    t = clk::now();
    for (int64_t c = 0; c < chunks; ++c) {
      bool bad = false;
      #pragma omp parallel reduction(||:bad)
      {
        #pragma omp for schedule(static) nowait
        for (int64_t r = 0; r < Q * H; ++r) {
          const bool exact = hisa::bf16_codes_row(q.data() + (c * Q * H + r) * D, D, D, codes + r * D);
          bad = bad || !exact;
        }
        hisa::finish_streaming_stores();
      }
    }
    printf("bf16 codes of 2 GiB fp32, streaming stores  %.1f ms\n", ms(t));
    t = clk::now();
    for (int64_t c = 0; c < chunks; ++c) {
      #pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < Q; ++i) out[size_t(c * Q + i)].assign(pos.data() + i * K, pos.data() + (i + 1) * K);
    }
    printf("1 GiB of int64 selections, vector::assign  %.1f ms\n", ms(t));
    t = clk::now();
    for (int64_t c = 0; c < chunks; ++c) {
      #pragma omp parallel
      {
        #pragma omp for schedule(static) nowait
        for (int64_t i = 0; i < Q; ++i) {
          auto& o = out[size_t(c * Q + i)];
          o.resize(K);
          hisa::widen_row(pos.data() + i * K, K, o.data());
        }
        hisa::finish_streaming_stores();
      }
    }
    printf("1 GiB of int64 selections, streaming       %.1f ms\n", ms(t));
  }
}
