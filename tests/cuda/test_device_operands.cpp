// Operands that live on the GPU (cuda/device_operands.hpp, cuda/device_layer.hpp): each conversion, check,
// encoding and the pooling give the host code's bits, and the CUDA engine selects from a layer on the GPU exactly
// what it selects from the same layer in host memory (and what the CPU engine selects).
#include <cuda_runtime_api.h>

#include <bit>
#include <cmath>
#include <span>
#include <tuple>
#include <cstring>
#include <random>
#include <stdexcept>

#include "cuda/device_buffer.hpp"
#include "cuda/device_layer.hpp"
#include "cuda/device_operands.hpp"
#include "cuda/operands.hpp"
#include "gpu_test_util.hpp"
#include "io/query_subset.hpp"
#include "io/tensor_check.hpp"
#include "pipelines/live_audit.hpp"
#include "pipelines/report.hpp"
#include "pipelines/select.hpp"
#include "render/audit_output.hpp"

namespace hisa {
namespace {

using gpu_test::gpu_device;

template <typename T>
cuda::DeviceArray<T> on_gpu(const std::vector<T>& v) {
  cuda::DeviceArray<T> d;
  d.upload(v.data(), v.size(), nullptr);
  HISA_CUDA_CHECK(cudaDeviceSynchronize());
  return d;
}

template <typename T>
std::vector<T> to_host(const cuda::DeviceArray<T>& d) {
  std::vector<T> v(d.size());
  d.download(v.data(), v.size(), nullptr);
  HISA_CUDA_CHECK(cudaDeviceSynchronize());
  return v;
}

std::vector<uint32_t> bits(const std::vector<float>& v) {
  std::vector<uint32_t> b(v.size());
  std::memcpy(b.data(), v.data(), v.size() * sizeof(float));
  return b;
}

// Values that exercise every rounding path: each code of every 16- and 8-bit type, subnormals, halfway cases,
// overflow, signed zeros and the splittable range's edges.
std::vector<float> awkward_values() {
  std::vector<float> v;
  for (uint32_t c = 0; c < 65536; ++c) {
    v.push_back(f16_to_float(uint16_t(c)));
    v.push_back(bf16_to_float(uint16_t(c)));
  }
  for (uint32_t c = 0; c < 256; ++c) v.push_back(e4m3_to_float(uint8_t(c)));
  std::mt19937 rng(7);
  std::uniform_int_distribution<uint32_t> any;
  for (int i = 0; i < 200000; ++i) v.push_back(std::bit_cast<float>(any(rng)));
  for (float x : {0.0f, -0.0f, 1e-30f, -1e-30f, 9.9e-31f, 3.0e38f, 3.1e38f, 448.0f, 464.0f, 65504.0f, 65520.0f, 1e-45f}) {
    v.push_back(x);
  }
  // Halfway between neighbouring f16, bf16 and e4m3 values.
  for (float base : {1.0f, 3.0f, 0.015625f, 300.0f}) {
    v.push_back(base * (1.0f + 1.0f / 2048.0f));
    v.push_back(base * (1.0f + 1.0f / 256.0f));
    v.push_back(base * (1.0f + 1.0f / 16.0f));
  }
  return v;
}

TEST(DeviceOperands, DecodingGivesTheHostsValues) {
  REQUIRE_GPU();
  std::vector<uint16_t> codes16(65536);
  for (uint32_t c = 0; c < 65536; ++c) codes16[c] = uint16_t(c);
  std::vector<uint8_t> codes8(256);
  for (uint32_t c = 0; c < 256; ++c) codes8[c] = uint8_t(c);
  auto d16 = on_gpu(codes16);
  auto d8 = on_gpu(codes8);
  cuda::DeviceArray<float> out;
  out.resize(65536);
  for (auto [type, host] : {std::pair{cuda::DeviceCodes::F16, &f16_to_float}, std::pair{cuda::DeviceCodes::BF16, &bf16_to_float}}) {
    cuda::decode_on_device(d16.data(), type, 65536, out.data(), nullptr);
    const std::vector<float> got = to_host(out);
    std::vector<float> want(65536);
    for (uint32_t c = 0; c < 65536; ++c) want[c] = host(uint16_t(c));
    EXPECT_EQ(bits(got), bits(want));
  }
  out.resize(256);
  cuda::decode_on_device(d8.data(), cuda::DeviceCodes::E4M3, 256, out.data(), nullptr);
  std::vector<float> want(256);
  for (uint32_t c = 0; c < 256; ++c) want[c] = e4m3_to_float(uint8_t(c));
  EXPECT_EQ(bits(to_host(out)), bits(want));
}

TEST(DeviceOperands, ExactnessAndEncodingsGiveTheHostsAnswers) {
  REQUIRE_GPU();
  const std::vector<float> all = awkward_values();
  // Sets on which each question has each answer: all values, and the values each type holds exactly.
  std::vector<std::vector<float>> sets = {all, {}, {}, {}, {}};
  for (float x : all) {
    if (!std::isfinite(x)) continue;
    if (round_to(ElementType::BF16, x) == x) sets[1].push_back(x);
    if (round_to(ElementType::F16, x) == x) sets[2].push_back(x);
    if (round_to(ElementType::FP8_E4M3, x) == x) sets[3].push_back(x);
    if (cuda::Exactness::splits_exactly(x)) sets[4].push_back(x);
  }
  for (auto& set : sets) {
    while (set.size() % 48 != 0) set.push_back(0.0f);  // whole rows of 48 values (D = 48 pads to 64)
    cuda::Exactness host;
    host.reset(set.data(), set.size());
    auto d = on_gpu(set);
    const cuda::ExactnessFlags got = cuda::exactness_on_device(d.data(), int64_t(set.size()), nullptr);
    EXPECT_EQ(got.bf16, host.bf16());
    EXPECT_EQ(got.f16, host.f16());
    EXPECT_EQ(got.e4m3, host.e4m3());
    EXPECT_EQ(got.splittable, host.splittable());
    // Each form the kernels take, as keys (one row per row) and as queries (3 heads padded to 8).
    const int64_t dim = 48, rows = int64_t(set.size()) / dim;
    for (cuda::ValueType t : {cuda::ValueType::BF16, cuda::ValueType::F16, cuda::ValueType::BF16x3, cuda::ValueType::E4M3}) {
      const bool takes = t == cuda::ValueType::BF16 ? host.bf16() : t == cuda::ValueType::F16 ? host.f16()
                         : t == cuda::ValueType::E4M3 ? host.e4m3() : host.splittable();
      if (!takes) continue;  // the engine encodes only values the form holds (or splits) exactly
      for (int64_t heads : {int64_t(1), int64_t(3)}) {
        const int64_t padded = heads == 1 ? 1 : 8, out_rows = rows / heads * padded, cd = cuda::coded_dim(t, dim);
        std::vector<uint16_t> want(size_t(out_rows * cd), 0);
        for (int64_t r = 0; r < out_rows; ++r) {
          if (r % padded < heads) cuda::encode_row(t, set.data() + ((r / padded) * heads + r % padded) * dim, dim, want.data() + r * cd);
        }
        cuda::DeviceArray<uint16_t> codes;
        codes.resize(want.size());
        cuda::encode_rows_on_device(t, d.data(), out_rows, dim, heads, padded, codes.data(), nullptr);
        EXPECT_EQ(to_host(codes), want) << cuda::value_type_name(t) << " heads " << heads;
      }
    }
  }
}

// Value by value, each question's answer for one value alone: the set-wide answers above could agree for
// the wrong reasons.
TEST(DeviceOperands, ExactnessOfEachAwkwardValue) {
  REQUIRE_GPU();
  std::vector<float> values;
  for (float x : {1e-30f, 9.99e-31f, -1e-30f, 3.0e38f, 3.0001e38f, 448.0f, 464.0f, 480.0f, 65504.0f, 65520.0f,
                  5.9604645e-08f, 2.9802322e-08f, 1.9073486e-06f, 0.001953125f, 0.0009765625f, 1.0f + 1.0f / 1024.0f,
                  1.0f + 1.0f / 2048.0f, 1.0f + 1.0f / 128.0f, 1.0f + 1.0f / 256.0f, 1.0f / 3.0f, -0.0f, 0.0f}) {
    values.push_back(x);
  }
  for (uint32_t c = 0; c < 256; ++c) values.push_back(e4m3_to_float(uint8_t(c)) * 1.0000001f);
  auto d = on_gpu(values);
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) continue;
    cuda::Exactness host;
    host.reset(&values[i], 1);
    const cuda::ExactnessFlags got = cuda::exactness_on_device(d.data() + i, 1, nullptr);
    EXPECT_EQ(got.bf16, host.bf16()) << values[i];
    EXPECT_EQ(got.f16, host.f16()) << values[i];
    EXPECT_EQ(got.e4m3, host.e4m3()) << values[i];
    EXPECT_EQ(got.splittable, host.splittable()) << values[i];
  }
}

