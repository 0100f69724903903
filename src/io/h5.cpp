#include "io/h5.hpp"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace hisa::h5 {

std::recursive_mutex& library_mutex() {
  static std::recursive_mutex m;
  return m;
}

void silence_errors() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

bool has_attribute(hid_t object, const char* name) { return H5Aexists(object, name) > 0; }

namespace {

Handle open_attribute(hid_t object, const char* name) {
  return attribute(H5Aopen(object, name, H5P_DEFAULT));
}

std::string class_description(hid_t type) { return describe_type(type); }

}  // namespace

std::string read_variable_string(hid_t attr, hid_t type, hid_t space, const char* name) {
  Handle mem = datatype(H5Tcopy(H5T_C_S1));
  H5Tset_size(mem.get(), H5T_VARIABLE);
  H5Tset_cset(mem.get(), H5Tget_cset(type));
  char* value = nullptr;
  if (H5Aread(attr, mem.get(), &value) < 0) throw std::runtime_error("cannot read attribute '" + std::string(name) + "'");
  std::string out = value ? value : "";
  H5Dvlen_reclaim(mem.get(), space, H5P_DEFAULT, &value);
  return out;
}

std::optional<std::string> read_string_attribute(hid_t object, const char* name,
                                                 const std::function<std::string()>& variable_length) {
  if (!has_attribute(object, name)) return std::nullopt;
  Handle attr = open_attribute(object, name);
  Handle type = datatype(H5Aget_type(attr.get()));
  if (H5Tget_class(type.get()) != H5T_STRING) {
    throw std::runtime_error("attribute '" + std::string(name) + "' should be a string, found " +
                             class_description(type.get()));
  }
  // The reads below fill one element; an array of strings would overrun them.
  Handle space = dataspace(H5Aget_space(attr.get()));
  const hssize_t count = H5Sget_simple_extent_npoints(space.get());
  if (count != 1) {
    throw std::runtime_error("attribute '" + std::string(name) + "' should be a single string, found an array of " +
                             std::to_string(count) + " strings");
  }
  if (H5Tis_variable_str(type.get()) > 0) {
    if (variable_length) return variable_length();
    return read_variable_string(attr.get(), type.get(), space.get(), name);
  }
  size_t size = H5Tget_size(type.get());
  std::string buf(size, '\0');
  Handle mem = datatype(H5Tcopy(H5T_C_S1));
  H5Tset_size(mem.get(), size);
  H5Tset_cset(mem.get(), H5Tget_cset(type.get()));
  H5Tset_strpad(mem.get(), H5T_STR_NULLPAD);
  if (H5Aread(attr.get(), mem.get(), buf.data()) < 0) throw std::runtime_error("cannot read attribute '" + std::string(name) + "'");
  buf.resize(buf.find('\0') == std::string::npos ? buf.size() : buf.find('\0'));
  return buf;
}

std::optional<int64_t> read_int_attribute(hid_t object, const char* name) {
  if (!has_attribute(object, name)) return std::nullopt;
  Handle attr = open_attribute(object, name);
  Handle type = datatype(H5Aget_type(attr.get()));
  Handle space = dataspace(H5Aget_space(attr.get()));
  if (H5Sget_simple_extent_npoints(space.get()) != 1) {
    throw std::runtime_error("attribute '" + std::string(name) + "' should be a single integer, found an array");
  }
  H5T_class_t cls = H5Tget_class(type.get());
  // An enum over integers is what h5py writes for a numpy bool (FALSE = 0, TRUE = 1): its value is the integer.
  if (cls == H5T_INTEGER || (cls == H5T_ENUM && H5Tget_class(datatype(H5Tget_super(type.get())).get()) == H5T_INTEGER)) {
    int64_t v = 0;
    if (H5Aread(attr.get(), H5T_NATIVE_INT64, &v) < 0) throw std::runtime_error("cannot read attribute '" + std::string(name) + "'");
    return v;
  }
  if (cls == H5T_FLOAT) {  // h5py users sometimes store 128.0; accept whole numbers
    double v = 0;
    if (H5Aread(attr.get(), H5T_NATIVE_DOUBLE, &v) < 0) throw std::runtime_error("cannot read attribute '" + std::string(name) + "'");
    if (v == double(int64_t(v))) return int64_t(v);
    throw std::runtime_error("attribute '" + std::string(name) + "' should be an integer, found " + std::to_string(v));
  }
  throw std::runtime_error("attribute '" + std::string(name) + "' should be an integer, found " + class_description(type.get()));
}

