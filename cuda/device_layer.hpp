#pragma once
// A layer whose operands live on a GPU (`import hisa` on CUDA tensors), made ready for the CUDA engine on that GPU
// without a copy of them to the host: q and k decoded there (float32 ones read in place), every value checked
// there with the file loader's rules and words (io/tensor_check.hpp), and the queries that see no key row left
// out there. Only the positions (q_pos, k_start) are host data. Host-only header.
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "cuda/device_operands.hpp"
#include "io/dump_model.hpp"
#include "io/tensor_check.hpp"
#include "select/config.hpp"
#include "select/engine.hpp"

namespace hisa::cuda {

// A device pointer to an operand's element codes.
struct DeviceOperand {
  const void* data = nullptr;
  DeviceCodes codes;
};

struct DeviceLayerShape {
  int64_t queries = 0, heads = 0, dim = 0, keys = 0, compress_ratio = 1;
};

class DeviceLayer {
 public:
  // q [Nq, H, D], k [L, D], w [Nq, H] float32 and k_scale [L] float32 (nullptr: all 1) on CUDA device `device`;
  // q_pos and k_start (empty: all 0) on the host, as the file holds them. fail: as for io/tensor_check.
  DeviceLayer(int device, const DeviceLayerShape& shape, DeviceOperand q, DeviceOperand k, const float* w,
              const float* k_scale, std::vector<int64_t> q_pos, std::vector<int64_t> k_start, const CheckFailure& fail);
  ~DeviceLayer();
  DeviceLayer(const DeviceLayer&) = delete;
  DeviceLayer& operator=(const DeviceLayer&) = delete;

  const LayerKeys& keys() const { return keys_; }
  int64_t queries() const { return shape_.queries; }
  // Every query, its q and w on the GPU.
  const QueryBatch& batch() const { return all_; }
  // Rows `rows` (strictly ascending) of batch(), as io/query_subset's batch_rows makes them: a view when they
  // are consecutive, else gathered on the GPU into buffers that the next gathering call (rows(), select())
  // reuses: a gathered batch is good until then.
  QueryBatch rows(std::span<const int64_t> rows);
  // topk_ref [queries, width] (-1 padded) and its declaration, for an audit to judge (LayerAudit).
  void set_topk_ref(std::vector<int32_t> topk_ref, int64_t width, RefDeclaration declaration);
  // One method's selections for every query by `engine` (the CUDA engine on this layer's GPU, set_layer(keys())
  // done), as pipelines/select's select_batch: a query that sees no key row gets an empty one.
  void select(SelectionEngine& engine, Method method, std::vector<std::vector<int64_t>>& out);

 private:
  struct Buffers;
  DeviceLayerShape shape_;
  LayerKeys keys_;
  QueryBatch all_;
  std::vector<int64_t> seeing_;   // the queries that see a key row
  std::unique_ptr<Buffers> buffers_;
};

}  // namespace hisa::cuda
