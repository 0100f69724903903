// `hisa bench --device cuda` (report/cuda_bench.hpp): times the selection kernels with CUDA events and the
// engine's select() with the host clock, on one random layer whose values are bf16 (so the tensor-core
// path runs, as for bf16 and fp8 dumps).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "core/error.hpp"
#include "core/numeric.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/cuda_engine.hpp"
#include "cuda/device_buffer.hpp"
#include "cuda/cuda_scoring.hpp"
#include "cuda/device_info.hpp"
#include "cuda/kernels.hpp"
#include "report/cuda_bench.hpp"
#include "select/blocks.hpp"

namespace hisa {

namespace {

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Median over `repeat` runs of f, timed with CUDA events on the stream, after two warm-up runs.
double time_gpu(int repeat, cudaStream_t s, const std::function<void()>& f) {
  for (int i = 0; i < 2; ++i) f();
  cuda::Event start, stop;
  std::vector<double> ms;
  for (int i = 0; i < repeat; ++i) {
    start.record(s);
    f();
    stop.record(s);
    ms.push_back(stop.since(start));
  }
  return median(ms);
}

std::vector<uint16_t> bf16_codes(const float* v, int64_t rows, int64_t dim, int64_t padded_dim) {
  std::vector<uint16_t> out(size_t(rows * padded_dim), 0);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t d = 0; d < dim; ++d) out[size_t(r * padded_dim + d)] = float_to_bf16(v[r * dim + d]);
  }
  return out;
}

// One layer with bf16 values: keys, queries (all at the last position, k_start = 0), weights of both signs.
void random_bf16_layer(const CudaBenchOptions& o, LayerKeys& keys, QueryBatch& batch) {
  const int64_t L = o.keys, H = o.heads, D = o.dim, N = o.queries;
  std::mt19937_64 rng(o.seed);
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  auto bf16 = [&] { return round_to(ElementType::BF16, gauss(rng)); };
  keys.count = L;
  keys.dim = D;
  keys.k.resize(size_t(L * D));
  for (auto& v : keys.k) v = bf16();
  keys.k_scale.assign(size_t(L), 1.0f);
  batch.count = N;
  batch.heads = H;
  batch.dim = D;
  batch.q.resize(size_t(N * H * D));
  for (auto& v : batch.q) v = bf16();
  batch.w.resize(size_t(N * H));
  for (auto& v : batch.w) v = gauss(rng) / std::sqrt(float(H));
  batch.q_pos.assign(size_t(N), L - 1);
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

// The first device this build's kernels run on, and its name; UsageError when there is none.
int bench_device(std::string& gpu) {
  std::string why = "no GPU found";
  for (const auto& d : cuda::list_devices()) {
    const std::string problem = cuda::kernel_image_problem(d.index);
    if (problem.empty()) {
      gpu = d.name;
      return d.index;
    }
    why = "the kernels cannot run on " + d.name + ": " + problem;
  }
  throw UsageError("--device cuda: " + why);
}

}  // namespace