std::optional<double> read_float_attribute(hid_t object, const char* name) {
  if (!has_attribute(object, name)) return std::nullopt;
  Handle attr = open_attribute(object, name);
  Handle type = datatype(H5Aget_type(attr.get()));
  Handle space = dataspace(H5Aget_space(attr.get()));
  H5T_class_t cls = H5Tget_class(type.get());
  if ((cls != H5T_INTEGER && cls != H5T_FLOAT) || H5Sget_simple_extent_npoints(space.get()) != 1) {
    throw std::runtime_error("attribute '" + std::string(name) + "' should be a number, found " + class_description(type.get()));
  }
  double v = 0;
  if (H5Aread(attr.get(), H5T_NATIVE_DOUBLE, &v) < 0) throw std::runtime_error("cannot read attribute '" + std::string(name) + "'");
  return v;
}

namespace {

void write_scalar_attribute(hid_t object, const char* name, hid_t file_type, hid_t mem_type, const void* value) {
  if (has_attribute(object, name)) H5Adelete(object, name);
  Handle space = dataspace(H5Screate(H5S_SCALAR));
  Handle attr = attribute(H5Acreate2(object, name, file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT));
  if (!attr || H5Awrite(attr.get(), mem_type, value) < 0) {
    throw std::runtime_error("cannot write attribute '" + std::string(name) + "'");
  }
}

}  // namespace

void write_string_attribute(hid_t object, const char* name, const std::string& value) {
  // Variable-length UTF-8, which h5py returns as str.
  Handle type = datatype(H5Tcopy(H5T_C_S1));
  H5Tset_size(type.get(), H5T_VARIABLE);
  H5Tset_cset(type.get(), H5T_CSET_UTF8);
  const char* p = value.c_str();
  write_scalar_attribute(object, name, type.get(), type.get(), &p);
}

void write_int_attribute(hid_t object, const char* name, int64_t value) {
  write_scalar_attribute(object, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &value);
}

void write_float_attribute(hid_t object, const char* name, double value) {
  write_scalar_attribute(object, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value);
}

std::vector<int64_t> dataset_dims(hid_t dataset) {
  Handle space = dataspace(H5Dget_space(dataset));
  int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 0) throw std::runtime_error("cannot read the dataset's shape");
  std::vector<hsize_t> dims(rank);
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  return std::vector<int64_t>(dims.begin(), dims.end());
}

namespace {

herr_t collect_name(hid_t, const char* name, const H5L_info_t*, void* out) {
  static_cast<std::vector<std::string>*>(out)->emplace_back(name);
  return 0;
}

// Opening the object and asking its identifier type works the same on HDF5 1.10 and 1.12+.
H5I_type_t child_type(hid_t parent, const std::string& name) {
  if (H5Lexists(parent, name.c_str(), H5P_DEFAULT) <= 0) return H5I_BADID;
  hid_t id = H5Oopen(parent, name.c_str(), H5P_DEFAULT);
  if (id < 0) return H5I_BADID;
  H5I_type_t type = H5Iget_type(id);
  H5Oclose(id);
  return type;
}

}  // namespace

std::vector<std::string> child_names(hid_t group) {
  std::vector<std::string> names;
  hsize_t idx = 0;
  if (H5Literate(group, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_name, &names) < 0) {
    throw std::runtime_error("cannot list the group's members (file damaged?)");
  }
  return names;
}

bool child_exists(hid_t parent, const std::string& name) { return H5Lexists(parent, name.c_str(), H5P_DEFAULT) > 0; }
bool child_is_group(hid_t parent, const std::string& name) { return child_type(parent, name) == H5I_GROUP; }
bool child_is_dataset(hid_t parent, const std::string& name) { return child_type(parent, name) == H5I_DATASET; }

namespace {

Handle custom_float(size_t exponent_pos, size_t exponent_bits, size_t mantissa_bits, size_t bias) {
  Handle t = datatype(H5Tcopy(H5T_IEEE_F32LE));
  // Same sequence h5py uses for float16: fields first (they fit in 32 bits), then shrink.
  H5Tset_fields(t.get(), 15, exponent_pos, exponent_bits, 0, mantissa_bits);
  H5Tset_offset(t.get(), 0);
  H5Tset_precision(t.get(), 16);
  H5Tset_size(t.get(), 2);
  H5Tset_ebias(t.get(), bias);
  return t;
}

}  // namespace

