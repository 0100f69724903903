// `hisa bench --device cuda` (report/cuda_bench.hpp): every case through the CUDA engine's select(), as
// `hisa audit` and `hisa select` run it, on random layers whose values are bf16 (so the tensor-core path runs,
// as for bf16 and fp8 dumps), then the same values rounded to fp8 e4m3 on an --fp8-mma engine (the fp8 tensor
// cores). Stage times come from the engine (SelectionEngine::times()).
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <vector>

#include "core/error.hpp"
#include "core/numeric.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/device_buffer.hpp"
#include "cuda/cuda_engine.hpp"
#include "cuda/cuda_scoring.hpp"
#include "cuda/device_info.hpp"
#include "cuda/kernels.hpp"
#include "cuda/operands.hpp"
#include "bench/cuda_bench.hpp"
#include "bench/gpu_bench_util.hpp"
#include "select/config.hpp"

namespace hisa {

namespace {

using namespace bench;

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

// The bf16 codes of values exact in bf16, into pinned memory (a caller's bf16 tensor in pinned memory).
const uint16_t* bf16_codes(const std::vector<float>& values, cuda::PinnedArray<uint16_t>& codes) {
  uint16_t* out = codes.reserve(std::max<size_t>(values.size(), 1));
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < int64_t(values.size()); ++i) out[i] = cuda::encode(cuda::ValueType::BF16, values[size_t(i)]);
  return out;
}

// Medians of the engine's stage times (ms) over `repeat` select() calls, after two warm-up calls.
StageTimes median_stages(SelectionEngine& engine, const QueryBatch& batch, Method method, int repeat) {
  std::vector<std::vector<int64_t>> out;
  for (int i = 0; i < 2; ++i) engine.select(batch, method, out);
  std::vector<StageTimes> t;
  for (int i = 0; i < repeat; ++i) {
    const StageTimes before = engine.times();
    engine.select(batch, method, out);
    t.push_back(engine.times() - before);
  }
  auto med = [&](double StageTimes::*field) {
    std::vector<double> v;
    for (const auto& x : t) v.push_back(x.*field * 1e3);
    return median(v);
  };
  StageTimes m;
  for (double StageTimes::*field : {&StageTimes::calls, &StageTimes::pooling, &StageTimes::token_scores,
                                    &StageTimes::block_scores, &StageTimes::block_choice, &StageTimes::topk,
                                    &StageTimes::masses, &StageTimes::transfers}) {
    m.*field = med(field);
  }
  return m;
}

// HISA's kernels: block scores, block choice, token scores and top-k.
double hisa_kernels(const StageTimes& t) { return t.block_scores + t.block_choice + t.token_scores + t.topk; }

SelectionConfig bench_config(int64_t topk, int64_t block_size, int64_t blocks) {
  SelectionConfig c;
  c.topk = topk;
  c.block_size = block_size;
  c.blocks = blocks;
  c.validate();
  return c;
}

// One case: flat and HISA through the engine, for sampled queries the fp32 CUDA-core path's scoring, and with
// fp8_engine (null where the GPU or shape has no fp8 kernel) flat and HISA on the fp8 tensor cores.
// compressed_topk > 0: a compressed case (DeepSeek-V4) of L rows and that k.
CudaBenchCase run_case(SelectionEngine& engine, SelectionEngine* fp8_engine, const CudaBenchOptions& o, int64_t L,
                       bool prefill, int64_t compressed_topk = 0) {
  CudaBenchCase c;
  c.prefill = prefill;
  c.keys = L;
  c.topk = compressed_topk > 0 ? compressed_topk : o.topk;
  c.compress_ratio = compressed_topk > 0 ? o.compress_ratio : 1;
  c.queries = prefill ? L : o.queries;
  c.repeat = prefill ? o.prefill_repeat() : o.repeat;
  c.visible = prefill ? 0.5 * double(L) * double(L + 1) : double(c.queries) * double(L);
  c.flops = 2.0 * double(o.heads) * double(o.dim) * c.visible;
  c.topk_bytes = 4.0 * c.visible;
  LayerKeys keys;
  QueryBatch batch;
  random_layer(L, c.queries, o.heads, o.dim, prefill, o.seed, keys, batch);
  cuda::PinnedArray<uint16_t> codes;
  batch.q_bf16 = bf16_codes(batch.q, codes);
  engine.set_layer(keys, bench_config(c.topk, o.block_size, o.blocks));
  const StageTimes flat = median_stages(engine, batch, Method::Flat, c.repeat);
  c.flat_score_ms = flat.token_scores;
  c.flat_topk_ms = flat.topk;
  c.flat_call_ms = flat.calls;
  const StageTimes hisa = median_stages(engine, batch, Method::Hisa, c.repeat);
  c.hisa_blocks_ms = hisa.block_scores;
  c.hisa_choice_ms = hisa.block_choice;
  c.hisa_score_ms = hisa.token_scores;
  c.hisa_topk_ms = hisa.topk;
  c.hisa_call_ms = hisa.calls;
  batch.q_bf16 = nullptr;  // from here on, the floats alone
  c.flat_call_f32_ms = median_stages(engine, batch, Method::Flat, c.repeat).calls;
  c.hisa_call_f32_ms = median_stages(engine, batch, Method::Hisa, c.repeat).calls;
  if (!prefill) {
    // One query value off the bf16 (and f16) grid fails the engine's exactness check, so the same values take
    // the fp32 CUDA-core path. It is ~15x slower than the tensor cores: a few repeats are enough.
    QueryBatch inexact = batch;
    inexact.q[0] = std::nextafter(inexact.q[0], INFINITY);
    c.f32_score_ms = median_stages(engine, inexact, Method::Flat, std::max(1, c.repeat / 4)).token_scores;
  }
  if (fp8_engine != nullptr) {
    round_to_e4m3(keys.k);
    round_to_e4m3(batch.q);
    fp8_engine->set_layer(keys, bench_config(c.topk, o.block_size, o.blocks));
    const StageTimes f8 = median_stages(*fp8_engine, batch, Method::Flat, c.repeat);
    // The engine says whether it scored on the fp8 tensor cores (heads or dims its kernel does not take fall
    // back to the exact paths): only then are these fp8 figures.
    if (fp8_engine->inexact_scores()) {
      c.fp8_score_ms = f8.token_scores;
      c.fp8_topk_ms = f8.topk;
      c.fp8_hisa_ms = hisa_kernels(median_stages(*fp8_engine, batch, Method::Hisa, c.repeat));
    }
  }
  return c;
}

}  // namespace

