// `import hisa`'s compiled half (_hisa): the engines on arrays in memory. The Python half (python/hisa/__init__.py)
// turns NumPy arrays and PyTorch tensors into C-contiguous NumPy arrays of element codes and names their element
// type; here they are decoded and checked with the file loader's rules and messages (io/tensor_check.hpp), run
// through the same engines and audit as the CLI (pipelines/select.hpp, pipelines/live_audit.hpp), and
// handed back. Bad input raises ValueError; the GIL is released while an engine runs.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <mutex>
#include <type_traits>
#include <optional>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "core/numeric.hpp"
#include "io/tensor_check.hpp"
#include "metrics/diagnosis.hpp"
#include "metrics/query_metrics.hpp"
#include "pipelines/audit.hpp"
#include "core/atomic_file.hpp"
#include "pipelines/live_audit.hpp"
#include "pipelines/select.hpp"
#include "render/audit_output.hpp"
#include "render/html_report.hpp"
#include "select/engine.hpp"
#ifdef HISA_HAVE_CUDA
#include "cuda/device_layer.hpp"
#endif

namespace py = pybind11;

namespace hisa::python {

namespace {

// A bad argument: raised as ValueError.
struct BadInput : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void fail(const std::string& what, const std::string& message) { throw BadInput(what + ": " + message); }
// The loader's checks (io/tensor_check.hpp) report through this: ValueError naming the operand.
const CheckFailure kFail = [](const std::string& dataset, const std::string& message) { fail(dataset, message); };

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::vector<int64_t> py_shape(const py::array& a) { return {a.shape(), a.shape() + a.ndim()}; }
std::optional<std::vector<int64_t>> py_shape(const std::optional<py::array>& a) {
  return a ? std::optional(py_shape(*a)) : std::nullopt;
}
std::string shape_text(const py::array& a) { return shape_text(py_shape(a)); }

void require_shape(const std::vector<int64_t>& shape, const std::string& name, const std::vector<int64_t>& want,
                   const std::string& spelled) {
  if (shape != want) fail(name, "shape " + shape_text(shape) + " does not match " + spelled);
}

// The shapes of one layer's operands, from arrays or CUDA tensors (fp4 operands in bytes: two values each).
struct OperandShapes {
  std::vector<int64_t> q, k, w, q_pos;
  std::optional<std::vector<int64_t>> k_start, k_scale, q_scale_blocks, k_scale_blocks;
};

struct LayerDims {
  int64_t keys = 0, dim = 0, queries = 0, heads = 0;
};

// The shapes checked as the loader checks a file's, and what is missing for the element types; compress_ratio
// too. Block scales are checked here when given (their absence is the decoder's to report).
LayerDims check_shapes(const OperandShapes& s, const std::string& q_type, const std::string& k_type,
                       int64_t compress_ratio) {
  if (s.k.size() != 2) fail("k", "expected 2 dimensions [L, D], found " + shape_text(s.k));
  if (s.q.size() != 3) fail("q", "expected 3 dimensions [Nq, H, D], found " + shape_text(s.q));
  const bool q_fp4 = q_type == "fp4", k_fp4 = k_type == "fp4";
  const int64_t L = s.k[0], D = s.k[1] * (k_fp4 ? 2 : 1), Nq = s.q[0], H = s.q[1];
  if (L < 1) fail("k", "holds no keys (shape " + shape_text(s.k) + ")");
  require_shape(s.q, "q", {Nq, H, q_fp4 ? D / 2 : D},
                q_fp4 ? "[Nq, H, D / 2 = " + std::to_string(D / 2) + "] (fp4: two values per byte; D from k)"
                      : "[Nq, H, D = " + std::to_string(D) + "] (D from k)");
  if ((q_fp4 || k_fp4) && D % kFp4BlockSize != 0) {
    fail(k_fp4 ? "k" : "q", "fp4 values need head_dim a multiple of " + std::to_string(kFp4BlockSize) +
                                " (one scale per 32 values), found " + std::to_string(D));
  }
  if (q_fp4 && s.q_scale_blocks) {
    require_shape(*s.q_scale_blocks, "q_scale_blocks", {Nq, H, D / kFp4BlockSize}, "[Nq, H, D / 32] = [" +
                  std::to_string(Nq) + ", " + std::to_string(H) + ", " + std::to_string(D / kFp4BlockSize) + "]");
  }
  if (k_fp4 && s.k_scale_blocks) {
    require_shape(*s.k_scale_blocks, "k_scale_blocks", {L, D / kFp4BlockSize},
                  "[L, D / 32] = [" + std::to_string(L) + ", " + std::to_string(D / kFp4BlockSize) + "]");
  }
  require_shape(s.w, "w", {Nq, H}, "q's [Nq, H] = [" + std::to_string(Nq) + ", " + std::to_string(H) + "]");
  require_shape(s.q_pos, "q_pos", {Nq}, "q's [Nq] = [" + std::to_string(Nq) + "]");
  if (s.k_start) require_shape(*s.k_start, "k_start", {Nq}, "q's [Nq] = [" + std::to_string(Nq) + "]");
  if (s.k_scale) require_shape(*s.k_scale, "k_scale", {L}, "k's [L] = [" + std::to_string(L) + "]");
  if (k_type == "fp8" && !s.k_scale) fail("k_scale", "missing: fp8 keys need their per-token scales");
  check_compression(compress_ratio, std::nullopt, [](const std::string&, const std::string& message) {
    fail("compress_ratio", message);
  });
  return {L, D, Nq, H};
}

// Every array is read as one run of memory: the Python half hands over C-contiguous arrays.
void require_contiguous(const py::array& a, const std::string& name) {
  if (!(a.flags() & py::array::c_style)) fail(name, "is not C-contiguous (np.ascontiguousarray makes it so)");
}

// Values of a q- or k-like operand from its element codes (`type`: f32, f16, bf16, fp8, fp4), exactly as the
// loader decodes them. fp4: two codes per uint8 along the last dimension, with `blocks` its ue8m0 scales (one per
// 32 values; shape checked by make_layer).
std::vector<float> decode(const py::array& a, const std::string& name, const std::string& type,
                          const std::optional<py::array>& blocks = std::nullopt) {
  require_contiguous(a, name);
  if (blocks) require_contiguous(*blocks, name + "_scale_blocks");
  const size_t n = size_t(a.size()) * (type == "fp4" ? 2 : 1);
  std::vector<float> out(n);
  auto codes = [&](auto tag, const char* storage) {
    using T = decltype(tag);
    if (a.itemsize() != py::ssize_t(sizeof(T)) || a.dtype().kind() == 'f') {
      fail(name, std::string("element type ") + type + " needs " + storage + " codes");
    }
    return static_cast<const T*>(a.data());
  };
  if (type == "f32") {
    if (!a.dtype().is(py::dtype::of<float>())) fail(name, "element type f32 needs float32 values");
    const float* v = static_cast<const float*>(a.data());
    out.assign(v, v + n);
  } else if (type == "f16" || type == "bf16") {
    const uint16_t* v = codes(uint16_t{}, "16-bit");
    const bool bf = type == "bf16";
    for (size_t i = 0; i < n; ++i) out[i] = bf ? bf16_to_float(v[i]) : f16_to_float(v[i]);
  } else if (type == "fp8") {
    const uint8_t* v = codes(uint8_t{}, "8-bit");
    for (size_t i = 0; i < n; ++i) out[i] = e4m3_to_float(v[i]);
  } else if (type == "fp4") {
    const uint8_t* v = codes(uint8_t{}, "8-bit (two fp4 values per byte)");
    const std::string scales = name + "_scale_blocks";
    if (!blocks) fail(scales, "missing: fp4 " + name + " needs its block scales");
    if (blocks->itemsize() != 1 || blocks->dtype().kind() == 'f') fail(scales, "expected uint8 ue8m0 scales");
    const uint8_t* e = static_cast<const uint8_t*>(blocks->data());
    for (size_t b = 0; b < n / size_t(kFp4BlockSize); ++b) {
      decode_fp4_block(v + b * (kFp4BlockSize / 2), e[b], out.data() + b * kFp4BlockSize);
    }
  } else {
    fail(name, "unsupported element type \"" + type + "\" (f32, f16, bf16, fp8 or fp4)");
  }
  return out;
}

template <typename T>
std::vector<T> values_of(const py::array& a, const std::string& name, const char* what) {
  require_contiguous(a, name);
  if (!a.dtype().is(py::dtype::of<T>())) fail(name, std::string("expected ") + what + ", found dtype " + std::string(py::str(a.dtype())));
  const T* v = static_cast<const T*>(a.data());
  return std::vector<T>(v, v + a.size());
}

struct Layer {
  LayerKeys keys;
  QueryBatch batch;
};

// The operands of one layer, checked as the loader checks a file's (shapes, finite values, scales, positions),
// in the form engines take (compressed layers: rows).
// fp4 operands: [.., D/2] bytes of codes with their block scales [.., D/32] (q_blocks, k_blocks).
struct Fp4Scales {
  std::optional<py::array> q, k;
};

Layer make_layer(const py::array& q, const std::string& q_type, const py::array& k, const std::string& k_type,
                 const py::array& w, const py::array& q_pos, const std::optional<py::array>& k_start,
                 const std::optional<py::array>& k_scale, int64_t compress_ratio, const Fp4Scales& blocks = {}) {
  const LayerDims d = check_shapes({py_shape(q), py_shape(k), py_shape(w), py_shape(q_pos), py_shape(k_start),
                                    py_shape(k_scale), py_shape(blocks.q), py_shape(blocks.k)},
                                   q_type, k_type, compress_ratio);
  const int64_t L = d.keys, D = d.dim, Nq = d.queries, H = d.heads;
  Layer l;
  l.keys.count = L;
  l.keys.dim = D;
  l.keys.compress_ratio = compress_ratio;
  l.keys.k = decode(k, "k", k_type, blocks.k);
  check_finite("k", l.keys.k.data(), L, D, 0, kFail);
  l.keys.k_scale = k_scale ? values_of<float>(*k_scale, "k_scale", "float32") : std::vector<float>(size_t(L), 1.0f);
  check_key_scales(l.keys.k_scale, kFail);
  QueryBatch& b = l.batch;
  b.count = Nq;
  b.heads = H;
  b.dim = D;
  b.q = decode(q, "q", q_type, blocks.q);
  check_finite("q", b.q.data(), Nq, H * D, 0, kFail);
  b.w = values_of<float>(w, "w", "float32");
  check_finite("w", b.w.data(), Nq, H, 0, kFail);
  b.q_pos = values_of<int64_t>(q_pos, "q_pos", "int64");
  b.k_start = k_start ? values_of<int64_t>(*k_start, "k_start", "int64") : std::vector<int64_t>(size_t(Nq), 0);
  check_positions(b.q_pos, b.k_start, L, compress_ratio, 0, kFail);
  set_compression(b, compress_ratio);
  return l;
}

SelectionConfig make_config(int64_t topk, int64_t block_size, int64_t blocks, const std::string& forced,
                            const std::string& pool_precision) {
  SelectionConfig c;
  c.topk = topk;
  c.block_size = block_size;
  c.blocks = blocks;
  const auto f = parse_forced_mode(forced);
  if (!f) fail("forced", "\"" + forced + "\", expected \"in-budget\" or \"extra\"");
  c.forced = *f;
  const auto p = parse_pool_precision(pool_precision);
  if (!p) fail("pool_precision", "\"" + pool_precision + "\", expected \"fp32\" or \"fp8\"");
  c.pool = *p;
  c.validate();
  return c;
}

Method method_of(const std::string& name) {
  if (name == "flat") return Method::Flat;
  if (name == "hisa") return Method::Hisa;
  if (name == "block" || name == "block-sparse") return Method::Block;
  fail("method", "\"" + name + "\", expected \"flat\", \"hisa\" or \"block-sparse\"");
}

// The device's engine index (resolve_devices): "cpu", "cuda" or "auto".
int device_of(const std::string& device) { return resolve_devices(device, "").front(); }

py::array_t<int32_t> select_layer(const py::array& q, const std::string& q_type, const py::array& k, const std::string& k_type,
                            const py::array& w, const py::array& q_pos, const std::optional<py::array>& k_start,
                            const std::optional<py::array>& k_scale, const std::optional<py::array>& q_scale_blocks,
                            const std::optional<py::array>& k_scale_blocks, const std::string& method, int64_t block_size,
                            int64_t blocks, const std::string& forced, const std::string& pool_precision, int64_t topk,
                            const std::string& device, int64_t compress_ratio, int threads) {
  Layer l = make_layer(q, q_type, k, k_type, w, q_pos, k_start, k_scale, compress_ratio, {q_scale_blocks, k_scale_blocks});
  // bf16 codes are uploaded as they are (from pinned memory, such as a pinned tensor's, without a host copy); q
  // outlives this call.
  if (q_type == "bf16") l.batch.q_bf16 = static_cast<const uint16_t*>(q.data());
  const SelectionConfig config = make_config(topk, block_size, blocks, forced, pool_precision);
  const Method m = method_of(method);
  const int dev = device_of(device);
  std::vector<std::vector<int64_t>> selections;
  int64_t width = 0;
  std::vector<int32_t> matrix;
  {
    py::gil_scoped_release released;
    auto engine = make_engine_on(dev, threads);
    engine->set_layer(l.keys, config);
    select_batch(*engine, l.batch, m, selections);
    matrix = selection_matrix(selections, m, config.topk, l.keys.count, width);
  }
  py::array_t<int32_t> out({l.batch.count, width});
  std::copy(matrix.begin(), matrix.end(), out.mutable_data());
  return out;
}

#ifdef HISA_HAVE_CUDA
// A CUDA tensor as the Python half hands it over, (data pointer, shape, element type, device index): read where
// it is, never copied to the host.
struct GpuTensor {
  const void* data = nullptr;
  std::vector<int64_t> shape;
  std::string type;
  int device = -1;
};

GpuTensor gpu_tensor(const py::tuple& t, const std::string& name) {
  if (t.size() != 4) fail(name, "expected (pointer, shape, element type, device) of a CUDA tensor");
  GpuTensor g;
  g.data = reinterpret_cast<const void*>(t[0].cast<uintptr_t>());
  g.shape = t[1].cast<std::vector<int64_t>>();
  g.type = t[2].cast<std::string>();
  g.device = t[3].cast<int>();
  return g;
}

cuda::DeviceCodes codes_of(const GpuTensor& t, const std::string& name) {
  if (t.type == "f32") return cuda::DeviceCodes::F32;
  if (t.type == "f16") return cuda::DeviceCodes::F16;
  if (t.type == "bf16") return cuda::DeviceCodes::BF16;
  if (t.type == "fp8") return cuda::DeviceCodes::E4M3;
  fail(name, "element type " + t.type + " is not read on a GPU (f32, f16, bf16 or fp8)");
}

// A layer of CUDA tensors, checked as the file loader checks a layer and read on their GPU (cuda/device_layer.hpp);
// only the positions, q_pos and k_start, are host arrays.
struct GpuLayer {
  std::unique_ptr<cuda::DeviceLayer> layer;
  int device = -1;
};

GpuLayer gpu_layer(const py::tuple& q_t, const py::tuple& k_t, const py::tuple& w_t, const py::array& q_pos,
                   const std::optional<py::array>& k_start, const std::optional<py::tuple>& k_scale_t,
                   int64_t compress_ratio) {
  const GpuTensor q = gpu_tensor(q_t, "q"), k = gpu_tensor(k_t, "k"), w = gpu_tensor(w_t, "w");
  const std::optional<GpuTensor> k_scale = k_scale_t ? std::optional(gpu_tensor(*k_scale_t, "k_scale")) : std::nullopt;
  const LayerDims d = check_shapes({q.shape, k.shape, w.shape, py_shape(q_pos), py_shape(k_start),
                                    k_scale ? std::optional(k_scale->shape) : std::nullopt, std::nullopt, std::nullopt},
                                   q.type, k.type, compress_ratio);
  for (const GpuTensor* t : {&w, k_scale ? &*k_scale : nullptr}) {
    if (t && t->type != "f32") fail(t == &w ? "w" : "k_scale", "expected float32 values, found " + t->type);
  }
  for (const GpuTensor* t : {&k, &w, k_scale ? &*k_scale : nullptr}) {
    if (t && t->device != q.device) fail("q", "is on CUDA device " + std::to_string(q.device) + ", another operand on " + std::to_string(t->device));
  }
  const cuda::DeviceCodes q_codes = codes_of(q, "q"), k_codes = codes_of(k, "k");
  GpuLayer g;
  g.device = resolve_devices("cuda", std::to_string(q.device)).front();
  std::vector<int64_t> positions = values_of<int64_t>(q_pos, "q_pos", "int64");
  std::vector<int64_t> starts = k_start ? values_of<int64_t>(*k_start, "k_start", "int64") : std::vector<int64_t>{};
  py::gil_scoped_release released;
  g.layer = std::make_unique<cuda::DeviceLayer>(
      g.device, cuda::DeviceLayerShape{d.queries, d.heads, d.dim, d.keys, compress_ratio}, cuda::DeviceOperand{q.data, q_codes},
      cuda::DeviceOperand{k.data, k_codes}, static_cast<const float*>(w.data),
      k_scale ? static_cast<const float*>(k_scale->data) : nullptr, std::move(positions), std::move(starts), kFail);
  return g;
}

// select() on CUDA tensors: the CUDA engine on their GPU reads them there.
py::array_t<int32_t> select_on_gpu(const py::tuple& q_t, const py::tuple& k_t, const py::tuple& w_t, const py::array& q_pos,
                                   const std::optional<py::array>& k_start, const std::optional<py::tuple>& k_scale_t,
                                   const std::string& method, int64_t block_size, int64_t blocks, const std::string& forced,
                                   const std::string& pool_precision, int64_t topk, int64_t compress_ratio) {
  const SelectionConfig config = make_config(topk, block_size, blocks, forced, pool_precision);
  const Method m = method_of(method);
  GpuLayer g = gpu_layer(q_t, k_t, w_t, q_pos, k_start, k_scale_t, compress_ratio);
  std::vector<std::vector<int64_t>> selections;
  int64_t width = 0;
  std::vector<int32_t> matrix;
  const int64_t Nq = g.layer->queries();
  {
    py::gil_scoped_release released;
    auto engine = make_engine_on(g.device, 0);
    engine->set_layer(g.layer->keys(), config);
    g.layer->select(*engine, m, selections);
    matrix = selection_matrix(selections, m, config.topk, g.layer->keys().count, width);
  }
  py::array_t<int32_t> out({Nq, width});
  std::copy(matrix.begin(), matrix.end(), out.mutable_data());
  return out;
}
#endif

// The per-query CSV's columns (render/audit_output.cpp) as arrays: NaN where the CSV leaves a field empty.
py::dict query_columns(const std::vector<QueryMetrics>& ms) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  auto column = [&](auto get) {
    py::array_t<double> a(py::ssize_t(ms.size()));
    double* p = a.mutable_data();
    for (size_t i = 0; i < ms.size(); ++i) p[i] = get(ms[i]);
    return a;
  };
  auto ints = [&](auto get) {
    py::array_t<int64_t> a(py::ssize_t(ms.size()));
    int64_t* p = a.mutable_data();
    for (size_t i = 0; i < ms.size(); ++i) p[i] = get(ms[i]);
    return a;
  };
  auto opt = [&](const auto& v) { return v ? double(*v) : nan; };
  py::dict d;
  d["query"] = ints([](const QueryMetrics& m) { return m.query; });
  d["q_pos"] = ints([](const QueryMetrics& m) { return m.q_pos; });
  d["iou"] = column([](const QueryMetrics& m) { return m.hisa.iou; });
  d["recall"] = column([](const QueryMetrics& m) { return m.hisa.recall; });
  d["coverage_ratio"] = column([](const QueryMetrics& m) { return m.hisa.coverage_ratio; });
  d["first_miss_rank"] = column([&](const QueryMetrics& m) { return opt(m.hisa.first_miss_rank); });
  d["block_iou"] = column([](const QueryMetrics& m) { return m.block.iou; });
  d["block_recall"] = column([](const QueryMetrics& m) { return m.block.recall; });
  d["block_coverage_ratio"] = column([](const QueryMetrics& m) { return m.block.coverage_ratio; });
  d["block_first_miss_rank"] = column([&](const QueryMetrics& m) { return opt(m.block.first_miss_rank); });
  d["visible"] = ints([](const QueryMetrics& m) { return m.visible; });
  d["flat_coverage"] = column([](const QueryMetrics& m) { return m.coverage_flat; });
  d["hisa_coverage"] = column([](const QueryMetrics& m) { return m.hisa.coverage; });
  d["block_coverage"] = column([](const QueryMetrics& m) { return m.block.coverage; });
  d["needle_recall_flat"] = column([&](const QueryMetrics& m) { return opt(m.needle_recall_flat); });
  d["needle_recall_hisa"] = column([&](const QueryMetrics& m) { return opt(m.hisa.needle_recall); });
  d["needle_recall_block"] = column([&](const QueryMetrics& m) { return opt(m.block.needle_recall); });
  d["ref_iou"] = column([&](const QueryMetrics& m) { return opt(m.ref_iou); });
  const char* causes[] = {"miss_dilution", "miss_near_cutoff", "miss_forced", "miss_near_tie"};
  const MissCause order[] = {MissCause::MeanDilution, MissCause::NearCutoff, MissCause::DisplacedByForced, MissCause::NearTie};
  for (int c = 0; c < 4; ++c) {
    d[causes[c]] = ints([&](const QueryMetrics& m) { return m.miss_causes[size_t(order[c])]; });
  }
  d["certified"] = ints([](const QueryMetrics& m) { return int64_t(m.certified); });
  d["ref_tie_swaps"] = column([&](const QueryMetrics& m) { return opt(m.ref_tie_swaps); });
  d["ref_unexplained"] = column([&](const QueryMetrics& m) { return opt(m.ref_unexplained); });
  d["ref_near_ties"] = column([&](const QueryMetrics& m) { return opt(m.ref_near_ties); });
  d["ref_block_flips"] = column([&](const QueryMetrics& m) { return opt(m.ref_block_flips); });
  return d;
}

// `import hisa`'s Audit (pipelines/live_audit.hpp): layers added one at a time, written as the CLI writes.
class Audit {
 public:
  Audit(int64_t topk, int64_t block_size, int64_t blocks, const std::string& forced, const std::string& pool_precision,
        const std::string& device, int threads, int64_t worst, int64_t pictures, bool query_rows) {
    if (worst < 0) fail("worst", "must be at least 0 (got " + std::to_string(worst) + ")");
    if (pictures < 0) fail("pictures", "must be at least 0 (got " + std::to_string(pictures) + ")");
    LiveAuditOptions o;
    o.audit.config = make_config(topk, block_size, blocks, forced, pool_precision);
    o.audit.threads = threads;
    o.audit.worst = worst;
    o.device = device_of(device);
    o.pictures = pictures;
    o.query_rows = query_rows;
    live_ = std::make_unique<LiveAudit>(std::move(o));
  }

