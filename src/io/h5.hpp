#pragma once
// Thin RAII and helper layer over the HDF5 C API. Only the loader and writer use it.
#include <hdf5.h>

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace hisa::h5 {

// Owns one HDF5 identifier and closes it with the matching H5?close.
class Handle {
 public:
  Handle() = default;
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle(Handle&& o) noexcept : id_(std::exchange(o.id_, H5I_INVALID_HID)), close_(o.close_) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = std::exchange(o.id_, H5I_INVALID_HID);
      close_ = o.close_;
    }
    return *this;
  }
  ~Handle() { reset(); }
  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  explicit operator bool() const { return valid(); }
  // Closes now and says whether that worked (HDF5 writes buffered data on close: a full disk shows here).
  herr_t close() {
    const herr_t status = id_ >= 0 && close_ ? close_(id_) : 0;
    id_ = H5I_INVALID_HID;
    return status;
  }

 private:
  void reset() {
    if (id_ >= 0 && close_) close_(id_);
    id_ = H5I_INVALID_HID;
  }
  hid_t id_ = H5I_INVALID_HID;
  herr_t (*close_)(hid_t) = nullptr;
};

inline Handle file(hid_t id) { return Handle(id, H5Fclose); }
inline Handle group(hid_t id) { return Handle(id, H5Gclose); }
inline Handle dataset(hid_t id) { return Handle(id, H5Dclose); }
inline Handle dataspace(hid_t id) { return Handle(id, H5Sclose); }
inline Handle datatype(hid_t id) { return Handle(id, H5Tclose); }
inline Handle attribute(hid_t id) { return Handle(id, H5Aclose); }
inline Handle plist(hid_t id) { return Handle(id, H5Pclose); }

// Silences HDF5's own error printing for the life of the process; we report errors ourselves.
void silence_errors();

// libhdf5 as Debian builds it is not thread-safe: threads that use it concurrently (the run's readers) hold this
// lock around every HDF5 call. Recursive, so a caller may hold it around calls that take it again.
std::recursive_mutex& library_mutex();

bool has_attribute(hid_t object, const char* name);
// Attribute readers: nullopt when absent; throw std::runtime_error (with a description of what was found)
// when present but of the wrong kind. Callers wrap that in an InputError with file and path.
// `variable_length`, when given, supplies the value of a variable-length string instead of H5Aread: the loader
// takes it from a child process (io/attribute_probe.hpp), since reading one can crash libhdf5 on a damaged file.
// Type and shape are still checked here (that reads only the object header).
std::optional<std::string> read_string_attribute(hid_t object, const char* name,
                                                 const std::function<std::string()>& variable_length = {});
// H5Aread of one variable-length string; throws std::runtime_error when HDF5 refuses.
std::string read_variable_string(hid_t attr, hid_t type, hid_t space, const char* name);
std::optional<int64_t> read_int_attribute(hid_t object, const char* name);
std::optional<double> read_float_attribute(hid_t object, const char* name);

void write_string_attribute(hid_t object, const char* name, const std::string& value);
void write_int_attribute(hid_t object, const char* name, int64_t value);
void write_float_attribute(hid_t object, const char* name, double value);

std::vector<int64_t> dataset_dims(hid_t dataset);
std::vector<std::string> child_names(hid_t group);  // in name order
bool child_is_group(hid_t parent, const std::string& name);
bool child_is_dataset(hid_t parent, const std::string& name);
bool child_exists(hid_t parent, const std::string& name);

// The custom-float types v1 uses for 16-bit floats (h5py reads both as float32/float16).
Handle bfloat16_type();
Handle float16_type();

// A short human description of a stored type: "float32", "float(16: s15 e7-14 m0-6 bias 127)", "uint8", ...
std::string describe_type(hid_t type);

struct Filter {
  int id = 0;
  std::string name;
  bool available = false;
};
std::vector<Filter> dataset_filters(hid_t dataset);
std::vector<int64_t> dataset_chunk(hid_t dataset);  // empty when contiguous
// What is wrong with a chunked dataset's chunk shape, "" when nothing: HDF5 never writes a chunk larger than a
// fixed dimension nor one of 4 GiB or more, and 1.10.8 reads past its buffers when a damaged layout message claims
// one (a segfault in H5VM_memcpyvv). Contiguous datasets give "".
std::string chunk_shape_problem(hid_t dataset);
// What is wrong with a dataset's storage for the shape it declares, "" when nothing. Data never written reads as
// fill values (zeros) where a dump must hold data, and a shape declared far beyond the file would be allocated
// before any read failed. Uncompressed contiguous data must be allocated in full and lie inside the file; chunked
// data (compressed or not) must have every chunk its shape needs stored. Compact, virtual and external storage
// are not judged here. Cheap: it reads the object header and the chunk index, no data.
std::string storage_problem(hid_t dataset);

// ----- Objects outside the file (datasets/FORMAT.md, "What lies outside the file") -----
// "FILE:PATH" when `name` in `parent` is an external link (read from the link itself, nothing is followed);
// nullopt for any other link (hard, soft) or none.
std::optional<std::string> external_link_target(hid_t parent, const std::string& name);
// Whether link `name` in `parent` leads to an object that opens (false for a dangling soft or external link).
bool link_resolves(hid_t parent, const std::string& name);
// The name of the file an open object lies in: another file's when it was reached through an external link.
std::string file_name_of(hid_t object);

// Where a dataset's values are stored outside its file: external raw files (H5Pset_external) or the source files
// of a virtual dataset (H5Pset_virtual). Kind::None for values stored in the file (contiguous, chunked, compact).
struct ExternalStorage {
  enum class Kind { None, Raw, Virtual };
  Kind kind = Kind::None;
  std::vector<std::string> files;  // as the dataset names them, each once; a virtual source "." is the file itself
  // "external raw storage in a.bin, b.bin" or "virtual (sources: a.h5, b.h5)"; "" for Kind::None.
  std::string description() const;
};
ExternalStorage external_storage(hid_t dataset);
// Why a dataset stored outside its file (file_path: the file that holds the dataset) would not read as what those
// files hold, "" when nothing: an external raw file that is missing or shorter than its segment (HDF5 reads the
// missing bytes as zeros), a virtual dataset's source file or dataset that is not there (read as fill values).
std::string external_storage_problem(hid_t dataset, const std::string& file_path);

// Reads rows [row_begin, row_begin + row_count) of a dataset whose first dimension is rows, into buf
// (which must hold row_count * elements-per-row values of mem_type). Throws std::runtime_error on failure.
void read_rows(hid_t dataset, hid_t mem_type, int64_t row_begin, int64_t row_count, void* buf);

}  // namespace hisa::h5
