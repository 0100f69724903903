// A layer whose operands live on a GPU (device_layer.hpp).
#include "cuda/device_layer.hpp"

#include <optional>
#include <stdexcept>
#include <string>

#include "cuda/cuda_check.hpp"
#include "cuda/device_buffer.hpp"
#include "io/query_subset.hpp"

namespace hisa::cuda {

struct DeviceLayer::Buffers {
  DeviceArray<float> q, k, k_scale;  // decoded (q, k) or all-ones (k_scale) when needed
  DeviceArray<float> q_rows, w_rows;  // rows() gathered
  DeviceArray<int64_t> rows;
  std::optional<Stream> stream;
};

namespace {

// Element codes decoded into `out` (float32 codes are read where they are): the values' device pointer.
const float* decoded(DeviceOperand op, int64_t n, DeviceArray<float>& out, cudaStream_t s) {
  if (op.codes == DeviceCodes::F32) return static_cast<const float*>(op.data);
  out.resize(size_t(n));
  decode_on_device(op.data, op.codes, n, out.data(), s);
  return out.data();
}

// check_finite's rule and words for rows × row_elems values on the device.
void check_finite_on_device(const std::string& dataset, const float* values, int64_t rows, int64_t row_elems,
                            const CheckFailure& fail, cudaStream_t s) {
  const FirstBad bad = first_nonfinite_on_device(values, rows * row_elems, s);
  if (bad.index >= 0) fail_nonfinite(dataset, bad.index / row_elems, bad.index % row_elems, bad.value, fail);
}

}  // namespace

DeviceLayer::DeviceLayer(int device, const DeviceLayerShape& shape, DeviceOperand q, DeviceOperand k, const float* w,
                         const float* k_scale, std::vector<int64_t> q_pos, std::vector<int64_t> k_start,
                         const CheckFailure& fail)
    : shape_(shape), buffers_(std::make_unique<Buffers>()) {
  HISA_CUDA_CHECK(cudaSetDevice(device));
  Buffers& b = *buffers_;
  b.stream.emplace();
  const cudaStream_t s = b.stream->get();
  const int64_t Nq = shape.queries, H = shape.heads, D = shape.dim, L = shape.keys;
  keys_.count = L;
  keys_.dim = D;
  keys_.compress_ratio = shape.compress_ratio;
  keys_.device = device;
  keys_.device_k = decoded(k, L * D, b.k, s);
  check_finite_on_device("k", keys_.device_k, L, D, fail, s);
  if (k_scale != nullptr) {
    const FirstBad bad = first_bad_scale_on_device(k_scale, L, s);
    if (bad.index >= 0) fail_bad_key_scale(bad.index, bad.value, fail);
    keys_.device_k_scale = k_scale;
  } else {
    const std::vector<float> ones(size_t(L), 1.0f);
    b.k_scale.upload(ones.data(), ones.size(), s);
    keys_.device_k_scale = b.k_scale.data();
  }
  const float* q_values = decoded(q, Nq * H * D, b.q, s);
  check_finite_on_device("q", q_values, Nq, H * D, fail, s);
  check_finite_on_device("w", w, Nq, H, fail, s);

  QueryBatch& all = all_;
  all.count = Nq;
  all.heads = H;
  all.dim = D;
  all.q_pos = std::move(q_pos);
  all.k_start = k_start.empty() ? std::vector<int64_t>(size_t(Nq), 0) : std::move(k_start);
  check_positions(all.q_pos, all.k_start, L, shape.compress_ratio, 0, fail);
  set_compression(all, shape.compress_ratio);
  seeing_ = rows_seeing_keys(all);
  all.device = device;
  all.device_q = q_values;
  all.device_w = w;
  HISA_CUDA_CHECK(cudaStreamSynchronize(s));
}

DeviceLayer::~DeviceLayer() = default;

QueryBatch DeviceLayer::rows(std::span<const int64_t> rows) {
  for (size_t n = 1; n < rows.size(); ++n) {
    if (rows[n] <= rows[n - 1]) throw std::invalid_argument("DeviceLayer::rows: rows must be strictly ascending");
  }
  QueryBatch out = batch_rows_but_values(all_, rows);
  HISA_CUDA_CHECK(cudaSetDevice(all_.device));
  const int64_t H = all_.heads, D = all_.dim, n = out.count;
  const bool consecutive = n == 0 || rows.back() - rows.front() == n - 1;
  if (consecutive) {  // a view: no copy
    const int64_t r0 = n == 0 ? 0 : rows.front();
    out.device_q = all_.device_q + r0 * H * D;
    out.device_w = all_.device_w + r0 * H;
    return out;
  }
  Buffers& b = *buffers_;
  const cudaStream_t s = b.stream->get();
  b.rows.upload(rows.data(), rows.size(), s);
  b.q_rows.resize(size_t(n * H * D));
  b.w_rows.resize(size_t(n * H));
  gather_rows_on_device(all_.device_q, H * D, b.rows.data(), n, b.q_rows.data(), s);
  gather_rows_on_device(all_.device_w, H, b.rows.data(), n, b.w_rows.data(), s);
  HISA_CUDA_CHECK(cudaStreamSynchronize(s));  // the engine reads them on a stream of its own
  out.device_q = b.q_rows.data();
  out.device_w = b.w_rows.data();
  return out;
}

void DeviceLayer::set_topk_ref(std::vector<int32_t> topk_ref, int64_t width, RefDeclaration declaration) {
  all_.topk_ref = std::move(topk_ref);
  all_.ref_width = width;
  all_.ref_declaration = std::move(declaration);
}

void DeviceLayer::select(SelectionEngine& engine, Method method, std::vector<std::vector<int64_t>>& out) {
  out.assign(size_t(shape_.queries), {});
  if (seeing_.empty()) return;
  std::vector<std::vector<int64_t>> some;
  engine.select(rows(seeing_), method, some);
  for (size_t j = 0; j < seeing_.size(); ++j) out[size_t(seeing_[j])] = std::move(some[j]);
}

}  // namespace hisa::cuda