  // One sample's layer: (its per-layer object of the audit JSON as JSON text, its per-query columns).
  py::tuple add(const py::array& q, const std::string& q_type, const py::array& k, const std::string& k_type,
                const py::array& w, const py::array& q_pos, const std::optional<py::array>& k_start,
                const std::optional<py::array>& k_scale, const std::optional<py::array>& q_scale_blocks,
                const std::optional<py::array>& k_scale_blocks, int64_t compress_ratio, std::optional<int64_t> window,
                int layer, const std::string& sample,
                std::optional<int64_t> needle_begin, std::optional<int64_t> needle_end,
                const std::optional<py::array>& topk_ref, const std::optional<std::string>& ref_method,
                std::optional<int64_t> ref_block_size, std::optional<int64_t> ref_blocks,
                const std::optional<std::string>& ref_forced, const std::optional<std::string>& ref_pool_precision) {
    check_place(layer, sample, window);
    Layer l = make_layer(q, q_type, k, k_type, w, q_pos, k_start, k_scale, compress_ratio, {q_scale_blocks, k_scale_blocks});
    if (topk_ref) {
      l.batch.topk_ref = checked_topk_ref(*topk_ref, l.batch.count, l.keys.count);
      l.batch.ref_width = topk_ref->shape(1);
      l.batch.ref_declaration = checked_declaration(ref_method, ref_block_size, ref_blocks, ref_forced, ref_pool_precision);
    }
    return add_layer(sample, layer, l.keys, l.batch, needle_of(needle_begin, needle_end, compress_ratio), window);
  }

#ifdef HISA_HAVE_CUDA
  // add() of CUDA tensors on this audit's GPU, read there: the engine's audit, the certificates' bounds, the
  // pictures and topk_ref's judgement run on the GPU, and only their results come to the host.
  py::tuple add_on_gpu(const py::tuple& q, const py::tuple& k, const py::tuple& w, const py::array& q_pos,
                       const std::optional<py::array>& k_start, const std::optional<py::tuple>& k_scale,
                       int64_t compress_ratio, std::optional<int64_t> window, int layer, const std::string& sample,
                       std::optional<int64_t> needle_begin, std::optional<int64_t> needle_end,
                       const std::optional<py::array>& topk_ref, const std::optional<std::string>& ref_method,
                       std::optional<int64_t> ref_block_size, std::optional<int64_t> ref_blocks,
                       const std::optional<std::string>& ref_forced, const std::optional<std::string>& ref_pool_precision) {
    check_place(layer, sample, window);
    const int q_device = gpu_tensor(q, "q").device;
    if (q_device != live_->options().device) {
      fail("q", "is on CUDA device " + std::to_string(q_device) + ", this Audit's engine is " + live_->engine_name());
    }
    GpuLayer g = gpu_layer(q, k, w, q_pos, k_start, k_scale, compress_ratio);
    cuda::DeviceLayer& layer_on_gpu = *g.layer;
    if (topk_ref) {
      std::vector<int32_t> values = checked_topk_ref(*topk_ref, layer_on_gpu.queries(), layer_on_gpu.keys().count);
      layer_on_gpu.set_topk_ref(std::move(values), topk_ref->shape(1),
                                checked_declaration(ref_method, ref_block_size, ref_blocks, ref_forced, ref_pool_precision));
    }
    return add_layer(sample, layer, layer_on_gpu.keys(), layer_on_gpu.batch(),
                     needle_of(needle_begin, needle_end, compress_ratio), window,
                     [&](const QueryBatch&, std::span<const int64_t> rows) { return layer_on_gpu.rows(rows); });
  }
#endif

