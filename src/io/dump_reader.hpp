#pragma once
// Streaming reader for v1 dumps (datasets/FORMAT.md). Opening a file reads only attributes; keys and
// queries are read one layer at a time, in row chunks, and validated as they are decoded. Every problem
// is an InputError naming the file, the HDF5 path and what was expected and found.
#include <memory>
#include <string>
#include <vector>

#include "io/dump_model.hpp"

namespace hisa {

struct SampleEntry {
  std::string name;
  SampleAttributes attributes;
  std::vector<int> layers;  // ascending
};

struct DatasetDescription {
  std::string name;
  std::vector<int64_t> dims;
  std::string stored_type;   // as HDF5 describes it, e.g. "bfloat16", "uint8"
  std::string element_type;  // as v1 reads it: f32, f16, bf16, fp8, int64, ...
  std::vector<int64_t> chunk;  // empty: contiguous
  std::vector<std::string> filters;
};

class LayerReader;

class DumpReader {
 public:
  explicit DumpReader(const std::string& path);
  ~DumpReader();
  DumpReader(DumpReader&&) noexcept;
  DumpReader& operator=(DumpReader&&) noexcept;

  const std::string& path() const;
  const FileAttributes& attributes() const;
  const std::vector<SampleEntry>& samples() const;
  const SampleEntry& sample(const std::string& name) const;  // InputError when absent
  // Things a user may want to know but that do not stop reading (unknown attribute values, stray objects).
  const std::vector<std::string>& warnings() const;
  // All layer numbers present in any sample, ascending.
  std::vector<int> all_layers() const;

  // Opens /<sample>/layer_<N>, checks every dataset's presence, shape, type and filters.
  LayerReader open_layer(const std::string& sample, int layer) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class LayerReader {
 public:
  ~LayerReader();
  LayerReader(LayerReader&&) noexcept;
  LayerReader& operator=(LayerReader&&) noexcept;

  const LayerShape& shape() const;
  const std::string& group_path() const;  // "/<sample>/layer_<N>", spelled as stored (e.g. layer_007)

  // All keys, decoded; read in row chunks so only one chunk of raw data is held besides the result.
  LayerKeys read_keys() const;
  // The same into `keys`, reusing its storage: a recycled LayerKeys of the same size is neither refilled with
  // zeros nor faulted in again, which for a 128K-key layer was most of the read time.
  void read_keys_into(LayerKeys& keys) const;
  // Queries [first, first + count), decoded and validated (positions against L, finite values).
  QueryBatch read_queries(int64_t first, int64_t count) const;

  std::vector<DatasetDescription> describe() const;

 private:
  friend class DumpReader;
  struct Impl;
  explicit LayerReader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace hisa