Handle bfloat16_type() { return custom_float(7, 8, 7, 127); }
Handle float16_type() { return custom_float(10, 5, 10, 15); }

std::string describe_type(hid_t type) {
  size_t size = H5Tget_size(type);
  switch (H5Tget_class(type)) {
    case H5T_INTEGER:
      return std::string(H5Tget_sign(type) == H5T_SGN_NONE ? "uint" : "int") + std::to_string(size * 8);
    case H5T_FLOAT: {
      size_t spos, epos, esize, mpos, msize;
      H5Tget_fields(type, &spos, &epos, &esize, &mpos, &msize);
      size_t bias = H5Tget_ebias(type);
      if (size == 4 && epos == 23 && esize == 8 && msize == 23 && bias == 127) return "float32";
      if (size == 8 && epos == 52 && esize == 11 && msize == 52) return "float64";
      if (size == 2 && epos == 10 && esize == 5 && msize == 10 && bias == 15) return "float16";
      if (size == 2 && epos == 7 && esize == 8 && msize == 7 && bias == 127) return "bfloat16";
      return "float(" + std::to_string(size * 8) + " bits: sign " + std::to_string(spos) + ", exponent " +
             std::to_string(epos) + "+" + std::to_string(esize) + ", mantissa " + std::to_string(mpos) + "+" +
             std::to_string(msize) + ", bias " + std::to_string(bias) + ")";
    }
    case H5T_STRING: return "string";
    case H5T_COMPOUND: return "compound";
    case H5T_OPAQUE: return "opaque(" + std::to_string(size) + " bytes)";
    case H5T_ENUM: return "enum";
    case H5T_ARRAY: return "array";
    case H5T_VLEN: return "vlen";
    case H5T_REFERENCE: return "reference";
    case H5T_BITFIELD: return "bitfield";
    case H5T_TIME: return "time";
    default: return "unknown type";
  }
}

std::vector<Filter> dataset_filters(hid_t dataset) {
  std::vector<Filter> out;
  Handle dcpl = plist(H5Dget_create_plist(dataset));
  int n = H5Pget_nfilters(dcpl.get());
  for (int i = 0; i < n; ++i) {
    unsigned flags = 0, config = 0;
    size_t nelmts = 0;
    char name[256] = {0};
    H5Z_filter_t id = H5Pget_filter2(dcpl.get(), unsigned(i), &flags, &nelmts, nullptr, sizeof(name), name, &config);
    Filter f;
    f.id = int(id);
    f.name = name[0] ? name : ("filter " + std::to_string(id));
    f.available = H5Zfilter_avail(id) > 0;
    out.push_back(f);
  }
  return out;
}

std::vector<int64_t> dataset_chunk(hid_t dataset) {
  Handle dcpl = plist(H5Dget_create_plist(dataset));
  if (H5Pget_layout(dcpl.get()) != H5D_CHUNKED) return {};
  hsize_t dims[32];
  int rank = H5Pget_chunk(dcpl.get(), 32, dims);
  return std::vector<int64_t>(dims, dims + std::max(rank, 0));
}

std::string chunk_shape_problem(hid_t dataset) {
  const std::vector<int64_t> chunk = dataset_chunk(dataset);
  if (chunk.empty()) return "";
  Handle space = dataspace(H5Dget_space(dataset));
  const int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 0) return "cannot read the dataset's shape";
  std::vector<hsize_t> dims(static_cast<size_t>(rank)), max_dims(static_cast<size_t>(rank));
  H5Sget_simple_extent_dims(space.get(), dims.data(), max_dims.data());
  if (chunk.size() != size_t(rank)) {
    return "chunks have " + std::to_string(chunk.size()) + " dimensions but the dataset has " + std::to_string(rank);
  }
  Handle type = datatype(H5Dget_type(dataset));
  double bytes = double(H5Tget_size(type.get()));
  for (int i = 0; i < rank; ++i) {
    const bool fixed = max_dims[size_t(i)] != H5S_UNLIMITED;
    if (chunk[size_t(i)] < 1 || (fixed && hsize_t(chunk[size_t(i)]) > max_dims[size_t(i)])) {
      return "chunk dimension " + std::to_string(i) + " is " + std::to_string(chunk[size_t(i)]) +
             ", outside [1, " + std::to_string(max_dims[size_t(i)]) + "] (the dataset's extent): the layout is damaged";
    }
    bytes *= double(chunk[size_t(i)]);
  }
  if (bytes >= 4294967296.0) return "chunks of 4 GiB or more (HDF5's limit): the layout is damaged";
  return "";
}