  // The device add() and add_on_gpu() audit on: -1 for the CPU, else the CUDA device index.
  int device() const { return live_->options().device; }

  std::string engine() const { return live_->engine_name(); }
  std::string json() const { return locked([&] { return json_text(); }); }
  std::string table() const {
    return locked([&] {
      std::ostringstream out;
      write_audit_table(out, live_->result());
      return out.str();
    });
  }
  void write_json(const std::string& path) const {
    write_output(path, "json", [&](std::ostream& out) { out << json_text(); });
  }
  void write_csv(const std::string& path) const {
    write_output(path, "csv", [&](std::ostream& out) { write_layer_csv(out, live_->result()); });
  }
  void write_query_csv(const std::string& path) const {
    if (!live_->options().query_rows) fail("per_query", "this Audit keeps no per-query rows: make it with per_query=True");
    write_output(path, "per_query", [&](std::ostream& out) {
      write_query_csv_header(out);
      out << live_->query_rows();
    });
  }
  void write_report(const std::string& path, const std::string& command_line) const {
    write_output(path, "report", [&](std::ostream& out) { write_html_report(out, live_->report(command_line)); });
  }

 private:
  // topk_ref's values, checked as the loader checks a file's ([Nq, K], positions in [-1, L)).
  static std::vector<int32_t> checked_topk_ref(const py::array& topk_ref, int64_t queries, int64_t keys) {
    if (topk_ref.ndim() != 2 || topk_ref.shape(0) != queries) {
      fail("topk_ref", "shape " + shape_text(topk_ref) + " does not match [Nq = " + std::to_string(queries) + ", K]");
    }
    std::vector<int32_t> values = values_of<int32_t>(topk_ref, "topk_ref", "int32");
    check_topk_ref(values, topk_ref.shape(1), keys, 0, kFail);
    return values;
  }
  static RefDeclaration checked_declaration(const std::optional<std::string>& method, std::optional<int64_t> block_size,
                                            std::optional<int64_t> blocks, const std::optional<std::string>& forced,
                                            const std::optional<std::string>& pool_precision) {
    RefDeclaration d;
    d.method = method, d.block_size = block_size, d.blocks = blocks, d.forced = forced;
    d.pool_precision = pool_precision;
    check_ref_declaration(d, [](const std::string&, const std::string& message) { fail("topk_ref", message); });
    return d;
  }
  static void check_place(int layer, const std::string& sample, std::optional<int64_t> window) {
    if (layer < 0) fail("layer", "must be at least 0 (got " + std::to_string(layer) + ")");
    if (sample.empty()) fail("sample", "must be a non-empty name");
    if (window && *window < 0) fail("window", "must be at least 0 (got " + std::to_string(*window) + ")");
  }
  // The needle's token range [begin, end) as key rows; none when absent or empty.
  static std::optional<NeedleRange> needle_of(std::optional<int64_t> begin, std::optional<int64_t> end,
                                              int64_t compress_ratio) {
    check_needle(begin, end, [](const std::string&, const std::string& message) { fail("needle", message); });
    if (begin && *end > *begin) return needle_rows({*begin, *end}, compress_ratio);
    return std::nullopt;
  }
  // One sample's layer audited and added: (its per-layer object of the audit JSON as JSON text, its per-query
  // columns).
  py::tuple add_layer(const std::string& sample, int layer, const LayerKeys& keys, const QueryBatch& batch,
                      std::optional<NeedleRange> needle, std::optional<int64_t> window,
                      const LiveAudit::BatchRows& rows_of = LiveAudit::BatchRows(batch_rows)) {
    std::vector<QueryMetrics> metrics;
    AuditResult r;
    r.config = live_->options().audit.config;
    locked([&] {
      r.layers.push_back(live_->add(sample, layer, keys, batch, needle, window,
                                    [&](const QueryAudit&, const QueryMetrics& m) { metrics.push_back(m); }, rows_of));
    });
    return py::make_tuple(audit_json(r)["layers"][0].dump(), query_columns(metrics));
  }

