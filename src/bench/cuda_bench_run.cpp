// `hisa bench --device cuda` (report/cuda_bench.hpp): every case through the CUDA engine's select(), as
// `hisa audit` and `hisa select` run it, on random layers whose values are bf16 (so the tensor-core path runs,
// as for bf16 and fp8 dumps), then the same values rounded to fp8 e4m3 on an --fp8-mma engine (the fp8 tensor
// cores). Stage times come from the engine (cuda::last_stage_times).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <vector>

#include "core/error.hpp"
#include "core/numeric.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/cuda_engine.hpp"
#include "cuda/cuda_scoring.hpp"
#include "cuda/device_info.hpp"
#include "cuda/kernels.hpp"
#include "bench/cuda_bench.hpp"

namespace hisa {

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// splitmix64: a counter-based hash, so value i of an array depends only on (seed, array, i) and a prefill's
// queries (537M values at L = 64K, H = 64, D = 128) are drawn in parallel, the same for any thread count.
uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// n standard normal values times `scale` (Box–Muller on two 24-bit uniforms of one hash), rounded to bf16 when
// asked; `stream` tells the arrays of one seed apart.
std::vector<float> random_normal(size_t n, uint64_t seed, uint64_t stream, float scale, bool bf16) {
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

// One layer of L keys with bf16 keys and queries and fp32 weights of both signs scaled by 1/sqrt(H). Sampled:
// N queries at position L-1 that see all L keys. Prefill (N = L): query i at position i sees keys [0, i].
void random_layer(int64_t L, int64_t N, int64_t H, int64_t D, bool prefill, uint64_t seed, LayerKeys& keys,
                  QueryBatch& batch) {
  keys.count = L;
  keys.dim = D;
  keys.k = random_normal(size_t(L * D), seed, 0, 1.0f, true);
  keys.k_scale.assign(size_t(L), 1.0f);
  batch.count = N;
  batch.heads = H;
  batch.dim = D;
  batch.q = random_normal(size_t(N * H * D), seed, 1, 1.0f, true);
  batch.w = random_normal(size_t(N * H), seed, 2, 1.0f / std::sqrt(float(H)), false);
  batch.q_pos.resize(size_t(N));
  for (int64_t i = 0; i < N; ++i) batch.q_pos[size_t(i)] = prefill ? i : L - 1;
  batch.k_start.assign(size_t(N), 0);
}

// Medians of the engine's stage times over `repeat` select() calls, after two warm-up calls.
cuda::StageTimes median_stages(SelectionEngine& engine, const QueryBatch& batch, Method method, int repeat) {
  std::vector<std::vector<int64_t>> out;
  for (int i = 0; i < 2; ++i) engine.select(batch, method, out);
  std::vector<cuda::StageTimes> t;
  for (int i = 0; i < repeat; ++i) {
    engine.select(batch, method, out);
    t.push_back(cuda::last_stage_times(engine));
  }
  auto med = [&](double cuda::StageTimes::*field) {
    std::vector<double> v;
    for (const auto& x : t) v.push_back(x.*field);
    return median(v);
  };
  return cuda::StageTimes{med(&cuda::StageTimes::total_ms),        med(&cuda::StageTimes::token_scores_ms),
                          med(&cuda::StageTimes::block_scores_ms), med(&cuda::StageTimes::topk_ms),
                          med(&cuda::StageTimes::masses_ms),       med(&cuda::StageTimes::block_stage_ms)};
}

// The first device this build's kernels run on; UsageError when there is none.
cuda::DeviceInfo bench_device() {
  std::string why = "no GPU found";
  for (const auto& d : cuda::list_devices()) {
    const std::string problem = cuda::kernel_image_problem(d.index);
    if (problem.empty()) return d;
    why = "the kernels cannot run on " + d.name + ": " + problem;
  }
  throw UsageError("--device cuda: " + why);
}

SelectionConfig bench_config(int64_t topk, int64_t block_size, int64_t blocks) {
  SelectionConfig c;
  c.topk = topk;
  c.block_size = block_size;
  c.blocks = blocks;
  c.validate();
  return c;
}

// Every value rounded to fp8 e4m3 (k_scale stays 1, weights stay fp32: an fp8 dump's operands).
void round_to_e4m3(std::vector<float>& v) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < int64_t(v.size()); ++i) v[size_t(i)] = round_to(ElementType::FP8_E4M3, v[size_t(i)]);
}