TEST(DeviceOperands, PoolingGivesPoolKeysBitForBit) {
  REQUIRE_GPU();
  for (int64_t B : {1, 7, 64, 128}) {
    for (PoolPrecision precision : {PoolPrecision::Fp32, PoolPrecision::Fp8}) {
      test::LayerSpec spec;
      spec.keys = 1000;
      spec.dim = 64;
      spec.integer = false;
      spec.scales = true;
      spec.seed = uint64_t(B);
      const test::Layer l = test::random_layer(spec);
      const PooledKeys want = pool_keys(l.keys, B, precision);
      auto k = on_gpu(l.keys.k);
      auto scale = on_gpu(l.keys.k_scale);
      PooledKeys got;
      got.block_size = B, got.dim = spec.dim, got.count = want.count;
      cuda::DeviceArray<float> means;
      means.resize(size_t(got.count * got.dim));
      cuda::pool_means_on_device(k.data(), scale.data(), spec.keys, spec.dim, B, means.data(), nullptr);
      got.k = to_host(means);
      finish_pooling(got, precision);
      EXPECT_EQ(bits(got.k), bits(want.k)) << "B " << B;
      EXPECT_EQ(bits(got.scale), bits(want.scale)) << "B " << B;
    }
  }
}

TEST(DeviceOperands, TheFirstBadValueIsFound) {
  REQUIRE_GPU();
  std::vector<float> v(100000, 1.0f);
  auto d = on_gpu(v);
  EXPECT_EQ(cuda::first_nonfinite_on_device(d.data(), int64_t(v.size()), nullptr).index, -1);
  EXPECT_EQ(cuda::first_bad_scale_on_device(d.data(), int64_t(v.size()), nullptr).index, -1);
  v[77777] = std::numeric_limits<float>::infinity();
  v[99999] = std::nanf("");
  v[5000] = -2.0f;  // a bad scale, a finite value
  d = on_gpu(v);
  const cuda::FirstBad nonfinite = cuda::first_nonfinite_on_device(d.data(), int64_t(v.size()), nullptr);
  EXPECT_EQ(nonfinite.index, 77777);
  EXPECT_EQ(nonfinite.value, std::numeric_limits<float>::infinity());
  const cuda::FirstBad scale = cuda::first_bad_scale_on_device(d.data(), int64_t(v.size()), nullptr);
  EXPECT_EQ(scale.index, 5000);
  EXPECT_EQ(scale.value, -2.0f);
}