  // f with the GIL released and this audit to itself: Python threads may share an Audit. (The mutex is taken
  // after the GIL is let go, and let go before the GIL is taken back, so neither waits on the other.)
  template <typename F>
  std::invoke_result_t<F> locked(F f) const {
    py::gil_scoped_release released;
    std::lock_guard<std::mutex> lock(mutex_);
    return f();
  }
  std::string json_text() const { return audit_json(live_->result()).dump(2) + "\n"; }
  // Written as the CLI writes its outputs: checked first, then whole or not at all (core/atomic_file.hpp).
  void write_output(const std::string& path, const std::string& what, const std::function<void(std::ostream&)>& write) const {
    check_outputs({{path, what}}, {});
    locked([&] { write_file_atomically(path, write); });
  }

  mutable std::mutex mutex_;
  std::unique_ptr<LiveAudit> live_;
};

}  // namespace

}  // namespace hisa::python

PYBIND11_MODULE(_hisa, m) {
  using namespace hisa;
  using namespace hisa::python;
  m.doc() = "hisa's engines on arrays in memory (use the hisa package, not this module)";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const BadInput& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const InputError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const OptionError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const UsageError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });
  m.def("select", &select_layer, py::arg("q"), py::arg("q_type"), py::arg("k"), py::arg("k_type"), py::arg("w"),
        py::arg("q_pos"), py::arg("k_start"), py::arg("k_scale"), py::arg("q_scale_blocks"), py::arg("k_scale_blocks"),
        py::arg("method"), py::arg("block_size"),
        py::arg("blocks"), py::arg("forced"), py::arg("pool_precision"), py::arg("topk"), py::arg("device"),
        py::arg("compress_ratio"), py::arg("threads"));
  py::class_<Audit>(m, "Audit")
      .def(py::init<int64_t, int64_t, int64_t, const std::string&, const std::string&, const std::string&, int, int64_t,
                    int64_t, bool>(),
           py::arg("topk"), py::arg("block_size"), py::arg("blocks"), py::arg("forced"), py::arg("pool_precision"),
           py::arg("device"), py::arg("threads"), py::arg("worst"), py::arg("pictures"), py::arg("query_rows"))
      .def("add", &Audit::add, py::arg("q"), py::arg("q_type"), py::arg("k"), py::arg("k_type"), py::arg("w"),
           py::arg("q_pos"), py::arg("k_start"), py::arg("k_scale"), py::arg("q_scale_blocks"), py::arg("k_scale_blocks"), py::arg("compress_ratio"),
           py::arg("window"), py::arg("layer"),
           py::arg("sample"), py::arg("needle_begin"), py::arg("needle_end"), py::arg("topk_ref"), py::arg("ref_method"),
           py::arg("ref_block_size"), py::arg("ref_blocks"), py::arg("ref_forced"), py::arg("ref_pool_precision"))
