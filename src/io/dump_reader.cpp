// The dump reader (dump_reader.hpp). Over 500 lines because it is the one place that holds a file to
// datasets/FORMAT.md: every attribute, dataset, shape, type, chunking and value rule with its message sits here,
// beside the reading it guards, so the two cannot drift apart.
#include "io/dump_reader.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <map>
#include <new>
#include <sstream>

#include "core/error.hpp"
#include "core/huge_pages.hpp"
#include "core/stopwatch.hpp"
#include "io/attribute_probe.hpp"
#include "io/h5.hpp"
#include "io/tensor_check.hpp"
#include "select/config.hpp"

namespace hisa {

namespace {

// How a tensor's element bits are stored and must be read before decoding.
// PackedFp4: two e2m1 codes per uint8 (the first in the low nibble), with a uint8 ue8m0 scale per 32 values in
// the tensor's *_scale_blocks dataset.
enum class Storage { NativeFloat, CustomFloat16, UInt16Bits, UInt8Bits, PackedFp4 };

struct TensorType {
  ElementType element;
  Storage storage;
  bool signed_bits = false;  // UInt16Bits/UInt8Bits stored as int16/int8 (e.g. torch .view(torch.int16))
};

std::string join_dims(const std::vector<int64_t>& dims) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < dims.size(); ++i) s << (i ? ", " : "") << dims[i];
  s << "]";
  return s.str();
}

std::string filter_hint(const h5::Filter& f) {
  return "compression filter '" + f.name + "' (HDF5 filter id " + std::to_string(f.id) +
         ") is not available in this HDF5 library; install its plugin and point HDF5_PLUGIN_PATH at it, or "
         "rewrite the file with gzip (e.g. h5repack -f GZIP=4)";
}

// Parses the layer number out of "layer_<N>"; -1 when the name is not of that form.
int parse_layer_name(const std::string& name) {
  if (name.rfind("layer_", 0) != 0 || name.size() == 6) return -1;
  int value = 0;
  for (size_t i = 6; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9' || value > 100000000) return -1;
    value = value * 10 + (name[i] - '0');
  }
  return value;
}

// The value the attribute probe read for a variable-length string attribute (this process never reads one).
std::function<std::string()> probed_value(const ProbedAttributes& probed, const std::string& object_path,
                                          const char* name) {
  return [&probed, object_path, name] {
    const std::string* v = probed.find(object_path, name);
    if (!v) throw std::runtime_error(std::string("attribute '") + name + "' could not be read (damaged file?)");
    return *v;
  };
}

}  // namespace

// A layer group's compress_ratio and window (datasets/FORMAT.md, "Compressed keys"), checked; fail(message) throws.
template <typename Fail>
KeyCompression read_compression(hid_t group, Fail fail) {
  auto read = [&](const char* name) {
    std::optional<int64_t> v;
    try {
      v = h5::read_int_attribute(group, name);
    } catch (const std::exception& e) {
      fail(std::string(e.what()));
    }
    return v;
  };
  const auto c = read("compress_ratio");
  const auto window = read("window");
  check_compression(c, window, [&](const std::string&, const std::string& message) { fail(message); });
  return {c.value_or(1), window};
}

// ---------------------------------------------------------------------------------------------------
struct LayerReader::Impl {
  std::string file_path;
  std::string group_path;
  std::shared_ptr<h5::Handle> file;
  std::shared_ptr<const ProbedAttributes> probed;
  h5::Handle group, k, q, w, q_pos, k_start, k_scale, topk_ref;
  h5::Handle k_scale_blocks, q_scale_blocks;  // fp4 tensors' block scales
  TensorType k_type{}, q_type{};
  LayerShape shape;
  mutable double decoding = 0;  // seconds in decode_parallel and check_finite (decoding_seconds())
  // Listing mode (ReaderOptions::list_external): a dataset of this layer whose values lie outside the file, and
  // what it points to; reading the layer is then refused. Empty: nothing to refuse.
  ExternalObject stored_outside;

  void refuse_stored_outside() const {
    if (stored_outside.path.empty()) return;
    fail(stored_outside.path,
         stored_outside.target + ": not read: hisa reads only what the file itself holds; pass --allow-external to read it");
  }

  [[noreturn]] void fail(const std::string& dataset, const std::string& message) const {
    throw InputError(file_path, dataset.empty() ? group_path : group_path + "/" + dataset, message);
  }

  // Runs `resize` (the buffers for a read of `dataset`); running out of memory is said with the file and path.
  template <typename Resize>
  void allocate(const std::string& dataset, Resize resize) const {
    auto shape_text = [&] {
      return " (L = " + std::to_string(shape.keys) + ", Nq = " + std::to_string(shape.queries) + ", H = " +
             std::to_string(shape.heads) + ", D = " + std::to_string(shape.dim) + ")";
    };
    try {
      resize();
    } catch (const std::bad_alloc&) {
      fail(dataset, "out of memory for its decoded values" + shape_text());
    } catch (const std::length_error&) {
      fail(dataset, "its decoded values would not fit in memory" + shape_text());
    }
  }

