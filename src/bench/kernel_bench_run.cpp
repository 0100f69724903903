// `hisa bench --device cuda --kernel NAME` (bench/kernel_bench.hpp): one kernel family launched alone, through its
// launcher in cuda/kernels.hpp (the scoring kernel as the engine would choose it, cuda_scoring.hpp), on random
// device data, timed by CUDA events.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <functional>
#include <numeric>

#include "bench/gpu_bench_util.hpp"
#include "bench/kernel_bench.hpp"
#include "core/error.hpp"
#include "cuda/block_choice.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/cuda_scoring.hpp"
#include "cuda/device_buffer.hpp"
#include "cuda/kernels.hpp"
#include "cuda/operands.hpp"

namespace hisa {

namespace {

using namespace bench;
using cuda::DeviceArray;

// Median ms of `launch` over `repeat` runs after two warm-ups, each run between two events on the stream.
double median_ms(int repeat, const std::function<void()>& launch, cudaStream_t s) {
  for (int i = 0; i < 2; ++i) launch();
  std::vector<double> ms;
  cuda::Event start, stop;
  for (int i = 0; i < repeat; ++i) {
    start.record(s);
    launch();
    stop.record(s);
    ms.push_back(stop.since(start));
  }
  return median(ms);
}

template <typename T>
DeviceArray<T> upload(const std::vector<T>& v, cudaStream_t s) {
  DeviceArray<T> d;
  d.upload(v.data(), v.size(), s);
  return d;
}

// n values rounded to the element type of --dtype.
std::vector<float> random_values(size_t n, uint64_t seed, uint64_t stream, const std::string& dtype) {
  std::vector<float> v = random_normal(n, seed, stream, 1.0f, false);
  if (dtype == "fp8") round_to_e4m3(v);
  if (dtype == "bf16" || dtype == "f16") {
    const ElementType t = dtype == "bf16" ? ElementType::BF16 : ElementType::F16;
    for (auto& x : v) x = round_to(t, x);
  }
  return v;
}

// Row r's segments: [0, L - 1].
void whole_rows(int64_t rows, int64_t L, DeviceArray<int>& segs, DeviceArray<int>& offs, cudaStream_t s) {
  std::vector<int> sg, of{0};
  for (int64_t r = 0; r < rows; ++r) sg.push_back(0), sg.push_back(int(L - 1)), of.push_back(int(r + 1));
  segs.upload(sg.data(), sg.size(), s);
  offs.upload(of.data(), of.size(), s);
}

KernelBenchRow bench_score(const KernelBenchOptions& o, int64_t L, int device, cudaStream_t s) {
  const int64_t N = o.queries, H = o.heads, D = o.dim;
  const std::vector<float> keys = random_values(size_t(L * D), o.seed, 0, o.dtype);
  const std::vector<float> unit_scales(size_t(L), 1.0f);
  QueryBatch batch;
  batch.count = N, batch.heads = H, batch.dim = D;
  batch.q = random_values(size_t(N * H * D), o.seed, 1, o.dtype);
  batch.w = random_normal(size_t(N * H), o.seed, 2, 1.0f, false);
  // The engine's own operand forms (operands.hpp): the same codes, padding and split parts it scores.
  cuda::KeyStore key_store;
  cuda::QueryStore queries;
  key_store.reset(keys.data(), unit_scales.data(), L, D, "keys", s);
  queries.reset(batch, s);
  const cuda::KernelChoice choice =
      cuda::choose_score_kernel(key_store.exact(), queries.exact(), H, D, o.dtype == "fp8", cuda::score_device(device));
  const bool want_fp8 = o.dtype == "fp8", got_fp8 = choice.type == cuda::ValueType::E4M3;
  if (want_fp8 != got_fp8) throw OptionError("dtype", "{dtype} fp8: no fp8 tensor-core kernel for this GPU and shape");
  cuda::ScoreLaunch a = cuda::operands_for(choice, key_store, queries, batch, 0, N, s);
  const DeviceArray<int> lo = upload(std::vector<int>(size_t(N), 0), s), hi = upload(std::vector<int>(size_t(N), int(L - 1)), s);
  DeviceArray<float> out;
  const int64_t stride = cuda::round_up(L, 32);
  out.resize(size_t(N * stride));
  a.key_count = int(L);
  a.queries = int(N);
  a.lo = lo.data(), a.hi = hi.data();
  a.range_lo = 0, a.range_hi = int(L - 1);
  a.unit_base = cuda::mask_unit_base(0);
  a.out = out.data(), a.out_stride = stride, a.out_base = 0;
  KernelBenchRow row;
  row.keys = L;
  row.ran = std::string(cuda::score_kernel_name(a.kernel)) + " on " + cuda::value_type_name(a.type) + ", " +
            std::to_string(choice.tile_keys()) + "-key tiles";
  row.ms = median_ms(o.repeat, [&] { cuda::launch_score(a, s); }, s);
  row.rate = 2.0 * double(N) * double(H) * double(D) * double(L) / (row.ms * 1e-3) * 1e-12;
  return row;
}

KernelBenchRow bench_topk(const KernelBenchOptions& o, int64_t L, cudaStream_t s) {
  const int64_t N = o.queries, k = std::min(o.topk, L);
  const DeviceArray<float> scores = upload(random_normal(size_t(N * L), o.seed, 3, 1.0f, false), s);
  DeviceArray<int> segs, offs, pos, count;
  DeviceArray<float> top;
  whole_rows(N, L, segs, offs, s);
  pos.resize(size_t(N * k)), top.resize(size_t(N * k)), count.resize(size_t(N));
  cuda::TopkLaunch t;
  t.scores = scores.data(), t.stride = L, t.base = 0;
  t.segments = segs.data(), t.seg_offsets = offs.data(), t.rows = int(N), t.k = int(k);
  t.out_pos = pos.data(), t.out_score = top.data(), t.out_count = count.data();
  KernelBenchRow row;
  row.keys = L;
  row.ran = "exact top-" + std::to_string(k) + " (radix select, lower position wins ties)";
  row.ms = median_ms(o.repeat, [&] { cuda::launch_topk(t, s); }, s);
  row.rate = 4.0 * double(N) * double(L) / (row.ms * 1e-3) * 1e-9;
  return row;
}

KernelBenchRow bench_choice(const KernelBenchOptions& o, int64_t L, cudaStream_t s) {
  const int64_t N = o.queries, B = o.block_size, nb = (L + B - 1) / B, m = std::min(o.blocks, nb);
  const DeviceArray<float> j = upload(random_normal(size_t(N * nb), o.seed, 4, 1.0f, false), s);
  const DeviceArray<int> first = upload(std::vector<int>(size_t(N), 0), s),
                         last = upload(std::vector<int>(size_t(N), int(nb - 1)), s),
                         lo = upload(std::vector<int>(size_t(N), 0), s),
                         hi = upload(std::vector<int>(size_t(N), int(L - 1)), s);
  cuda::BlockChoice choice;
  const cuda::BlockRows rows{j.data(), nb, 0, first.data(), last.data(), int(N)};
  KernelBenchRow row;
  row.keys = L;
  row.ran = "keep " + std::to_string(m) + " of " + std::to_string(nb) + " blocks, then the token stage's segments and "
            "work lists (128-key tiles)";
  row.ms = median_ms(o.repeat, [&] {
    choice.keep(rows, int(m), false, s);
    choice.token_work(lo.data(), hi.data(), B, 0, int(L - 1), 128, s);
  }, s);
  row.rate = 4.0 * double(N) * double(nb) / (row.ms * 1e-3) * 1e-9;
  return row;
}

KernelBenchRow bench_masses(const KernelBenchOptions& o, int64_t L, cudaStream_t s) {
  const int64_t N = o.queries, k = std::min(o.topk, L), B = o.block_size, nb = (L + B - 1) / B;
  const DeviceArray<float> scores = upload(random_normal(size_t(N * L), o.seed, 5, 1.0f, false), s);
  // DSA's and HISA's lists: k positions spread over the row; block-sparse: the first min(m, nb) blocks.
  std::vector<int> list(size_t(N * k));
  for (int64_t i = 0; i < N * k; ++i) list[size_t(i)] = int((i % k) * (L / k));
  const DeviceArray<int> a_pos = upload(list, s), counts = upload(std::vector<int>(size_t(N), int(k)), s);
  std::vector<int> sg, of{0};
  for (int64_t r = 0; r < N; ++r) sg.push_back(0), sg.push_back(int(std::min(L, o.blocks * B) - 1)), of.push_back(int(r + 1));
  const DeviceArray<int> segs = upload(sg, s), offs = upload(of, s), lo = upload(std::vector<int>(size_t(N), 0), s),
                         hi = upload(std::vector<int>(size_t(N), int(L - 1)), s);
  DeviceArray<float> row_max, best;
  DeviceArray<double> mass;
  row_max.resize(size_t(N)), mass.resize(size_t(N * 4)), best.resize(size_t(N * nb));
  cuda::MassLaunch m;
  m.scores = scores.data(), m.stride = L, m.base = 0, m.lo = lo.data(), m.hi = hi.data(), m.rows = int(N);
  m.a_pos = a_pos.data(), m.a_count = counts.data(), m.b_pos = a_pos.data(), m.b_count = counts.data(), m.width = int(k);
  m.c_segments = segs.data(), m.c_offsets = offs.data(), m.out_max = row_max.data(), m.out_mass = mass.data();
  cuda::BlockMaxLaunch bm;
  bm.scores = scores.data(), bm.stride = L, bm.base = 0, bm.lo = lo.data(), bm.hi = hi.data(), bm.rows = int(N);
  bm.block_size = int(B), bm.max_blocks = int(nb), bm.out = best.data();
  KernelBenchRow row;
  row.keys = L;
  row.ran = "softmax masses (visible, DSA, HISA, block-sparse) and per-block best scores";
  row.ms = median_ms(o.repeat, [&] {
    cuda::launch_masses(m, s);
    cuda::launch_block_max(bm, s);
  }, s);
  row.rate = 4.0 * double(N) * double(L) / (row.ms * 1e-3) * 1e-9;
  return row;
}

}  // namespace

KernelBenchResult run_kernel_bench(const KernelBenchOptions& o, const std::function<void(const KernelBenchResult&)>& on_row) {
  const auto& kernels = kernel_bench_kernels();
  const auto& dtypes = kernel_bench_dtypes();
  if (std::find(kernels.begin(), kernels.end(), o.kernel) == kernels.end()) {
    throw OptionError("kernel", "{kernel} must be score, topk, choice or masses (got \"" + o.kernel + "\")");
  }
  if (std::find(dtypes.begin(), dtypes.end(), o.dtype) == dtypes.end()) {
    throw OptionError("dtype", "{dtype} must be bf16, f16, fp32 or fp8 (got \"" + o.dtype + "\")");
  }
  for (int64_t L : o.keys) {
    if (L < 2 || L >= (int64_t(1) << 31)) throw OptionError("keys", "{keys}: every L must be in [2, 2^31)");
  }
  const cuda::DeviceInfo device = bench_device();
  HISA_CUDA_CHECK(cudaSetDevice(device.index));
  cuda::Stream stream;
  KernelBenchResult r;
  r.gpu = device.name;
  r.peaks = device_peaks(device);
  for (int64_t L : o.keys) {
    KernelBenchRow row;
    if (o.kernel == "score") row = bench_score(o, L, device.index, stream.get());
    if (o.kernel == "topk") row = bench_topk(o, L, stream.get());
    if (o.kernel == "choice") row = bench_choice(o, L, stream.get());
    if (o.kernel == "masses") row = bench_masses(o, L, stream.get());
    const double peak = o.kernel != "score"  ? r.peaks.hbm_gbs
                        : o.dtype == "fp8"   ? r.peaks.fp8_tflops
                        : o.dtype == "fp32"  ? 0.0
                                             : r.peaks.bf16_tflops;
    row.percent_of_peak = peak > 0 ? 100.0 * row.rate / peak : 0;
    r.rows.push_back(row);
    if (on_row) on_row(r);
  }
  return r;
}

}  // namespace hisa
