#include "io/h5.hpp"

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

}  // namespace hisa::h5