  h5::Handle open_dataset(const std::string& name, bool required) {
    if (!h5::child_exists(group.get(), name)) {
      if (required) fail(name, "missing dataset (every layer group needs k, q, w and q_pos)");
      return {};
    }
    if (!h5::child_is_dataset(group.get(), name)) fail(name, "expected a dataset, found a group or link");
    h5::Handle d = h5::dataset(H5Dopen2(group.get(), name.c_str(), H5P_DEFAULT));
    if (!d) fail(name, "cannot open dataset (damaged file?)");
    const auto filters = h5::dataset_filters(d.get());
    for (const auto& f : filters) {
      if (!f.available) fail(name, filter_hint(f));
    }
    if (filters.empty()) {
      // Unfiltered chunks are read straight into our buffers without HDF5's chunk cache: every row is read once
      // (keys in pieces, queries in runs), and passing whole chunks through the 1 MiB cache made reading a layer's
      // keys ten times slower. Filtered chunks keep the cache, which spares decompressing a chunk twice.
      h5::Handle access = h5::plist(H5Pcreate(H5P_DATASET_ACCESS));
      if (access && H5Pset_chunk_cache(access.get(), 0, 0, 1.0) >= 0) {
        h5::Handle uncached = h5::dataset(H5Dopen2(group.get(), name.c_str(), access.get()));
        if (uncached) d = std::move(uncached);
      }
    }
    if (std::string problem = h5::chunk_shape_problem(d.get()); !problem.empty()) fail(name, problem);
    return d;
  }

  std::vector<int64_t> dims_of(const h5::Handle& d, const std::string& name, size_t rank) {
    std::vector<int64_t> dims;
    try {
      dims = h5::dataset_dims(d.get());
    } catch (const std::exception& e) {
      fail(name, e.what());
    }
    if (dims.size() != rank) {
      fail(name, "expected " + std::to_string(rank) + " dimensions, found " + std::to_string(dims.size()) + " " +
                     join_dims(dims));
    }
    return dims;
  }

  TensorType tensor_type(const h5::Handle& d, const std::string& name) {
    h5::Handle type = h5::datatype(H5Dget_type(d.get()));
    std::string found = h5::describe_type(type.get());
    std::optional<std::string> encoding;
    try {
      encoding = h5::read_string_attribute(d.get(), "encoding", probed_value(*probed, group_path + "/" + name, "encoding"));
    } catch (const std::exception& e) {
      fail(name, e.what());
    }
    H5T_class_t cls = H5Tget_class(type.get());
    size_t size = H5Tget_size(type.get());
    // The bits are what matter: int16/int8 storage (what torch's .view(torch.int16) gives) is read as is.
    const bool is_signed = cls == H5T_INTEGER && H5Tget_sign(type.get()) == H5T_SGN_2;
    if (encoding) {
      if (*encoding == "bfloat16") {
        if (cls != H5T_INTEGER || size != 2) fail(name, "encoding \"bfloat16\" needs uint16 storage, found " + found);
        return {ElementType::BF16, Storage::UInt16Bits, is_signed};
      }
      if (*encoding == "float8_e4m3fn") {
        if (cls != H5T_INTEGER || size != 1) fail(name, "encoding \"float8_e4m3fn\" needs uint8 storage, found " + found);
        return {ElementType::FP8_E4M3, Storage::UInt8Bits, is_signed};
      }
      if (*encoding == "float4_e2m1fn_x2") {
        if (cls != H5T_INTEGER || size != 1) fail(name, "encoding \"float4_e2m1fn_x2\" needs uint8 storage, found " + found);
        return {ElementType::FP4_E2M1, Storage::PackedFp4, is_signed};
      }
      fail(name, "unsupported encoding \"" + *encoding +
                     "\" (v1 knows \"bfloat16\", \"float8_e4m3fn\" and \"float4_e2m1fn_x2\")");
    }
    if (found == "float32") return {ElementType::F32, Storage::NativeFloat};
    if (found == "float16") return {ElementType::F16, Storage::CustomFloat16};
    if (found == "bfloat16") return {ElementType::BF16, Storage::CustomFloat16};
    if (cls == H5T_INTEGER) {
      fail(name, "unsupported element type " + found +
                     " without an 'encoding' attribute (uint16 needs encoding=\"bfloat16\", uint8 needs "
                     "encoding=\"float8_e4m3fn\")");
    }
    fail(name, "unsupported element type " + found + " (v1 stores float32, float16, bfloat16 or fp8 e4m3fn)");
  }

  void require_class(const h5::Handle& d, const std::string& name, H5T_class_t want, const char* what) {
    h5::Handle type = h5::datatype(H5Dget_type(d.get()));
    if (H5Tget_class(type.get()) != want) {
      fail(name, std::string("expected ") + what + ", found " + h5::describe_type(type.get()));
    }
  }