CudaBenchResult run_cuda_bench(const CudaBenchOptions& o, const std::function<void(const CudaBenchResult&)>& on_case) {
  const cuda::DeviceInfo device = bench_device();
  for (const auto& list : {o.keys, o.prefill}) {
    for (int64_t L : list) {
      if (L < 2 || L >= (int64_t(1) << 31)) throw OptionError("keys", "{keys}: every L must be in [2, 2^31)");
    }
  }
  for (int64_t k : o.compressed_topk) {
    if (k < 1 || k > kMaxSelectionSize) throw OptionError("compressed_topk", "{compressed_topk}: every k must be in [1, 2^24]");
  }
  // The figures are tensor-core rates; wider heads would silently take the fp32 path.
  if (cuda::round_up(o.dim, 16) > cuda::kMaxTensorCoreDim) {
    throw OptionError("dim", "{dim} must be at most " + std::to_string(cuda::kMaxTensorCoreDim) + " for the tensor-core path");
  }
  bench_config(o.topk, o.block_size, o.blocks);  // a bad B or m fails before any case runs
  CudaBenchResult r;
  r.gpu = device.name;
  r.multiprocessors = device.multiprocessors;
  r.memory_gib = double(device.total_memory) / double(1 << 30);
  r.peaks = device_peaks(device);
  auto engine = make_cuda_engine(device.index);
  HISA_CUDA_CHECK(cudaSetDevice(device.index));
  std::unique_ptr<SelectionEngine> fp8_engine;
  if (cuda::fp8_mma_available(device.index)) fp8_engine = make_cuda_engine(device.index, 0, true);
  for (const bool prefill : {false, true}) {
    for (int64_t L : prefill ? o.prefill : o.keys) {
      r.cases.push_back(run_case(*engine, fp8_engine.get(), o, L, prefill));
      if (on_case) on_case(r);
    }
  }
  for (int64_t k : o.compressed_topk) {
    r.cases.push_back(run_case(*engine, fp8_engine.get(), o, o.compressed_tokens / o.compress_ratio, false, k));
    if (on_case) on_case(r);
  }
  return r;
}

SelectionTimeGrid time_selection_grid(const SelectionTimeShape& o, const std::vector<int64_t>& block_sizes,
                                      const std::vector<int64_t>& blocks, int device, bool fp8_mma) {
  SelectionTimeGrid g;
  cuda::require_device(device);
  for (const auto& d : cuda::list_devices()) {
    if (d.index == device) g.gpu = d.name;
  }
  g.keys = o.keys, g.heads = o.heads, g.dim = o.dim, g.queries = o.queries, g.topk = std::min(o.topk, g.keys);
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
        const StageTimes f = median_stages(*engine, batch, Method::Flat, o.repeat);
        g.flat_kernels_us = (f.token_scores + f.topk) * per_query;
      }
      kernels.push_back(hisa_kernels(median_stages(*engine, batch, Method::Hisa, o.repeat)) * per_query);
    }
    g.hisa_kernels_us.push_back(kernels);
  }
  return g;
}

}  // namespace hisa