namespace {

// "[1000000000, 128] float32, 476.8 GiB" for messages.
std::string declared_text(const std::vector<int64_t>& dims, hid_t type, double bytes) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  char size[64];
  const char* unit[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int u = 0;
  double v = bytes;
  while (v >= 1024 && u < 6) v /= 1024, ++u;
  std::snprintf(size, sizeof size, u == 0 ? "%.0f %s" : "%.1f %s", v, unit[u]);
  return s + "] " + describe_type(type) + ", " + size;
}

}  // namespace

std::string storage_problem(hid_t dataset) {
  const std::vector<int64_t> dims = dataset_dims(dataset);
  Handle type = datatype(H5Dget_type(dataset));
  double elements = 1;  // in double: a damaged or hostile shape may overflow any integer
  for (int64_t d : dims) elements *= double(d);
  if (elements == 0) return "";
  const double declared = elements * double(H5Tget_size(type.get()));
  Handle dcpl = plist(H5Dget_create_plist(dataset));
  if (H5Pget_external_count(dcpl.get()) > 0) return "";  // external raw storage is judged where it is opened
  const std::string what = "declares " + declared_text(dims, type.get(), declared);
  switch (H5Pget_layout(dcpl.get())) {
    case H5D_CONTIGUOUS: {
      const haddr_t offset = H5Dget_offset(dataset);
      const hsize_t stored = H5Dget_storage_size(dataset);
      if (offset == HADDR_UNDEF || stored == 0) {
        return what + " but none of it was ever written (no storage is allocated; it would read as fill values)";
      }
      if (double(stored) < declared) {
        return what + " but stores only " + std::to_string(stored) + " bytes of it";
      }
      Handle file_id = file(H5Iget_file_id(dataset));
      hsize_t file_size = 0;
      if (file_id && H5Fget_filesize(file_id.get(), &file_size) >= 0 && double(offset) + double(stored) > double(file_size)) {
        return what + " stored up to byte " + std::to_string(offset + stored) + ", but the file holds only " +
               std::to_string(file_size) + " bytes (truncated file?)";
      }
      return "";
    }
    case H5D_CHUNKED: {
      const std::vector<int64_t> chunk = dataset_chunk(dataset);
      double needed = 1;
      for (size_t i = 0; i < dims.size() && i < chunk.size(); ++i) {
        needed *= std::ceil(double(dims[i]) / double(std::max<int64_t>(chunk[i], 1)));
      }
      hsize_t stored = 0;
      Handle space = dataspace(H5Dget_space(dataset));  // HDF5 1.10 refuses H5S_ALL here
      if (!space || H5Dget_num_chunks(dataset, space.get(), &stored) < 0) return "cannot count its stored chunks (damaged file?)";
      if (double(stored) < needed) {
        char count[32];
        std::snprintf(count, sizeof count, "%.0f", needed);
        return what + " in " + count + " chunks, but only " + std::to_string(stored) +
               " are stored: the rest was never written (it would read as fill values)";
      }
      return "";
    }
    default:
      return "";
  }
}

void read_rows(hid_t dataset, hid_t mem_type, int64_t row_begin, int64_t row_count, void* buf) {
  if (row_count <= 0) return;
  Handle file_space = dataspace(H5Dget_space(dataset));
  int rank = H5Sget_simple_extent_ndims(file_space.get());
  std::vector<hsize_t> dims(rank), start(rank, 0), count(rank);
  H5Sget_simple_extent_dims(file_space.get(), dims.data(), nullptr);
  count = dims;
  start[0] = hsize_t(row_begin);
  count[0] = hsize_t(row_count);
  if (H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr) < 0) {
    throw std::runtime_error("cannot select rows " + std::to_string(row_begin) + ".." + std::to_string(row_begin + row_count));
  }
  Handle mem_space = dataspace(H5Screate_simple(rank, count.data(), nullptr));
  if (H5Dread(dataset, mem_type, mem_space.get(), file_space.get(), H5P_DEFAULT, buf) < 0) {
    throw std::runtime_error("read failed for rows " + std::to_string(row_begin) + ".." +
                             std::to_string(row_begin + row_count - 1) + " (truncated or damaged file?)");
  }
}


// ---------------------------------------------------------------------------------------------------
// Objects outside the file.