const CheckFailure kThrow = [](const std::string& dataset, const std::string& message) {
  throw std::invalid_argument(dataset + ": " + message);
};

// The layer's q and k as `codes` on the GPU (their values are exact in that type), w and k_scale as float32.
struct GpuLayer {
  cuda::DeviceArray<float> q32, k32, w, k_scale;
  cuda::DeviceArray<uint16_t> q16, k16;
  cuda::DeviceArray<uint8_t> q8, k8;
  std::unique_ptr<cuda::DeviceLayer> layer;

  GpuLayer(const test::Layer& l, cuda::DeviceCodes codes, int64_t compress_ratio = 1,
           std::vector<int64_t> token_pos = {}) {
    auto operand = [&](const std::vector<float>& v, cuda::DeviceArray<float>& f32, cuda::DeviceArray<uint16_t>& c16,
                       cuda::DeviceArray<uint8_t>& c8) -> cuda::DeviceOperand {
      if (codes == cuda::DeviceCodes::F32) {
        f32 = on_gpu(v);
        return {f32.data(), codes};
      }
      if (codes == cuda::DeviceCodes::E4M3) {
        std::vector<uint8_t> c(v.size());
        for (size_t i = 0; i < v.size(); ++i) c[i] = float_to_e4m3(v[i]);
        c8 = on_gpu(c);
        return {c8.data(), codes};
      }
      std::vector<uint16_t> c(v.size());
      for (size_t i = 0; i < v.size(); ++i) c[i] = codes == cuda::DeviceCodes::F16 ? float_to_f16(v[i]) : float_to_bf16(v[i]);
      c16 = on_gpu(c);
      return {c16.data(), codes};
    };
    const cuda::DeviceOperand q = operand(l.batch.q, q32, q16, q8), k = operand(l.keys.k, k32, k16, k8);
    w = on_gpu(l.batch.w);
    k_scale = on_gpu(l.keys.k_scale);
    const cuda::DeviceLayerShape shape{l.batch.count, l.batch.heads, l.batch.dim, l.keys.count, compress_ratio};
    layer = std::make_unique<cuda::DeviceLayer>(gpu_device(), shape, q, k, w.data(), k_scale.data(),
                                                token_pos.empty() ? l.batch.q_pos : token_pos, l.batch.k_start, kThrow);
  }
};

