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
  DeviceArray<float> q, k, w, k_scale;  // decoded (q, k), gathered (q, w) or all-ones (k_scale) when needed
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

  QueryBatch& batch = batch_;
  batch.count = Nq;
  batch.heads = H;
  batch.dim = D;
  batch.q_pos = std::move(q_pos);
  batch.k_start = k_start.empty() ? std::vector<int64_t>(size_t(Nq), 0) : std::move(k_start);
  check_positions(batch.q_pos, batch.k_start, L, shape.compress_ratio, 0, fail);
  set_compression(batch, shape.compress_ratio);
  seeing_ = rows_seeing_keys(batch);
  batch.device = device;
  batch.device_q = q_values;
  batch.device_w = w;
  if (int64_t(seeing_.size()) < Nq) {
    // Only the queries that see a key row reach the engine (select_batch's rule): their rows gathered here.
    std::vector<int64_t> q_pos_seen, k_start_seen, token_pos_seen;
    for (int64_t i : seeing_) {
      q_pos_seen.push_back(batch.q_pos[size_t(i)]);
      k_start_seen.push_back(batch.k_start[size_t(i)]);
      if (!batch.token_pos.empty()) token_pos_seen.push_back(batch.token_pos[size_t(i)]);
    }
    const int64_t n = int64_t(seeing_.size());
    b.rows.upload(seeing_.data(), seeing_.size(), s);
    DeviceArray<float> q_seen, w_seen;
    q_seen.resize(size_t(std::max<int64_t>(1, n * H * D)));
    w_seen.resize(size_t(std::max<int64_t>(1, n * H)));
    gather_rows_on_device(q_values, H * D, b.rows.data(), n, q_seen.data(), s);
    gather_rows_on_device(w, H, b.rows.data(), n, w_seen.data(), s);
    b.q = std::move(q_seen);  // (a swap: q_seen now holds the decoded q, freed once the stream is done below)
    b.w = std::move(w_seen);
    HISA_CUDA_CHECK(cudaStreamSynchronize(s));
    batch.count = n;
    batch.q_pos = std::move(q_pos_seen);
    batch.k_start = std::move(k_start_seen);
    batch.token_pos = std::move(token_pos_seen);
    batch.device_q = b.q.data();
    batch.device_w = b.w.data();
  }
  HISA_CUDA_CHECK(cudaStreamSynchronize(s));
}

DeviceLayer::~DeviceLayer() = default;

void DeviceLayer::select(SelectionEngine& engine, Method method, std::vector<std::vector<int64_t>>& out) const {
  out.assign(size_t(shape_.queries), {});
  if (seeing_.empty()) return;
  std::vector<std::vector<int64_t>> some;
  engine.select(batch_, method, some);
  for (size_t j = 0; j < seeing_.size(); ++j) out[size_t(seeing_[j])] = std::move(some[j]);
}

}  // namespace hisa::cuda