std::optional<std::string> external_link_target(hid_t parent, const std::string& name) {
  H5L_info_t info{};
  if (H5Lget_info(parent, name.c_str(), &info, H5P_DEFAULT) < 0 || info.type != H5L_TYPE_EXTERNAL) return std::nullopt;
  std::string value(info.u.val_size, '\0');
  const char* file = nullptr;
  const char* path = nullptr;
  unsigned flags = 0;
  if (value.empty() || H5Lget_val(parent, name.c_str(), value.data(), value.size(), H5P_DEFAULT) < 0 ||
      H5Lunpack_elink_val(value.data(), value.size(), &flags, &file, &path) < 0 || !file || !path) {
    return std::string("(an external link whose target cannot be read)");
  }
  return std::string(file) + ":" + path;
}

bool link_resolves(hid_t parent, const std::string& name) {
  if (H5Lexists(parent, name.c_str(), H5P_DEFAULT) <= 0) return false;
  const hid_t id = H5Oopen(parent, name.c_str(), H5P_DEFAULT);
  if (id < 0) return false;
  H5Oclose(id);
  return true;
}

namespace {

// A string from an HDF5 getter that, given no buffer, says how long the string is: get(buffer, size) -> length.
// "" when it fails.
template <typename Get>
std::string sized_string(Get get) {
  const ssize_t n = get(nullptr, 0);
  if (n <= 0) return "";
  std::string s(size_t(n) + 1, '\0');
  get(s.data(), s.size());
  s.resize(size_t(n));
  return s;
}

}  // namespace

std::string file_name_of(hid_t object) {
  return sized_string([&](char* buf, size_t size) { return H5Fget_name(object, buf, size); });
}

namespace {

void add_once(std::vector<std::string>& names, std::string name) {
  if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(std::move(name));
}

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

// A virtual dataset's mapping `index`: H5Pget_virtual_filename or H5Pget_virtual_dsetname.
template <typename Get>
std::string plist_name(hid_t dcpl, size_t index, Get get) {
  return sized_string([&](char* buf, size_t size) { return get(dcpl, index, buf, size); });
}

struct RawSegment {
  std::string name;
  off_t offset = 0;
  hsize_t size = 0;  // H5F_UNLIMITED: to the end of the file
};

std::vector<RawSegment> raw_segments(hid_t dcpl) {
  std::vector<RawSegment> out;
  const int n = H5Pget_external_count(dcpl);
  for (int i = 0; i < n; ++i) {
    char name[4096] = {0};
    RawSegment s;
    if (H5Pget_external(dcpl, unsigned(i), sizeof name, name, &s.offset, &s.size) < 0) continue;
    s.name = name;
    out.push_back(std::move(s));
  }
  return out;
}

std::string directory_of(const std::string& file_path) {
  const std::string dir = std::filesystem::path(file_path).parent_path().string();
  return dir.empty() ? "." : dir;
}

// Where HDF5 looks for an external raw file: the external-file prefix (HDF5_EXTFILE_PREFIX, else the dataset's
// access property; "${ORIGIN}" is the directory of the file), else the working directory.
std::string raw_file_location(hid_t dataset, const std::string& name, const std::string& file_path) {
  if (name.empty() || name.front() == '/') return name;
  std::string prefix;
  if (const char* env = std::getenv("HDF5_EXTFILE_PREFIX")) {
    prefix = env;
  } else {
    Handle dapl = plist(H5Dget_access_plist(dataset));
    if (dapl) prefix = sized_string([&](char* buf, size_t size) { return H5Pget_efile_prefix(dapl.get(), buf, size); });
  }
  if (prefix.empty()) return name;
  if (const size_t at = prefix.find("${ORIGIN}"); at != std::string::npos) {
    prefix.replace(at, 9, directory_of(file_path));
  }
  return prefix + "/" + name;
}

std::string raw_storage_problem(hid_t dataset, hid_t dcpl, const std::string& file_path) {
  Handle space = dataspace(H5Dget_space(dataset));
  Handle type = datatype(H5Dget_type(dataset));
  const hssize_t points = H5Sget_simple_extent_npoints(space.get());
  uint64_t remaining = points > 0 ? uint64_t(points) * H5Tget_size(type.get()) : 0;
  for (const RawSegment& s : raw_segments(dcpl)) {
    const uint64_t need = std::min<uint64_t>(remaining, s.size);
    remaining -= need;
    if (need == 0) continue;
    const std::string location = raw_file_location(dataset, s.name, file_path);
    std::error_code ec;
    if (!std::filesystem::is_regular_file(location, ec)) {
      return "external raw file " + s.name + " is missing (or not a regular file) at " + location;
    }
    const uint64_t size = std::filesystem::file_size(location, ec);
    if (ec || size < uint64_t(s.offset) + need) {
      return "external raw file " + s.name + " holds " + std::to_string(size) + " bytes, but the dataset keeps bytes " +
             std::to_string(s.offset) + ".." + std::to_string(uint64_t(s.offset) + need) +
             " there (HDF5 would read the missing ones as zeros)";
    }
  }
  return "";
}

// Whether dataset `name` is in the HDF5 file at `path` (or in the file of `object` when path is ".").
bool source_dataset_exists(hid_t object, const std::string& path, const std::string& name) {
  if (path == ".") {
    Handle file = Handle(H5Iget_file_id(object), H5Fclose);
    return file && H5Oexists_by_name(file.get(), name.c_str(), H5P_DEFAULT) > 0;
  }
  Handle file = h5::file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  return file && H5Oexists_by_name(file.get(), name.c_str(), H5P_DEFAULT) > 0;
}

// Where HDF5 finds a virtual dataset's source file: as named when absolute, else beside the file that holds the
// virtual dataset, else in the working directory. "" when in none of them.
std::string virtual_source_location(const std::string& name, const std::string& file_path) {
  std::error_code ec;
  std::vector<std::string> candidates;
  if (!name.empty() && name.front() == '/') {
    candidates = {name, directory_of(file_path) + "/" + std::filesystem::path(name).filename().string()};
  } else {
    candidates = {directory_of(file_path) + "/" + name, name};
  }
  for (const auto& c : candidates) {
    if (std::filesystem::is_regular_file(c, ec)) return c;
  }
  return "";
}

std::string virtual_storage_problem(hid_t dataset, hid_t dcpl, const std::string& file_path) {
  size_t count = 0;
  if (H5Pget_virtual_count(dcpl, &count) < 0) return "cannot read the virtual dataset's mappings (damaged file?)";
  for (size_t i = 0; i < count; ++i) {
    const std::string file = plist_name(dcpl, i, H5Pget_virtual_filename);
    const std::string name = plist_name(dcpl, i, H5Pget_virtual_dsetname);
    // printf-style names (%b) stand for many files, and a search prefix moves them: HDF5 is left to find those.
    if (file.find('%') != std::string::npos || name.find('%') != std::string::npos || std::getenv("HDF5_VDS_PREFIX")) {
      continue;
    }
    const std::string location = file == "." ? "." : virtual_source_location(file, file_path);
    if (location.empty()) {
      return "virtual dataset's source file " + file + " is missing (HDF5 would read its part as fill values)";
    }
    if (!source_dataset_exists(dataset, location, name)) {
      return "virtual dataset's source " + file + ":" + name + " does not exist (HDF5 would read its part as fill values)";
    }
  }
  return "";
}

}  // namespace