CudaBenchResult run_cuda_bench(const CudaBenchOptions& o) {
  std::string gpu;
  const int device = bench_device(gpu);
  if (o.keys >= (int64_t(1) << 31) || o.topk >= o.keys) throw UsageError("bench: need topk < keys < 2^31");
  HISA_CUDA_CHECK(cudaSetDevice(device));
  cuda::Stream stream;
  const cudaStream_t s = stream.get();

  const int64_t L = o.keys, H = o.heads, D = o.dim, N = o.queries, B = o.block_size;
  LayerKeys keys;
  QueryBatch batch;
  random_bf16_layer(o, keys, batch);
  CudaBenchResult r;
  r.gpu = gpu;
  r.flops = 2.0 * double(N) * double(H) * double(D) * double(L);
  r.score_bytes = double(N) * double(L) * 4.0;

  const int64_t Hp = round_up(H, 8), Dp = round_up(D, 16);
  if (Dp > cuda::kMaxTensorCoreDim) throw UsageError("bench: --dim must be at most 128 for the tensor-core path");
  std::vector<float> wpad(size_t(N * Hp), 0.0f);
  for (int64_t i = 0; i < N; ++i) std::copy_n(batch.w_row(i), H, wpad.begin() + i * Hp);
  std::vector<uint16_t> q16(size_t(N * Hp * Dp), 0);
  for (int64_t i = 0; i < N; ++i) {
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t d = 0; d < D; ++d) q16[size_t((i * Hp + h) * Dp + d)] = float_to_bf16(batch.q_row(i, h)[d]);
    }
  }
  const std::vector<uint16_t> k16 = bf16_codes(keys.k.data(), L, D, Dp);
  const std::vector<int> lo(size_t(N), 0), hi(size_t(N), int(L - 1));

  cuda::DeviceArray<uint16_t> dk16, dq16;
  cuda::DeviceArray<float> dk32, dq32, dw32, dwpad, dscale, scores;
  cuda::DeviceArray<int> dlo, dhi;
  dk16.upload(k16.data(), k16.size(), s);
  dq16.upload(q16.data(), q16.size(), s);
  dk32.upload(keys.k.data(), keys.k.size(), s);
  dq32.upload(batch.q.data(), batch.q.size(), s);
  dw32.upload(batch.w.data(), batch.w.size(), s);
  dwpad.upload(wpad.data(), wpad.size(), s);
  dscale.upload(keys.k_scale.data(), keys.k_scale.size(), s);
  dlo.upload(lo.data(), lo.size(), s);
  dhi.upload(hi.data(), hi.size(), s);
  scores.resize(size_t(N * L));

  cuda::ScoreLaunch flat;
  flat.type = cuda::ValueType::BF16;
  flat.keys = dk16.data();
  flat.scales = dscale.data();
  flat.key_count = int(L);
  flat.q = dq16.data();
  flat.w = dwpad.data();
  flat.queries = int(N);
  flat.heads = int(Hp);
  flat.dim = int(Dp);
  flat.lo = dlo.data();
  flat.hi = dhi.data();
  flat.range_lo = 0;
  flat.range_hi = int(L - 1);
  flat.unit_base = 0;
  flat.out = scores.data();
  flat.out_stride = L;
  flat.out_base = 0;
  cuda::ScoreLaunch flat32 = flat;
  flat32.type = cuda::ValueType::F32;
  flat32.keys = dk32.data();
  flat32.q = dq32.data();
  flat32.w = dw32.data();
  flat32.heads = int(H);
  flat32.dim = int(D);
  r.score_f32_ms = time_gpu(std::max(1, o.repeat / 4), s, [&] { cuda::launch_score(flat32, s); });
  r.score_mma_ms = time_gpu(o.repeat, s, [&] { cuda::launch_score(flat, s); });

  // Top-k over the full rows that the tensor-core pass left in `scores`.
  std::vector<int> segs, offs{0};
  for (int64_t i = 0; i < N; ++i) {
    segs.push_back(0);
    segs.push_back(int(L - 1));
    offs.push_back(int(i + 1));
  }
  cuda::DeviceArray<int> dsegs, doffs, pos, cnt;
  cuda::DeviceArray<float> pos_score;
  dsegs.upload(segs.data(), segs.size(), s);
  doffs.upload(offs.data(), offs.size(), s);
  pos.resize(size_t(N * o.topk));
  pos_score.resize(size_t(N * o.topk));
  cnt.resize(size_t(N));
  cuda::TopkLaunch topk;
  topk.scores = scores.data();
  topk.stride = L;
  topk.base = 0;
  topk.segments = dsegs.data();
  topk.seg_offsets = doffs.data();
  topk.rows = int(N);
  topk.k = int(o.topk);
  topk.out_pos = pos.data();
  topk.out_score = pos_score.data();
  topk.out_count = cnt.data();
  r.topk_ms = time_gpu(o.repeat, s, [&] { cuda::launch_topk(topk, s); });

  // Flat and HISA through the engine, as `hisa audit`/`select` use it: per-stage times from the engine
  // (CUDA events for kernels, host clock for the host block stage and the whole call), medians over repeats.
  SelectionConfig config;
  config.topk = o.topk;
  config.block_size = B;
  config.blocks = o.blocks;
  config.validate();
  auto engine = make_cuda_engine(device);
  engine->set_layer(keys, config);
  const cuda::StageTimes flat_t = median_stages(*engine, batch, Method::Flat, o.repeat),
                         hisa_t = median_stages(*engine, batch, Method::Hisa, o.repeat);
  r.engine_flat_ms = flat_t.total_ms;
  r.engine_flat_gpu_ms = flat_t.token_scores_ms + flat_t.topk_ms;
  r.engine_hisa_ms = hisa_t.total_ms;
  r.hisa_blocks_ms = hisa_t.block_scores_ms;
  r.hisa_host_ms = hisa_t.block_stage_ms;
  r.hisa_score_ms = hisa_t.token_scores_ms;
  r.hisa_topk_ms = hisa_t.topk_ms;
  return r;
}

SelectionTimeGrid time_selection_grid(const CudaBenchOptions& o, const std::vector<int64_t>& block_sizes,
                                      const std::vector<int64_t>& blocks, int device) {
  SelectionTimeGrid g;
  cuda::require_device(device);
  for (const auto& d : cuda::list_devices()) {
    if (d.index == device) g.gpu = d.name;
  }
  g.keys = o.keys, g.heads = o.heads, g.dim = o.dim, g.queries = o.queries, g.topk = std::min(o.topk, o.keys);
  g.block_sizes = block_sizes;
  g.blocks = blocks;
  LayerKeys keys;
  QueryBatch batch;
  random_bf16_layer(o, keys, batch);
  auto engine = make_cuda_engine(device);
  const double per_query = 1e3 / double(o.queries);  // ms per batch -> µs per query
  for (int64_t B : block_sizes) {
    std::vector<double> kernels, host;
    for (int64_t m : blocks) {
      SelectionConfig c;
      c.topk = g.topk;
      c.block_size = B;
      c.blocks = m;
      engine->set_layer(keys, c);
      if (g.flat_kernels_us == 0) {
        const cuda::StageTimes f = median_stages(*engine, batch, Method::Flat, o.repeat);
        g.flat_kernels_us = (f.token_scores_ms + f.topk_ms) * per_query;
      }
      const cuda::StageTimes h = median_stages(*engine, batch, Method::Hisa, o.repeat);
      kernels.push_back((h.block_scores_ms + h.token_scores_ms + h.topk_ms) * per_query);
      host.push_back(h.block_stage_ms * per_query);
    }
    g.hisa_kernels_us.push_back(kernels);
    g.hisa_host_us.push_back(host);
  }
  return g;
}

}  // namespace hisa