// Block sizes below and above a tile, both forced modes, both pooling precisions.
std::vector<SelectionConfig> device_configs() {
  std::vector<SelectionConfig> out;
  for (int64_t B : {16, 64}) {
    for (ForcedMode f : {ForcedMode::InBudget, ForcedMode::Extra}) {
      for (PoolPrecision p : {PoolPrecision::Fp32, PoolPrecision::Fp8}) {
        SelectionConfig c;
        c.topk = 64;
        c.block_size = B;
        c.blocks = 6;
        c.forced = f;
        c.pool = p;
        out.push_back(c);
      }
    }
  }
  return out;
}

// The host-memory layer's selections by `engine`, as select() makes them.
std::vector<std::vector<int64_t>> host_selections(SelectionEngine& engine, const LayerKeys& keys, const QueryBatch& b,
                                                  const SelectionConfig& c, Method m) {
  std::vector<std::vector<int64_t>> out;
  engine.set_layer(keys, c);
  select_batch(engine, b, m, out);
  return out;
}

TEST(DeviceLayer, SelectsWhatTheSameLayerInHostMemorySelects) {
  REQUIRE_GPU();
  for (cuda::DeviceCodes codes : {cuda::DeviceCodes::F32, cuda::DeviceCodes::BF16, cuda::DeviceCodes::F16, cuda::DeviceCodes::E4M3}) {
    for (bool integer : {true, false}) {
      if (!integer && codes != cuda::DeviceCodes::F32) continue;  // Gaussian values are exact only as f32
      test::LayerSpec spec;
      spec.keys = 3000;
      spec.heads = 12;  // padded to 16 on the tensor cores
      spec.dim = integer ? 40 : 64;  // 40: padded to 48
      spec.queries = 40;
      spec.integer = integer;
      spec.packed = true;
      spec.scales = true;
      const test::Layer l = test::random_layer(spec);
      GpuLayer g(l, codes);
      for (const SelectionConfig& c : device_configs()) {
        for (Method m : {Method::Flat, Method::Hisa, Method::Block}) {
          auto gpu = make_cuda_engine(gpu_device());
          const auto want = host_selections(*gpu, l.keys, l.batch, c, m);
          auto on_device = make_cuda_engine(gpu_device());
          on_device->set_layer(g.layer->keys(), c);
          std::vector<std::vector<int64_t>> got;
          g.layer->select(*on_device, m, got);
          EXPECT_EQ(got, want) << "codes " << int(codes) << " integer " << integer << " " << gpu_test::describe(c) << " method " << int(m);
          if (integer) {  // exact scores: the CPU engine agrees too
            auto cpu = make_cpu_engine(2);
            EXPECT_EQ(got, host_selections(*cpu, l.keys, l.batch, c, m)) << gpu_test::describe(c);
          }
        }
      }
    }
  }
}

