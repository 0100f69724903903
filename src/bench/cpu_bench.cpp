#include "bench/cpu_bench.hpp"

#include <omp.h>

#include <Eigen/Core>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

#include "select/score_cpu.hpp"
#include "select/topk.hpp"

namespace hisa {

namespace {

template <typename F>
double best_seconds(int repeat, F&& f) {
  double best = 1e30;
  for (int r = 0; r < repeat; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

}  // namespace

CpuBenchResult run_cpu_bench(const CpuBenchOptions& o) {
  const int threads = o.threads > 0 ? o.threads : omp_get_max_threads();
  std::mt19937_64 rng(o.seed);
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  std::vector<float> q(size_t(o.queries * o.heads * o.dim)), k(size_t(o.keys * o.dim)), w(size_t(o.queries * o.heads));
  std::vector<float> scales(size_t(o.keys), 1.0f);
  for (auto& v : q) v = gauss(rng);
  for (auto& v : k) v = gauss(rng);
  for (auto& v : w) v = gauss(rng);

  CpuBenchResult r;
  r.threads = threads;
  r.flops = 2.0 * double(o.queries) * double(o.heads) * double(o.dim) * double(o.keys);

  // Baseline: the plain GEMM of the same shape, [Nq·H, D] x [D, L], with Eigen's own threading.
  using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  Eigen::Map<const RowMatrix> Q(q.data(), o.queries * o.heads, o.dim), K(k.data(), o.keys, o.dim);
  RowMatrix S(o.queries * o.heads, o.keys);
  Eigen::setNbThreads(threads);
  S.noalias() = Q * K.transpose();  // warm-up: page in the output
  r.gemm_seconds = best_seconds(o.repeat, [&] { S.noalias() = Q * K.transpose(); });
  S.resize(0, 0);

  // Flat scoring as the CPU engine does it: query chunks in parallel, key tiles inside score_keys.
  std::vector<float> rows(size_t(o.queries * o.keys));
  const int64_t chunk = std::max<int64_t>(1, 512 / o.heads);
  const int64_t chunks = (o.queries + chunk - 1) / chunk;
  auto score_all = [&] {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t first = c * chunk, n = std::min(chunk, o.queries - first);
      ScoreInputs in{q.data() + first * o.heads * o.dim, w.data() + first * o.heads, n, o.heads, o.dim};
      score_keys(in, k.data(), scales.data(), o.keys, rows.data() + first * o.keys, o.keys);
    }
  };
  score_all();
  r.score_seconds = best_seconds(o.repeat, score_all);

  std::vector<std::vector<int64_t>> selected(size_t(o.queries));
  r.topk_seconds = best_seconds(o.repeat, [&] {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t i = 0; i < o.queries; ++i) {
      selected[size_t(i)].clear();
      topk_range({rows.data() + i * o.keys, size_t(o.keys)}, 0, o.topk, selected[size_t(i)]);
    }
  });
  return r;
}

void print_cpu_bench(std::ostream& out, const CpuBenchOptions& o, const CpuBenchResult& r) {
  char line[256];
  out << "CPU bench: L = " << o.keys << " keys, H = " << o.heads << ", D = " << o.dim << ", " << o.queries
      << " queries, top-" << o.topk << ", " << r.threads << " threads, best of " << o.repeat << "\n";
  std::snprintf(line, sizeof line, "  Eigen float GEMM [Nq*H, D] x [D, L]   %9.3f ms  %8.1f GFLOP/s\n",
                r.gemm_seconds * 1e3, r.gemm_gflops());
  out << line;
  std::snprintf(line, sizeof line, "  flat indexer scoring (fused)          %9.3f ms  %8.1f GFLOP/s  = %.2f x GEMM (target >= 0.50)\n",
                r.score_seconds * 1e3, r.score_gflops(), r.score_vs_gemm());
  out << line;
  std::snprintf(line, sizeof line, "  exact top-%lld per row                  %9.3f ms  = %.1f %% of scoring (target < 10 %%)\n",
                (long long)o.topk, r.topk_seconds * 1e3, 100.0 * r.topk_vs_score());
  out << line;
}

}  // namespace hisa