  void open(const FileAttributes& attrs) {
    k = open_dataset("k", true);
    q = open_dataset("q", true);
    w = open_dataset("w", true);
    q_pos = open_dataset("q_pos", true);
    k_start = open_dataset("k_start", false);
    k_scale = open_dataset("k_scale", false);
    topk_ref = open_dataset("topk_ref", false);

    auto kd = dims_of(k, "k", 2);
    auto qd = dims_of(q, "q", 3);
    auto wd = dims_of(w, "w", 2);
    auto pd = dims_of(q_pos, "q_pos", 1);
    k_type = tensor_type(k, "k");
    q_type = tensor_type(q, "q");
    shape.k_type = k_type.element;
    shape.q_type = q_type.element;
    // fp4 packs two values per byte: the stored last dimension is D/2.
    const int64_t k_per_byte = k_type.element == ElementType::FP4_E2M1 ? 2 : 1;
    const int64_t q_per_byte = q_type.element == ElementType::FP4_E2M1 ? 2 : 1;
    shape.keys = kd[0];
    shape.dim = kd[1] * k_per_byte;
    shape.queries = qd[0];
    shape.heads = qd[1];
    if (shape.dim != attrs.head_dim) {
      fail("k", "second dimension is " + std::to_string(kd[1]) + (k_per_byte == 2 ? " bytes of two fp4 values" : "") +
                    " but the file's head_dim is " + std::to_string(attrs.head_dim) +
                    (k_per_byte == 2 ? " (fp4 stores head_dim / 2 bytes)" : ""));
    }
    if (shape.keys < 1) fail("k", "holds no keys (shape " + join_dims(kd) + ")");
    if (qd[1] != attrs.n_heads || qd[2] * q_per_byte != attrs.head_dim) {
      fail("q", "shape " + join_dims(qd) + " does not match [Nq, n_heads=" + std::to_string(attrs.n_heads) +
                    ", head_dim=" + std::to_string(attrs.head_dim) + (q_per_byte == 2 ? " / 2 bytes of fp4" : "") + "]");
    }
    k_scale_blocks = open_block_scales(k_type, "k", {shape.keys});
    q_scale_blocks = open_block_scales(q_type, "q", {shape.queries, shape.heads});
    if (wd[0] != shape.queries || wd[1] != shape.heads) {
      fail("w", "shape " + join_dims(wd) + " does not match q's [Nq, H] = [" + std::to_string(shape.queries) + ", " +
                    std::to_string(shape.heads) + "]");
    }
    if (pd[0] != shape.queries) {
      fail("q_pos", "length " + std::to_string(pd[0]) + " does not match q's Nq = " + std::to_string(shape.queries));
    }
    require_class(w, "w", H5T_FLOAT, "float32");
    require_class(q_pos, "q_pos", H5T_INTEGER, "int64");
    if (k_start) {
      auto sd = dims_of(k_start, "k_start", 1);
      if (sd[0] != shape.queries) {
        fail("k_start", "length " + std::to_string(sd[0]) + " does not match q's Nq = " + std::to_string(shape.queries));
      }
      require_class(k_start, "k_start", H5T_INTEGER, "int64");
      shape.has_k_start = true;
    }
    if (k_scale) {
      auto sd = dims_of(k_scale, "k_scale", 1);
      if (sd[0] != shape.keys) {
        fail("k_scale", "length " + std::to_string(sd[0]) + " does not match k's L = " + std::to_string(shape.keys));
      }
      require_class(k_scale, "k_scale", H5T_FLOAT, "float32");
      shape.has_k_scale = true;
    } else if (k_type.element == ElementType::FP8_E4M3) {
      fail("k_scale", "missing: fp8 keys need their per-token scales");
    }
    if (topk_ref) {
      auto rd = dims_of(topk_ref, "topk_ref", 2);
      if (rd[0] != shape.queries) {
        fail("topk_ref", "shape " + join_dims(rd) + " does not match q's Nq = " + std::to_string(shape.queries));
      }
      if (rd[1] != attrs.index_topk) {
        fail("topk_ref", "shape " + join_dims(rd) + " has " + std::to_string(rd[1]) + " columns, expected index_topk = " +
                             std::to_string(attrs.index_topk) + " (pad rows with fewer selected keys with -1)");
      }
      require_class(topk_ref, "topk_ref", H5T_INTEGER, "int32");
      shape.ref_width = rd[1];
      shape.ref_declaration = read_ref_declaration();
    }
    const KeyCompression kc = read_compression(group.get(), [&](const std::string& message) { fail("", message); });
    shape.compress_ratio = kc.compress_ratio;
    shape.window = kc.window;
    // Before anything is allocated for them: data never written, or declared far beyond the file, is refused.
    for (const auto& [d, name] : {std::pair{&k, "k"}, {&q, "q"}, {&w, "w"}, {&q_pos, "q_pos"}, {&k_start, "k_start"},
                                  {&k_scale, "k_scale"}, {&topk_ref, "topk_ref"}, {&k_scale_blocks, "k_scale_blocks"},
                                  {&q_scale_blocks, "q_scale_blocks"}}) {
      if (!*d) continue;
      if (std::string problem = h5::storage_problem(d->get()); !problem.empty()) fail(name, problem);
    }
  }

  // An fp4 tensor's block scales, `<tensor>_scale_blocks`: uint8 ue8m0, one per 32 values, shaped as the tensor with
  // D / 32 in place of D. Empty for other element types (the dataset is then ignored, as other extra datasets are).
  h5::Handle open_block_scales(const TensorType& t, const std::string& tensor, std::vector<int64_t> leading) {
    if (t.element != ElementType::FP4_E2M1) return {};
    const std::string name = tensor + "_scale_blocks";
    if (shape.dim % kFp4BlockSize != 0) {
      fail(tensor, "fp4 values need head_dim a multiple of " + std::to_string(kFp4BlockSize) +
                       " (one scale per 32 values), found " + std::to_string(shape.dim));
    }
    if (!h5::child_exists(group.get(), name)) fail(name, "missing: fp4 " + tensor + " needs its block scales");
    h5::Handle d = open_dataset(name, true);
    leading.push_back(shape.dim / kFp4BlockSize);
    const std::vector<int64_t> dims = dims_of(d, name, leading.size());
    if (dims != leading) fail(name, "shape " + join_dims(dims) + " does not match " + join_dims(leading));
    h5::Handle type = h5::datatype(H5Dget_type(d.get()));
    if (H5Tget_class(type.get()) != H5T_INTEGER || H5Tget_size(type.get()) != 1) {
      fail(name, "expected uint8 ue8m0 scales, found " + h5::describe_type(type.get()));
    }
    return d;
  }

