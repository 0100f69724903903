#pragma once
// Writes v1 dumps. Used by `hisa synth` and the tests; follows datasets/FORMAT.md.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/dump_model.hpp"

namespace hisa {

// One layer's tensors as float values; the writer encodes q and k to their element types (round to
// nearest even), so values that are already representable round-trip exactly.
struct LayerArrays {
  int64_t keys = 0, queries = 0, heads = 0, dim = 0;
  ElementType q_type = ElementType::BF16;
  ElementType k_type = ElementType::BF16;
  std::vector<float> k;         // [L, D]
  std::vector<float> q;         // [Nq, H, D]
  std::vector<float> w;         // [Nq, H]
  std::vector<int64_t> q_pos;   // [Nq]
  std::vector<int64_t> k_start;  // [Nq] or empty
  std::vector<float> k_scale;   // [L] or empty
  std::vector<int32_t> topk_ref;  // [Nq, ref_width] or empty
  int64_t ref_width = 0;
  RefDeclaration ref_declaration;  // written as topk_ref's attributes
  int64_t compress_ratio = 1;      // written as the layer's attribute when not 1
  std::optional<int64_t> window;   // written when set
};

struct WriteOptions {
  int gzip_level = 0;   // 0: no compression; 1-9: gzip with shuffle
  int64_t key_chunk_rows = 4096;
  int64_t query_chunk_rows = 64;
  bool bf16_as_uint16 = false;  // the alternative bfloat16 storage (uint16 + encoding attribute)
};

class DumpWriter {
 public:
  // Truncates path. Messages name the file as `name` (default: path), e.g. the final name of a temporary file.
  DumpWriter(const std::string& path, const FileAttributes& attributes, const std::string& name = "");
  ~DumpWriter();
  DumpWriter(DumpWriter&&) noexcept;
  DumpWriter& operator=(DumpWriter&&) noexcept;

  void add_sample(const std::string& name, const SampleAttributes& attributes);
  void add_layer(const std::string& sample, int layer, const LayerArrays& arrays, const WriteOptions& options = {});
  void close();  // flushes and closes; runtime_error when that fails (a full disk). The destructor closes unchecked.

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace hisa
