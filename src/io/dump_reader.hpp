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
  // What the values are reached through outside the file, "" when nothing: "external raw storage in a.bin",
  // "virtual (sources: a.h5)", "external link to other.h5:/k".
  std::string external;
};

// HDF5 features that reach outside the file: external links (as a sample, a layer or a dataset), datasets with
// external raw storage and virtual datasets. Unless allowed, a file with one is refused, so that what is audited
// is what the file holds (datasets/FORMAT.md, "What lies outside the file").
struct ReaderOptions {
  bool allow_external = false;  // follow them (--allow-external); a dangling link or missing source is still an error
  // With allow_external off: list them (DumpReader::external_objects()) instead of refusing the file. Links out are
  // not followed (what lies behind one is left out of samples()), and the values of a dataset stored outside are
  // refused when read. For `hisa inspect`, which shows them.
  bool list_external = false;
};

// One object that reaches outside the file.
struct ExternalObject {
  std::string path;    // its HDF5 path in the file: "/s1", "/s0/layer_0/k"
  std::string target;  // what it points to: "external link to other.h5:/s0", "external raw storage in /some/file"
};

class LayerReader;

class DumpReader {
 public:
  explicit DumpReader(const std::string& path, const ReaderOptions& options = {});
  ~DumpReader();
  DumpReader(DumpReader&&) noexcept;
  DumpReader& operator=(DumpReader&&) noexcept;

  const std::string& path() const;
  const FileAttributes& attributes() const;
  const std::vector<SampleEntry>& samples() const;
  const SampleEntry& sample(const std::string& name) const;  // InputError when absent
  // Things a user may want to know but that do not stop reading (unknown attribute values, stray objects).
  const std::vector<std::string>& warnings() const;
  // Every object that reaches outside the file (ReaderOptions), in the order met; empty unless the file has one and
  // the options let it be opened.
  const std::vector<ExternalObject>& external_objects() const;
  // All layer numbers present in any sample, ascending.
  std::vector<int> all_layers() const;

  // Opens /<sample>/layer_<N>, checks every dataset's presence, shape, type and filters.
  LayerReader open_layer(const std::string& sample, int layer) const;
  // The HDF5 path of a sample's layer group, as stored ("/s0/layer_007"); InputError when the sample lacks it.
  std::string layer_group_path(const std::string& sample, int layer) const;
  // The layer group's compress_ratio and window, checked, from its attributes alone (no dataset is opened).
  KeyCompression layer_compression(const std::string& sample, int layer) const;

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
  // Seconds this reader spent decoding element codes to floats and checking that values are finite, summed over
  // its reads; the rest of a read's time is HDF5's (the file, decompression). For --timings.
  double decoding_seconds() const;

  std::vector<DatasetDescription> describe() const;

 private:
  friend class DumpReader;
  struct Impl;
  explicit LayerReader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace hisa