  // topk_ref's attributes: which rule the serving stack says it follows (datasets/FORMAT.md, "Declaring what
  // topk_ref is"). Values outside the format's are refused here, before any work.
  RefDeclaration read_ref_declaration() {
    const std::string at = group_path + "/topk_ref";
    auto read = [&](const char* name, auto how) {
      try {
        return how();
      } catch (const InputError&) {
        throw;
      } catch (const std::exception& e) {
        fail("topk_ref", std::string("attribute '") + name + "': " + e.what());
      }
    };
    auto text = [&](const char* name) {
      return read(name, [&] { return h5::read_string_attribute(topk_ref.get(), name, probed_value(*probed, at, name)); });
    };
    auto size = [&](const char* name) { return read(name, [&] { return h5::read_int_attribute(topk_ref.get(), name); }); };
    RefDeclaration r;
    r.method = text("method");
    r.block_size = size("block_size");
    r.blocks = size("blocks");
    r.forced = text("forced");
    r.pool_precision = text("pool_precision");
    check_ref_declaration(r, [&](const std::string& dataset, const std::string& message) { fail(dataset, message); });
    return r;
  }

  // Reads rows of a q- or k-like tensor and decodes them into out (row_count * row_elems floats).
  // Raw bytes of one read, reused across reads and layers (one buffer per reading thread): a fresh multi-MiB
  // buffer per chunk or layer costs page faults, which took most of the read time (and on a virtual machine
  // cost about 13 us per 4 KiB page).
  // The buffer lives as long as its thread; its size is the largest single read (a 4 MiB piece of keys, or a
  // batch's raw queries).
  template <typename T>
  static T* scratch(size_t n) {
    if (n > SIZE_MAX / sizeof(T)) throw std::bad_alloc();
    return reinterpret_cast<T*>(scratch_bytes(n * sizeof(T)));
  }
  static std::byte* scratch_bytes(size_t bytes) {
    thread_local HugePageBuffer raw;
    return raw.reserve(bytes);
  }

  // scales: the fp4 tensor's block scales (unused for other types).
  void read_decoded(const h5::Handle& d, const TensorType& t, const std::string& name, int64_t row_begin,
                    int64_t row_count, int64_t row_elems, float* out, const h5::Handle& scales = {}) const {
    const size_t n = size_t(row_count * row_elems);
    try {
      switch (t.storage) {
        case Storage::NativeFloat: {
          std::lock_guard lock(h5::library_mutex());
          h5::read_rows(d.get(), H5T_NATIVE_FLOAT, row_begin, row_count, out);
          break;
        }
        case Storage::CustomFloat16:
        case Storage::UInt16Bits: {
          // Only the HDF5 calls hold the library lock; the decoding runs beside other threads' reads.
          uint16_t* raw = scratch<uint16_t>(n);
          {
            std::lock_guard lock(h5::library_mutex());
            h5::Handle mem;
            // Same signedness as the file, so HDF5 copies the bits instead of clamping negative int16 to 0.
            hid_t mem_type = t.signed_bits ? H5T_NATIVE_INT16 : H5T_NATIVE_UINT16;
            if (t.storage == Storage::CustomFloat16) {
              // The file type itself in little-endian order: HDF5 then copies the bits without converting.
              h5::Handle file_type = h5::datatype(H5Dget_type(d.get()));
              mem = h5::datatype(H5Tcopy(file_type.get()));
              H5Tset_order(mem.get(), H5T_ORDER_LE);
              mem_type = mem.get();
            }
            h5::read_rows(d.get(), mem_type, row_begin, row_count, raw);
          }
          Stopwatch decoding_time(decoding);
          if (t.element == ElementType::BF16) {
            decode_parallel(raw, n, out, [](uint16_t v) { return bf16_to_float(v); });
          } else {
            decode_parallel(raw, n, out, [](uint16_t v) { return f16_to_float(v); });
          }
          break;
        }
        case Storage::UInt8Bits: {
          uint8_t* raw = scratch<uint8_t>(n);
          {
            std::lock_guard lock(h5::library_mutex());
            h5::read_rows(d.get(), t.signed_bits ? H5T_NATIVE_INT8 : H5T_NATIVE_UINT8, row_begin, row_count, raw);
          }
          Stopwatch decoding_time(decoding);
          decode_parallel(raw, n, out, [](uint8_t v) { return e4m3_to_float(v); });
          break;
        }
        case Storage::PackedFp4: {
          const size_t blocks = n / size_t(kFp4BlockSize);
          uint8_t* raw = scratch<uint8_t>(n / 2 + blocks);
          uint8_t* exponents = raw + n / 2;
          {
            std::lock_guard lock(h5::library_mutex());
            const hid_t mem = t.signed_bits ? H5T_NATIVE_INT8 : H5T_NATIVE_UINT8;
            h5::read_rows(d.get(), mem, row_begin, row_count, raw);
            h5::Handle st = h5::datatype(H5Dget_type(scales.get()));
            h5::read_rows(scales.get(), H5Tget_sign(st.get()) == H5T_SGN_2 ? H5T_NATIVE_INT8 : H5T_NATIVE_UINT8,
                          row_begin, row_count, exponents);
          }
          Stopwatch decoding_time(decoding);
          // A scale of 0xFF is NaN: check_finite then names the row and element.
#pragma omp parallel for schedule(static) if (n >= (size_t(1) << 16))
          for (int64_t b = 0; b < int64_t(blocks); ++b) {
            decode_fp4_block(raw + b * (kFp4BlockSize / 2), exponents[b], out + b * kFp4BlockSize);
          }
          break;
        }
      }
    } catch (const InputError&) {
      throw;
    } catch (const std::exception& e) {
      fail(name, e.what());
    }
  }

