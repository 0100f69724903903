// The CUDA engine's select() host work for a 64K-query prefill (H = 64, D = 128, k = 2048), alone, on every core:
// the queries' bf16 codes written with plain stores (as before 2026-12-03) and with AVX2 streaming stores
// (core/streaming_rows.cpp), and the selections widened into per-query vectors with vector::assign and with
// streaming stores. Shows how much host time select() must hide behind the kernels
// (tests/bench/results/2026-12-03-h200-select-pipeline.txt). Build and run on the machine in question:
//   g++ -O2 -std=c++20 -mavx2 -mfma -fopenmp tests/bench/host_select_work.cpp -o /tmp/host_select_work && /tmp/host_select_work
#include <immintrin.h>
#include <omp.h>
#include <bit>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include <algorithm>
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
      #pragma omp parallel
      {
        #pragma omp for schedule(static)
        for (int64_t r = 0; r < Q * H; ++r) {
          const float* v = q.data() + (c * Q * H + r) * D;
          __m256i* o = (__m256i*)(codes + r * D);
          __m256i low = _mm256_setzero_si256();
          const __m256i mask = _mm256_set1_epi32(0xFFFF);
          for (int64_t d = 0; d < D; d += 16) {
            __m256i a = _mm256_loadu_si256((const __m256i*)(v + d)), b = _mm256_loadu_si256((const __m256i*)(v + d + 8));
            low = _mm256_or_si256(low, _mm256_or_si256(_mm256_and_si256(a, mask), _mm256_and_si256(b, mask)));
            __m256i p = _mm256_packus_epi32(_mm256_srli_epi32(a, 16), _mm256_srli_epi32(b, 16));
            _mm256_stream_si256(o + d / 16, _mm256_permute4x64_epi64(p, 0xD8));
          }
          if (!_mm256_testz_si256(low, low)) { volatile int x = 1; (void)x; }
        }
        _mm_sfence();
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
        #pragma omp for schedule(static)
        for (int64_t i = 0; i < Q; ++i) {
          auto& o = out[size_t(c * Q + i)];
          o.resize(K);
          const int* src = pos.data() + i * K;
          int64_t* dst = o.data();
          int64_t d = 0;
          for (; d < K && (uintptr_t(dst + d) & 31); ++d) dst[d] = src[d];
          for (; d + 4 <= K; d += 4) _mm256_stream_si256((__m256i*)(dst + d), _mm256_cvtepi32_epi64(_mm_loadu_si128((const __m128i*)(src + d))));
          for (; d < K; ++d) dst[d] = src[d];
        }
        _mm_sfence();
      }
    }
    printf("1 GiB of int64 selections, streaming       %.1f ms\n", ms(t));
  }
}