#ifdef HISA_HAVE_CUDA
      .def("add_on_gpu", &Audit::add_on_gpu, py::arg("q"), py::arg("k"), py::arg("w"), py::arg("q_pos"), py::arg("k_start"),
           py::arg("k_scale"), py::arg("compress_ratio"), py::arg("window"), py::arg("layer"), py::arg("sample"),
           py::arg("needle_begin"), py::arg("needle_end"), py::arg("topk_ref"), py::arg("ref_method"),
           py::arg("ref_block_size"), py::arg("ref_blocks"), py::arg("ref_forced"), py::arg("ref_pool_precision"))
#endif
      .def("device", &Audit::device)
      .def("engine", &Audit::engine)
      .def("json", &Audit::json)
      .def("table", &Audit::table)
      .def("write_json", &Audit::write_json, py::arg("path"))
      .def("write_csv", &Audit::write_csv, py::arg("path"))
      .def("write_query_csv", &Audit::write_query_csv, py::arg("path"))
      .def("write_report", &Audit::write_report, py::arg("path"), py::arg("command_line"));
#ifdef HISA_HAVE_CUDA
  m.def("select_on_gpu", &select_on_gpu, py::arg("q"), py::arg("k"), py::arg("w"), py::arg("q_pos"), py::arg("k_start"),
        py::arg("k_scale"), py::arg("method"), py::arg("block_size"), py::arg("blocks"), py::arg("forced"),
        py::arg("pool_precision"), py::arg("topk"), py::arg("compress_ratio"));
#endif
  // Whether this build's kernels run on CUDA device `index` (resolve_devices' check, without its error).
  m.def("gpu_usable", [](int index) {
    try {
      return resolve_devices("cuda", std::to_string(index)).front() == index;
    } catch (const std::exception&) {
      return false;
    }
  });
  m.def("cuda_available", [] { return resolve_devices("auto", "").front() >= 0; });
}