TEST(DeviceLayer, ACompressedLayerLeavesOutTheQueriesThatSeeNoRow) {
  REQUIRE_GPU();
  for (cuda::DeviceCodes codes : {cuda::DeviceCodes::F32, cuda::DeviceCodes::BF16}) {  // read in place; decoded
    test::LayerSpec spec;
    spec.keys = 500;
    spec.queries = 30;
    const test::Layer l = test::random_layer(spec);
    // Token positions with ratio 4: the first queries sit before the first whole row.
    std::vector<int64_t> tokens;
    for (int64_t i = 0; i < spec.queries; ++i) tokens.push_back(i < 3 ? i : 4 * l.batch.q_pos[size_t(i)] + 3);
    GpuLayer g(l, codes, 4, tokens);
    QueryBatch host = l.batch;
    host.q_pos = tokens;
    set_compression(host, 4);
    LayerKeys keys = l.keys;
    keys.compress_ratio = 4;
    SelectionConfig c;
    c.topk = 32, c.block_size = 16, c.blocks = 4;
    auto engine = make_cuda_engine(gpu_device());
    const auto want = host_selections(*engine, keys, host, c, Method::Hisa);
    auto on_device = make_cuda_engine(gpu_device());
    on_device->set_layer(g.layer->keys(), c);
    std::vector<std::vector<int64_t>> got;
    g.layer->select(*on_device, Method::Hisa, got);
    ASSERT_EQ(got.size(), size_t(spec.queries));
    EXPECT_TRUE(got[0].empty() && got[1].empty() && got[2].empty());
    EXPECT_FALSE(got[3].empty());
    EXPECT_EQ(got, want);
  }
}

TEST(DeviceLayer, BadValuesGetTheLoadersWords) {
  REQUIRE_GPU();
  test::LayerSpec spec;
  test::Layer l = test::random_layer(spec);
  l.batch.q[size_t(2 * spec.heads * spec.dim + 5)] = std::nanf("");
  try {
    GpuLayer g(l, cuda::DeviceCodes::F32);
    FAIL() << "a NaN in q was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()), "q: row 2 holds nan at element 5 (NaN and Inf are not valid indexer inputs)");
  }
  l = test::random_layer(spec);
  l.keys.k_scale[9] = 0.0f;
  try {
    GpuLayer g(l, cuda::DeviceCodes::F32);
    FAIL() << "a zero scale was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()), "k_scale: row 9 holds 0 (scales must be finite and positive)");
  }
}

TEST(DeviceLayer, OnlyTheCudaEngineReadsIt) {
  REQUIRE_GPU();
  const test::Layer l = test::random_layer(test::LayerSpec{});
  GpuLayer g(l, cuda::DeviceCodes::F32);
  SelectionConfig c;
  c.topk = 16, c.block_size = 16, c.blocks = 4;
  EXPECT_THROW(make_cpu_engine(1)->set_layer(g.layer->keys(), c), std::invalid_argument);
  auto engine = make_cuda_engine(gpu_device());
  engine->set_layer(g.layer->keys(), c);
  std::vector<QueryAudit> audits;
  engine->audit(g.layer->batch(), audits);
  EXPECT_EQ(audits.size(), size_t(l.batch.count));
}