std::string ExternalStorage::description() const {
  switch (kind) {
    case Kind::Raw: return "external raw storage in " + joined(files);
    case Kind::Virtual: return "virtual (sources: " + joined(files) + ")";
    case Kind::None: break;
  }
  return "";
}

ExternalStorage external_storage(hid_t dataset) {
  ExternalStorage out;
  Handle dcpl = plist(H5Dget_create_plist(dataset));
  if (!dcpl) return out;
  if (H5Pget_layout(dcpl.get()) == H5D_VIRTUAL) {
    out.kind = ExternalStorage::Kind::Virtual;
    size_t count = 0;
    H5Pget_virtual_count(dcpl.get(), &count);
    for (size_t i = 0; i < count; ++i) add_once(out.files, plist_name(dcpl.get(), i, H5Pget_virtual_filename));
  } else if (H5Pget_external_count(dcpl.get()) > 0) {
    out.kind = ExternalStorage::Kind::Raw;
    for (const RawSegment& s : raw_segments(dcpl.get())) add_once(out.files, s.name);
  }
  return out;
}

std::string external_storage_problem(hid_t dataset, const std::string& file_path) {
  Handle dcpl = plist(H5Dget_create_plist(dataset));
  if (!dcpl) return "";
  if (H5Pget_layout(dcpl.get()) == H5D_VIRTUAL) return virtual_storage_problem(dataset, dcpl.get(), file_path);
  if (H5Pget_external_count(dcpl.get()) > 0) return raw_storage_problem(dataset, dcpl.get(), file_path);
  return "";
}

}  // namespace hisa::h5