  template <typename T>
  void read_plain(const h5::Handle& d, hid_t mem_type, const std::string& name, int64_t row_begin, int64_t row_count,
                  T* out) const {
    try {
      std::lock_guard lock(h5::library_mutex());
      h5::read_rows(d.get(), mem_type, row_begin, row_count, out);
    } catch (const std::exception& e) {
      fail(name, e.what());
    }
  }

  // Decoding runs outside the HDF5 lock, on every core: each value depends on its code alone.
  template <typename Code, typename Decode>
  static void decode_parallel(const Code* raw, size_t n, float* out, Decode decode) {
#pragma omp parallel for schedule(static) if (n >= (size_t(1) << 16))
    for (int64_t i = 0; i < int64_t(n); ++i) out[i] = decode(raw[i]);
  }

  void check_finite(const std::string& name, const float* values, int64_t rows, int64_t row_elems,
                    int64_t first_row) const {
    Stopwatch decoding_time(decoding);
    hisa::check_finite(name, values, rows, row_elems, first_row,
                       [&](const std::string& dataset, const std::string& message) { fail(dataset, message); });
  }
};

LayerReader::LayerReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
LayerReader::~LayerReader() = default;
LayerReader::LayerReader(LayerReader&&) noexcept = default;
LayerReader& LayerReader::operator=(LayerReader&&) noexcept = default;
const LayerShape& LayerReader::shape() const { return impl_->shape; }
const std::string& LayerReader::group_path() const { return impl_->group_path; }

LayerKeys LayerReader::read_keys() const {
  LayerKeys keys;
  read_keys_into(keys);
  return keys;
}

void LayerReader::read_keys_into(LayerKeys& keys) const {
  const Impl& m = *impl_;
  m.refuse_stored_outside();
  keys.count = m.shape.keys;
  keys.dim = m.shape.dim;
  keys.compress_ratio = m.shape.compress_ratio;
  keys.device = -1;  // host keys, also in an object that held a GPU's before
  keys.device_k = keys.device_k_scale = nullptr;
  m.allocate("k", [&] {
    resize_on_huge_pages(keys.k, size_t(keys.count * keys.dim));
    keys.k_scale.resize(size_t(keys.count));
  });
  // About 4 MiB of raw data per read keeps the transient buffer small whatever L is.
  const int64_t chunk_rows = std::max<int64_t>(1, (int64_t(4) << 20) / (keys.dim * element_size(m.k_type.element)));
  for (int64_t r = 0; r < keys.count; r += chunk_rows) {
    int64_t n = std::min(chunk_rows, keys.count - r);
    float* out = keys.k.data() + r * keys.dim;
    m.read_decoded(m.k, m.k_type, "k", r, n, keys.dim, out, m.k_scale_blocks);
    m.check_finite("k", out, n, keys.dim, r);
  }
  keys.k_scale.assign(size_t(keys.count), 1.0f);
  if (m.k_scale) {
    m.read_plain(m.k_scale, H5T_NATIVE_FLOAT, "k_scale", 0, keys.count, keys.k_scale.data());
    check_key_scales(keys.k_scale, [&](const std::string& dataset, const std::string& message) { m.fail(dataset, message); });
  }
}

double LayerReader::decoding_seconds() const { return impl_->decoding; }

QueryBatch LayerReader::read_queries(int64_t first, int64_t count) const {
  const Impl& m = *impl_;
  m.refuse_stored_outside();
  const LayerShape& sh = m.shape;
  if (first < 0 || count < 0 || first + count > sh.queries) {
    m.fail("q", "query range " + std::to_string(first) + "+" + std::to_string(count) + " is outside [0, " +
                    std::to_string(sh.queries) + ")");
  }
  QueryBatch b;
  b.first = first;
  b.count = count;
  b.heads = sh.heads;
  b.dim = sh.dim;
  m.allocate("q", [&] {
    resize_on_huge_pages(b.q, size_t(count * sh.heads * sh.dim));
    b.w.resize(size_t(count * sh.heads));
    b.q_pos.resize(size_t(count));
    b.k_start.assign(size_t(count), 0);
  });
  if (count == 0) return b;
  m.read_decoded(m.q, m.q_type, "q", first, count, sh.heads * sh.dim, b.q.data(), m.q_scale_blocks);
  m.check_finite("q", b.q.data(), count, sh.heads * sh.dim, first);
  m.read_plain(m.w, H5T_NATIVE_FLOAT, "w", first, count, b.w.data());
  m.check_finite("w", b.w.data(), count, sh.heads, first);
  m.read_plain(m.q_pos, H5T_NATIVE_INT64, "q_pos", first, count, b.q_pos.data());
  if (m.k_start) m.read_plain(m.k_start, H5T_NATIVE_INT64, "k_start", first, count, b.k_start.data());
  check_positions(b.q_pos, b.k_start, sh.keys, sh.compress_ratio, first,
                  [&](const std::string& dataset, const std::string& message) { m.fail(dataset, message); });
  set_compression(b, sh.compress_ratio);
  if (m.topk_ref) {
    b.ref_width = sh.ref_width;
    b.ref_declaration = sh.ref_declaration;
    m.allocate("topk_ref", [&] { b.topk_ref.resize(size_t(count * sh.ref_width)); });
    m.read_plain(m.topk_ref, H5T_NATIVE_INT32, "topk_ref", first, count, b.topk_ref.data());
    check_topk_ref(b.topk_ref, sh.ref_width, sh.keys, first,
                   [&](const std::string& dataset, const std::string& message) { m.fail(dataset, message); });
  }
  return b;
}