// Every field of two audits of one query equal.
void expect_same_audit(const QueryAudit& g, const QueryAudit& w, const std::string& what) {
  EXPECT_EQ(g.q_pos, w.q_pos) << what;
  EXPECT_EQ(g.k_start, w.k_start) << what;
  EXPECT_EQ(g.flat, w.flat) << what;
  EXPECT_EQ(g.flat_scores, w.flat_scores) << what;
  EXPECT_EQ(g.hisa, w.hisa) << what;
  EXPECT_EQ(g.hisa_scores, w.hisa_scores) << what;
  EXPECT_EQ(g.hisa_blocks, w.hisa_blocks) << what;
  EXPECT_EQ(g.block_scores, w.block_scores) << what;
  EXPECT_EQ(g.block_best, w.block_best) << what;
  EXPECT_EQ(g.block, w.block) << what;
  EXPECT_EQ(g.kth_score, w.kth_score) << what;
  EXPECT_EQ(g.row_max, w.row_max) << what;
  EXPECT_EQ(g.mass_visible, w.mass_visible) << what;
  EXPECT_EQ(g.mass_flat, w.mass_flat) << what;
  EXPECT_EQ(g.mass_hisa, w.mass_hisa) << what;
  EXPECT_EQ(g.mass_block, w.mass_block) << what;
}

// The audit of a layer on the GPU (import hisa's Audit of CUDA tensors) is the CUDA engine's audit of the same
// layer in host memory, for the whole batch, a run of its rows (a view) and scattered rows (gathered there); its
// block bounds and score rows are the engine's of the host layer too.
TEST(DeviceLayer, AuditsAsTheSameLayerInHostMemory) {
  REQUIRE_GPU();
  for (cuda::DeviceCodes codes : {cuda::DeviceCodes::F32, cuda::DeviceCodes::BF16}) {
    test::LayerSpec spec;
    spec.keys = 3000;
    spec.heads = 12;
    spec.dim = 40;
    spec.queries = 40;
    spec.packed = true;
    spec.scales = true;
    const test::Layer l = test::random_layer(spec);
    GpuLayer g(l, codes);
    for (const SelectionConfig& c : device_configs()) {
      const std::string what = std::string("codes ") + std::to_string(int(codes)) + " " + gpu_test::describe(c);
      for (const std::vector<int64_t>& rows : {std::vector<int64_t>{}, std::vector<int64_t>{5, 6, 7, 8},
                                               std::vector<int64_t>{0, 3, 17, 39}}) {
        const QueryBatch host = rows.empty() ? l.batch : batch_rows(l.batch, rows);
        const QueryBatch device = rows.empty() ? g.layer->batch() : g.layer->rows(rows);
        auto on_host = make_cuda_engine(gpu_device());
        on_host->set_layer(l.keys, c);
        auto on_device = make_cuda_engine(gpu_device());
        on_device->set_layer(g.layer->keys(), c);
        std::vector<QueryAudit> want, got;
        on_host->audit(host, want);
        on_device->audit(device, got);
        ASSERT_EQ(got.size(), want.size()) << what;
        for (size_t i = 0; i < got.size(); ++i) expect_same_audit(got[i], want[i], what + " row " + std::to_string(i));
        std::vector<std::vector<float>> bounds_want, bounds_got;
        on_host->block_bounds(host, bounds_want);
        on_device->block_bounds(device, bounds_got);
        EXPECT_EQ(bounds_got, bounds_want) << what;
        std::vector<float> row_want, row_got;
        on_host->score_row(host, 1, row_want);
        on_device->score_row(device, 1, row_got);
        EXPECT_EQ(row_got, row_want) << what;
      }
    }
  }
}