// One case: flat and HISA through the engine, for sampled queries the fp32 CUDA-core path's scoring, and with
// fp8_engine (null where the GPU or shape has no fp8 kernel) flat and HISA on the fp8 tensor cores.
CudaBenchCase run_case(SelectionEngine& engine, SelectionEngine* fp8_engine, const CudaBenchOptions& o, int64_t L,
                       bool prefill) {
  CudaBenchCase c;
  c.prefill = prefill;
  c.keys = L;
  c.queries = prefill ? L : o.queries;
  c.repeat = prefill ? o.prefill_repeat() : o.repeat;
  c.visible = prefill ? 0.5 * double(L) * double(L + 1) : double(c.queries) * double(L);
  c.flops = 2.0 * double(o.heads) * double(o.dim) * c.visible;
  c.topk_bytes = 4.0 * c.visible;
  LayerKeys keys;
  QueryBatch batch;
  random_layer(L, c.queries, o.heads, o.dim, prefill, o.seed, keys, batch);
  engine.set_layer(keys, bench_config(o.topk, o.block_size, o.blocks));
  const cuda::StageTimes flat = median_stages(engine, batch, Method::Flat, c.repeat);
  c.flat_score_ms = flat.token_scores_ms;
  c.flat_topk_ms = flat.topk_ms;
  c.flat_call_ms = flat.total_ms;
  const cuda::StageTimes hisa = median_stages(engine, batch, Method::Hisa, c.repeat);
  c.hisa_blocks_ms = hisa.block_scores_ms;
  c.hisa_choice_ms = hisa.block_stage_ms;
  c.hisa_score_ms = hisa.token_scores_ms;
  c.hisa_topk_ms = hisa.topk_ms;
  c.hisa_call_ms = hisa.total_ms;
  if (!prefill) {
    // One query value off the bf16 (and f16) grid fails the engine's exactness check, so the same values take
    // the fp32 CUDA-core path. It is ~15x slower than the tensor cores: a few repeats are enough.
    QueryBatch inexact = batch;
    inexact.q[0] = std::nextafter(inexact.q[0], INFINITY);
    c.f32_score_ms = median_stages(engine, inexact, Method::Flat, std::max(1, c.repeat / 4)).token_scores_ms;
  }
  if (fp8_engine != nullptr) {
    round_to_e4m3(keys.k);
    round_to_e4m3(batch.q);
    fp8_engine->set_layer(keys, bench_config(o.topk, o.block_size, o.blocks));
    const cuda::StageTimes f8 = median_stages(*fp8_engine, batch, Method::Flat, c.repeat);
    c.fp8_score_ms = f8.token_scores_ms;
    c.fp8_topk_ms = f8.topk_ms;
    const cuda::StageTimes h8 = median_stages(*fp8_engine, batch, Method::Hisa, c.repeat);
    c.fp8_hisa_ms = h8.block_scores_ms + h8.block_stage_ms + h8.token_scores_ms + h8.topk_ms;
  }
  return c;
}

}  // namespace

CudaBenchResult run_cuda_bench(const CudaBenchOptions& o, const std::function<void(const CudaBenchResult&)>& on_case) {
  const cuda::DeviceInfo device = bench_device();
  for (const auto& list : {o.keys, o.prefill}) {
    for (int64_t L : list) {
      if (L < 2 || L >= (int64_t(1) << 31)) throw UsageError("bench: every L must be in [2, 2^31)");
    }
  }
  // The figures are tensor-core rates; wider heads would silently take the fp32 path.
  if (cuda::round_up(o.dim, 16) > cuda::kMaxTensorCoreDim) {
    throw UsageError("bench: --dim must be at most " + std::to_string(cuda::kMaxTensorCoreDim) + " for the tensor-core path");
  }
  bench_config(o.topk, o.block_size, o.blocks);  // a bad B or m fails before any case runs
  CudaBenchResult r;
  r.gpu = device.name;
  r.multiprocessors = device.multiprocessors;
  r.memory_gib = double(device.total_memory) / double(1 << 30);
  r.peaks = datasheet_peaks(device.name);
  if (device.hbm_bytes_per_second > 0) {
    r.peaks.hbm_gbs = device.hbm_bytes_per_second * 1e-9;
    r.peaks.hbm_source = "2 x " + std::to_string(device.memory_clock_khz / 1000) + " MHz memory clock x " +
                         std::to_string(device.memory_bus_bits) + "-bit bus / 8, from the device attributes";
  } else {
    r.peaks.hbm_source = "unknown (the device reports no memory clock or bus width)";
  }
  auto engine = make_cuda_engine(device.index);
  HISA_CUDA_CHECK(cudaSetDevice(device.index));
  std::unique_ptr<SelectionEngine> fp8_engine;
  if (o.dim <= cuda::kFp8Dim && cuda::fp8_mma_supported(int(cuda::round_up(o.heads, 8)))) {
    fp8_engine = make_cuda_engine(device.index, 0, true);
  }
  for (const bool prefill : {false, true}) {
    for (int64_t L : prefill ? o.prefill : o.keys) {
      r.cases.push_back(run_case(*engine, fp8_engine.get(), o, L, prefill));
      if (on_case) on_case(r);
    }
  }
  return r;
}

SelectionTimeGrid time_selection_grid(const CudaBenchOptions& o, const std::vector<int64_t>& block_sizes,
                                      const std::vector<int64_t>& blocks, int device, bool fp8_mma) {
  if (o.keys.size() != 1) throw std::invalid_argument("time_selection_grid: options.keys must hold one L");
  SelectionTimeGrid g;
  cuda::require_device(device);
  for (const auto& d : cuda::list_devices()) {
    if (d.index == device) g.gpu = d.name;
  }
  g.keys = o.keys.front(), g.heads = o.heads, g.dim = o.dim, g.queries = o.queries, g.topk = std::min(o.topk, g.keys);
  g.block_sizes = block_sizes;
  g.blocks = blocks;
  LayerKeys keys;
  QueryBatch batch;
  random_layer(g.keys, o.queries, o.heads, o.dim, false, o.seed, keys, batch);
  if (fp8_mma) {
    round_to_e4m3(keys.k);
    round_to_e4m3(batch.q);
  }
  auto engine = make_cuda_engine(device, 0, fp8_mma);
  const double per_query = 1e3 / double(o.queries);  // ms per batch -> µs per query
  for (int64_t B : block_sizes) {
    std::vector<double> kernels;
    for (int64_t m : blocks) {
      engine->set_layer(keys, bench_config(g.topk, B, m));
      if (g.flat_kernels_us == 0) {
        const cuda::StageTimes f = median_stages(*engine, batch, Method::Flat, o.repeat);
        g.flat_kernels_us = (f.token_scores_ms + f.topk_ms) * per_query;
      }
      const cuda::StageTimes h = median_stages(*engine, batch, Method::Hisa, o.repeat);
      kernels.push_back((h.block_scores_ms + h.block_stage_ms + h.token_scores_ms + h.topk_ms) * per_query);
    }
    g.hisa_kernels_us.push_back(kernels);
  }
  return g;
}

}  // namespace hisa