std::vector<DatasetDescription> LayerReader::describe() const {
  const Impl& m = *impl_;
  std::vector<DatasetDescription> out;
  auto add = [&](const h5::Handle& d, const char* name, std::string element) {
    if (!d) return;
    DatasetDescription desc;
    desc.name = name;
    desc.dims = h5::dataset_dims(d.get());
    h5::Handle type = h5::datatype(H5Dget_type(d.get()));
    desc.stored_type = h5::describe_type(type.get());
    desc.element_type = element.empty() ? desc.stored_type : element;
    desc.chunk = h5::dataset_chunk(d.get());
    for (const auto& f : h5::dataset_filters(d.get())) desc.filters.push_back(f.name);
    desc.external = h5::external_storage(d.get()).description();
    if (auto target = h5::external_link_target(m.group.get(), name)) {
      desc.external = "external link to " + *target + (desc.external.empty() ? "" : "; " + desc.external);
    }
    out.push_back(std::move(desc));
  };
  add(m.k, "k", std::string(element_type_name(m.k_type.element)));
  add(m.q, "q", std::string(element_type_name(m.q_type.element)));
  add(m.w, "w", "");
  add(m.q_pos, "q_pos", "");
  add(m.k_start, "k_start", "");
  add(m.k_scale, "k_scale", "");
  add(m.topk_ref, "topk_ref", "");
  add(m.k_scale_blocks, "k_scale_blocks", "ue8m0");
  add(m.q_scale_blocks, "q_scale_blocks", "ue8m0");
  return out;
}

// ---------------------------------------------------------------------------------------------------
struct DumpReader::Impl {
  std::string path;
  ReaderOptions options;
  std::vector<ExternalObject> externals;
  // Listing mode: per layer group path, its first dataset stored outside the file (LayerReader::Impl::stored_outside).
  std::map<std::string, ExternalObject> stored_outside;
  std::shared_ptr<h5::Handle> file;
  std::shared_ptr<const ProbedAttributes> probed;
  FileAttributes attrs;
  std::vector<SampleEntry> samples;
  std::vector<std::string> warnings;
  // (sample, layer) -> the group's name as stored: "layer_7", or "layer_007" when the dumper zero-padded.
  std::map<std::pair<std::string, int>, std::string> layer_groups;

  [[noreturn]] void fail(const std::string& where, const std::string& message) const {
    throw InputError(path, where, message);
  }

  template <typename F>
  auto attr(const std::string& where, F&& read) -> decltype(read()) {
    try {
      return read();
    } catch (const InputError&) {
      throw;
    } catch (const std::exception& e) {
      fail(where, e.what());
    }
  }