// import hisa's Audit of CUDA tensors: a layer on the GPU audited (engine, certificates' bounds, pictures) gives
// the audit and report of the same layer in host memory by the same engine, its topk_ref judged alike. A compressed layer's queries that see
// no row are left out and the others gathered on the GPU, in the CLI's batches.
TEST(DeviceLayer, LiveAuditOfALayerOnTheGpuIsTheHostLayersAudit) {
  REQUIRE_GPU();
  for (int64_t ratio : {int64_t(1), int64_t(4)}) {
    test::LayerSpec spec;
    spec.keys = 4000;
    spec.heads = 8;
    spec.dim = 64;
    spec.queries = 300;
    spec.packed = ratio == 1;  // (a compressed query before the first row has k_start 0)
    spec.scales = true;
    const test::Layer l = test::random_layer(spec);
    std::vector<int64_t> tokens;
    for (int64_t i = 0; i < spec.queries; ++i) {
      tokens.push_back(ratio == 1 ? l.batch.q_pos[size_t(i)] : i % 50 == 0 ? 2 : 4 * l.batch.q_pos[size_t(i)] + 3);
    }
    GpuLayer g(l, cuda::DeviceCodes::BF16, ratio, tokens);
    QueryBatch host = l.batch;
    host.q_pos = tokens;
    set_compression(host, ratio);
    LayerKeys keys = l.keys;
    keys.compress_ratio = ratio;
    LiveAuditOptions o;
    o.audit.config.topk = 64;
    o.audit.config.block_size = 32;
    o.audit.config.blocks = 3;
    o.audit.worst = 5;
    o.device = gpu_device();
    o.pictures = 3;
    o.query_rows = true;
    if (ratio == 1) {
      // A stack's topk_ref under the HISA rule of another block size (audited apart): its HISA selection with
      // the last token swapped for the next position outside it, judged on the GPU by that rule's engine.
      SelectionConfig rule = o.audit.config;
      rule.block_size = 16;
      rule.blocks = 6;
      auto engine = make_cuda_engine(gpu_device());
      const auto sel = host_selections(*engine, l.keys, l.batch, rule, Method::Hisa);
      std::vector<int32_t> ref(size_t(spec.queries * rule.topk), -1);
      for (int64_t i = 0; i < spec.queries; ++i) {
        std::vector<int64_t> row = sel[size_t(i)];
        if (!row.empty() && row.back() < host.q_pos[size_t(i)]) row.back() += 1;  // still ascending
        for (size_t n = 0; n < row.size(); ++n) ref[size_t(i * rule.topk) + n] = int32_t(row[n]);
      }
      RefDeclaration declared;
      declared.method = "hisa", declared.block_size = 16, declared.blocks = 6;
      host.topk_ref = ref;
      host.ref_width = rule.topk;
      host.ref_declaration = declared;
      g.layer->set_topk_ref(ref, rule.topk, declared);
    }
    LiveAudit want(o), got(o);
    want.add("s", 0, keys, host, NeedleRange{100, 140});
    got.add("s", 0, g.layer->keys(), g.layer->batch(), NeedleRange{100, 140}, std::nullopt, {},
            [&](const QueryBatch&, std::span<const int64_t> rows) { return g.layer->rows(rows); });
    EXPECT_EQ(audit_json(got.result()).dump(1), audit_json(want.result()).dump(1)) << "ratio " << ratio;
    if (ratio == 1) {  // the judgement found differences to class
      const nlohmann::json layer = audit_json(got.result())["layers"][0];
      EXPECT_LT(layer["ref_iou_mean"].get<double>(), 1.0) << layer.dump(1);
    }
    EXPECT_EQ(got.query_rows(), want.query_rows()) << "ratio " << ratio;
    const ReportData gr = got.report(""), wr = want.report("");
    ASSERT_EQ(gr.pictures.size(), wr.pictures.size());
    ASSERT_GT(gr.pictures.size(), 0u);
    for (size_t i = 0; i < gr.pictures.size(); ++i) {
      const QueryPicture &a = gr.pictures[i], &b = wr.pictures[i];
      EXPECT_EQ(std::tie(a.query, a.q_pos, a.last, a.kept, a.missed, a.hisa_only, a.miss_causes),
                std::tie(b.query, b.q_pos, b.last, b.kept, b.missed, b.hisa_only, b.miss_causes));
      // The GPU's row sums in another order than the CPU's that draws the host layer's picture.
      ASSERT_EQ(a.column_max.size(), b.column_max.size());
      for (size_t k = 0; k < a.column_max.size(); ++k) EXPECT_NEAR(a.column_max[k], b.column_max[k], 1e-4f * (1 + std::fabs(b.column_max[k])));
    }
  }
}

}  // namespace
}  // namespace hisa