  void open() {
    h5::silence_errors();
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) fail("", "no such file");
    if (std::filesystem::is_directory(path, ec)) fail("", "is a directory, not an HDF5 file");
    // Opening a FIFO would wait for a writer forever, and a device or socket is no dump.
    if (!std::filesystem::is_regular_file(path, ec)) {
      fail("", "not a regular file (a FIFO, socket or device); dumps are read from regular files");
    }
    htri_t is_h5 = H5Fis_hdf5(path.c_str());
    if (is_h5 <= 0) fail("", "not an HDF5 file (or the file is truncated or unreadable)");
    // libhdf5 can crash reading damaged variable-length strings: a child process reads them (attribute_probe.hpp).
    probed = std::make_shared<const ProbedAttributes>(probe_attributes(path, options.allow_external));
    hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    if (id < 0) fail("", "cannot open as HDF5 (truncated or damaged file?)");
    file = std::make_shared<h5::Handle>(h5::file(id));
    read_file_attributes();
    read_samples();
  }

  // ----- What reaches outside the file (ReaderOptions) -----
  // Records an object that reaches outside the file; refuses the file unless such objects are followed or listed.
  void note_external(const std::string& where, const std::string& target) {
    externals.push_back({where, target});
    if (!options.allow_external && !options.list_external) {
      fail(where, target + ": hisa reads only what the file itself holds; pass --allow-external to follow it");
    }
  }

  enum class Link { Inside, ExternalFollowed, NotFollowed };

  // Where link `name` of `parent` (at HDF5 path `where`) leads: an external link is noted, then followed only when
  // allowed, and then must lead to an object (a dangling one would silently drop what it stood for).
  Link link(hid_t parent, const std::string& name, const std::string& where) {
    const std::optional<std::string> target = h5::external_link_target(parent, name);
    if (!target) return Link::Inside;
    note_external(where, "external link to " + *target);
    if (!options.allow_external) return Link::NotFollowed;
    if (!h5::link_resolves(parent, name)) {
      fail(where, "external link to " + *target + " cannot be followed: the file or the object it names does not exist");
    }
    return Link::ExternalFollowed;
  }

  // A soft link can lead on to an external link: the file the opened object lies in tells. False when it lies
  // elsewhere and that is not followed.
  bool stays_inside(hid_t parent, hid_t object, const std::string& where) {
    const std::string there = h5::file_name_of(object);
    if (there == h5::file_name_of(parent)) return true;
    note_external(where, "a link that leads out of the file, to " + there);
    return options.allow_external;
  }

  // Notes the datasets of a layer group that reach outside the file; followed, their targets must be there. False
  // when one lies behind a link out that is not followed: the layer cannot be opened then.
  bool scan_layer_datasets(hid_t layer_group, const std::string& where) {
    bool usable = true;
    for (const char* name : {"k", "q", "w", "q_pos", "k_start", "k_scale", "topk_ref", "k_scale_blocks", "q_scale_blocks"}) {
      const std::string at = where + "/" + name;
      if (!h5::child_exists(layer_group, name)) continue;
      const Link l = link(layer_group, name, at);
      if (l == Link::NotFollowed) {
        usable = false;
        continue;
      }
      if (!h5::child_is_dataset(layer_group, name)) continue;  // the layer reader says what is wrong
      h5::Handle d = h5::dataset(H5Dopen2(layer_group, name, H5P_DEFAULT));
      if (!d) continue;
      if (l == Link::Inside && !stays_inside(layer_group, d.get(), at)) {
        usable = false;
        continue;
      }
      const h5::ExternalStorage storage = h5::external_storage(d.get());
      if (storage.kind == h5::ExternalStorage::Kind::None) continue;
      note_external(at, storage.description());
      if (options.allow_external) {
        const std::string problem = h5::external_storage_problem(d.get(), h5::file_name_of(d.get()));
        if (!problem.empty()) fail(at, problem);
      } else {
        stored_outside.emplace(where, ExternalObject{name, storage.description()});
      }
    }
    return usable;
  }

  int64_t required_int(hid_t object, const std::string& where, const char* name, int64_t min_value) {
    auto v = attr(where, [&] { return h5::read_int_attribute(object, name); });
    if (!v) fail(where, std::string("missing attribute '") + name + "'");
    if (*v < min_value) {
      fail(where, std::string("attribute '") + name + "' is " + std::to_string(*v) + ", expected at least " +
                      std::to_string(min_value));
    }
    return *v;
  }

  void read_file_attributes() {
    hid_t root = file->get();
    auto format = attr("/", [&] { return h5::read_string_attribute(root, "format", probed_value(*probed, "/", "format")); });
    if (!format) fail("/", "missing attribute 'format' (expected \"hisa-dump\"); is this a hisa dump?");
    if (*format != kFormatName) fail("/", "attribute 'format' is \"" + *format + "\", expected \"hisa-dump\"");
    auto version = attr("/", [&] { return h5::read_int_attribute(root, "format_version"); });
    if (!version) fail("/", "missing attribute 'format_version' (expected 1)");
    if (*version != kFormatVersion) {
      fail("/", "unknown format_version " + std::to_string(*version) + "; this tool reads version 1");
    }
    auto model = attr("/", [&] { return h5::read_string_attribute(root, "model", probed_value(*probed, "/", "model")); });
    if (!model) fail("/", "missing attribute 'model'");
    attrs.model = *model;
    attrs.n_heads = required_int(root, "/", "n_heads", 1);
    attrs.head_dim = required_int(root, "/", "head_dim", 1);
    attrs.index_topk = required_int(root, "/", "index_topk", 1);
    attrs.hadamard = attr("/", [&] { return h5::read_int_attribute(root, "hadamard"); });
    attrs.rope = attr("/", [&] { return h5::read_string_attribute(root, "rope", probed_value(*probed, "/", "rope")); });
    attrs.scale_fmt = attr("/", [&] { return h5::read_string_attribute(root, "scale_fmt", probed_value(*probed, "/", "scale_fmt")); });
    attrs.source = attr("/", [&] { return h5::read_string_attribute(root, "source", probed_value(*probed, "/", "source")); });
    if (attrs.hadamard && *attrs.hadamard != 0 && *attrs.hadamard != 1) {
      warnings.push_back("/: attribute 'hadamard' is " + std::to_string(*attrs.hadamard) + ", expected 0 or 1");
    }
    if (attrs.rope && *attrs.rope != "half-split" && *attrs.rope != "interleaved") {
      warnings.push_back("/: attribute 'rope' is \"" + *attrs.rope + "\", expected \"half-split\" or \"interleaved\"");
    }
    if (attrs.scale_fmt && *attrs.scale_fmt != "ue8m0" && *attrs.scale_fmt != "fp32") {
      warnings.push_back("/: attribute 'scale_fmt' is \"" + *attrs.scale_fmt + "\", expected \"ue8m0\" or \"fp32\"");
    }
  }

  void read_samples() {
    hid_t root = file->get();
    std::vector<std::string> names;
    try {
      names = h5::child_names(root);
    } catch (const std::exception& e) {
      fail("/", e.what());
    }
    for (const auto& name : names) {
      const std::string where = "/" + name;
      const Link sample_link = link(root, name, where);
      if (sample_link == Link::NotFollowed) continue;
      if (!h5::child_is_group(root, name)) {
        warnings.push_back("/" + name + ": not a group; ignored (samples are groups)");
        continue;
      }
      h5::Handle g = h5::group(H5Gopen2(root, name.c_str(), H5P_DEFAULT));
      if (!g) fail(where, "cannot open group (damaged file?)");
      if (sample_link == Link::Inside && !stays_inside(root, g.get(), where)) continue;
      SampleEntry s;
      s.name = name;
      hid_t gid = g.get();
      s.attributes.seq_len = required_int(gid, where, "seq_len", 1);
      s.attributes.task = attr(where, [&] { return h5::read_string_attribute(gid, "task", probed_value(*probed, where, "task")); });
      s.attributes.context_length = attr(where, [&] { return h5::read_int_attribute(gid, "context_length"); });
      s.attributes.depth_percent = attr(where, [&] { return h5::read_float_attribute(gid, "depth_percent"); });
      s.attributes.needle_begin = attr(where, [&] { return h5::read_int_attribute(gid, "needle_begin"); });
      s.attributes.needle_end = attr(where, [&] { return h5::read_int_attribute(gid, "needle_end"); });
      s.attributes.length_bucket = attr(where, [&] { return h5::read_string_attribute(gid, "length_bucket", probed_value(*probed, where, "length_bucket")); });
      check_needle(s.attributes.needle_begin, s.attributes.needle_end,
                   [&](const std::string&, const std::string& message) { fail(where, message); });
      std::vector<std::string> members;
      try {
        members = h5::child_names(gid);
      } catch (const std::exception& e) {
        fail(where, e.what());
      }
      for (const auto& member : members) {
        const std::string layer_path = where + "/" + member;
        int layer = parse_layer_name(member);
        const Link layer_link = layer < 0 ? Link::Inside : link(gid, member, layer_path);
        if (layer_link == Link::NotFollowed) continue;
        if (layer < 0 || !h5::child_is_group(gid, member)) {
          warnings.push_back(layer_path + ": not a layer_<N> group; ignored");
          continue;
        }
        h5::Handle lg = h5::group(H5Gopen2(gid, member.c_str(), H5P_DEFAULT));
        if (layer_link == Link::Inside && !stays_inside(gid, lg.get(), layer_path)) continue;
        if (!scan_layer_datasets(lg.get(), layer_path)) continue;
        auto stated = attr(where + "/" + member, [&] { return h5::read_int_attribute(lg.get(), "layer"); });
        if (stated && *stated != layer) {
          fail(where + "/" + member, "attribute 'layer' is " + std::to_string(*stated) + " but the group is named " + member);
        }
        if (!stated) warnings.push_back(where + "/" + member + ": no 'layer' attribute");
        auto [it, inserted] = layer_groups.emplace(std::make_pair(name, layer), member);
        if (!inserted) {
          fail(where + "/" + member, "is a second group for layer " + std::to_string(layer) + " (the first is " +
                                          where + "/" + it->second + ")");
        }
        s.layers.push_back(layer);
      }
      std::sort(s.layers.begin(), s.layers.end());
      if (s.layers.empty()) warnings.push_back(where + ": sample holds no layer_<N> groups");
      samples.push_back(std::move(s));
    }
    if (samples.empty()) warnings.push_back("/: the file holds no samples");
    std::vector<int> every = all_layers();
    for (const auto& s : samples) {
      for (int layer : every) {
        if (!std::binary_search(s.layers.begin(), s.layers.end(), layer)) {
          warnings.push_back("/" + s.name + ": layer " + std::to_string(layer) + " is absent (present in other samples)");
        }
      }
    }
  }

  std::vector<int> all_layers() const {
    std::vector<int> out;
    for (const auto& s : samples) out.insert(out.end(), s.layers.begin(), s.layers.end());
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
  }
};

DumpReader::DumpReader(const std::string& path, const ReaderOptions& options) : impl_(std::make_unique<Impl>()) {
  impl_->path = path;
  impl_->options = options;
  impl_->open();
}
DumpReader::~DumpReader() = default;
DumpReader::DumpReader(DumpReader&&) noexcept = default;
DumpReader& DumpReader::operator=(DumpReader&&) noexcept = default;
const std::string& DumpReader::path() const { return impl_->path; }
const FileAttributes& DumpReader::attributes() const { return impl_->attrs; }
const std::vector<SampleEntry>& DumpReader::samples() const { return impl_->samples; }
const std::vector<std::string>& DumpReader::warnings() const { return impl_->warnings; }
const std::vector<ExternalObject>& DumpReader::external_objects() const { return impl_->externals; }
std::vector<int> DumpReader::all_layers() const { return impl_->all_layers(); }

const SampleEntry& DumpReader::sample(const std::string& name) const {
  for (const auto& s : impl_->samples) {
    if (s.name == name) return s;
  }
  impl_->fail("/" + name, "no such sample");
}

std::string DumpReader::layer_group_path(const std::string& sample_name, int layer) const {
  const SampleEntry& s = sample(sample_name);
  auto group_name = impl_->layer_groups.find(std::make_pair(sample_name, layer));
  if (group_name == impl_->layer_groups.end() || !std::binary_search(s.layers.begin(), s.layers.end(), layer)) {
    impl_->fail("/" + sample_name + "/layer_" + std::to_string(layer), "no such layer in this sample");
  }
  return "/" + sample_name + "/" + group_name->second;
}

KeyCompression DumpReader::layer_compression(const std::string& sample_name, int layer) const {
  const std::string where = layer_group_path(sample_name, layer);
  h5::Handle group = h5::group(H5Gopen2(impl_->file->get(), where.c_str(), H5P_DEFAULT));
  if (!group) impl_->fail(where, "cannot open group (damaged file?)");
  return read_compression(group.get(), [&](const std::string& message) { impl_->fail(where, message); });
}

LayerReader DumpReader::open_layer(const std::string& sample_name, int layer) const {
  const std::string where = layer_group_path(sample_name, layer);
  auto m = std::make_unique<LayerReader::Impl>();
  m->file_path = impl_->path;
  m->group_path = where;
  m->file = impl_->file;
  m->probed = impl_->probed;
  m->group = h5::group(H5Gopen2(impl_->file->get(), where.c_str(), H5P_DEFAULT));
  if (!m->group) impl_->fail(where, "cannot open group (damaged file?)");
  m->shape.layer = layer;
  if (auto it = impl_->stored_outside.find(where); it != impl_->stored_outside.end()) m->stored_outside = it->second;
  m->open(impl_->attrs);
  return LayerReader(std::move(m));
}

}  // namespace hisa
