#include "io/dump_writer.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "io/h5.hpp"

namespace hisa {

struct DumpWriter::Impl {
  std::string path;
  h5::Handle file;

  [[noreturn]] void fail(const std::string& where, const std::string& message) const {
    throw std::runtime_error(path + ": " + where + ": " + message);
  }

  h5::Handle create_dataset(hid_t group, const std::string& name, hid_t file_type, std::vector<hsize_t> dims,
                            int64_t chunk_rows, const WriteOptions& options) {
    h5::Handle space = h5::dataspace(H5Screate_simple(int(dims.size()), dims.data(), nullptr));
    h5::Handle dcpl = h5::plist(H5Pcreate(H5P_DATASET_CREATE));
    if (dims[0] > 0) {
      std::vector<hsize_t> chunk = dims;
      chunk[0] = hsize_t(std::clamp<int64_t>(chunk_rows, 1, int64_t(dims[0])));
      H5Pset_chunk(dcpl.get(), int(chunk.size()), chunk.data());
      if (options.gzip_level > 0) {
        H5Pset_shuffle(dcpl.get());
        H5Pset_deflate(dcpl.get(), unsigned(options.gzip_level));
      }
    }
    h5::Handle d = h5::dataset(
        H5Dcreate2(group, name.c_str(), file_type, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT));
    if (!d) fail(name, "cannot create dataset");
    return d;
  }

  void write_all(const h5::Handle& d, hid_t mem_type, const void* data, const std::string& name) {
    if (H5Dwrite(d.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) fail(name, "write failed");
  }

  void write_tensor(hid_t group, const std::string& name, ElementType type, const std::vector<float>& values,
                    std::vector<hsize_t> dims, int64_t chunk_rows, const WriteOptions& options) {
    switch (type) {
      case ElementType::F32: {
        auto d = create_dataset(group, name, H5T_IEEE_F32LE, dims, chunk_rows, options);
        write_all(d, H5T_NATIVE_FLOAT, values.data(), name);
        break;
      }
      case ElementType::F16:
      case ElementType::BF16: {
        const bool bf16 = type == ElementType::BF16;
        std::vector<uint16_t> bits(values.size());
        for (size_t i = 0; i < values.size(); ++i) bits[i] = bf16 ? float_to_bf16(values[i]) : float_to_f16(values[i]);
        if (bf16 && options.bf16_as_uint16) {
          auto d = create_dataset(group, name, H5T_STD_U16LE, dims, chunk_rows, options);
          write_all(d, H5T_NATIVE_UINT16, bits.data(), name);
          h5::write_string_attribute(d.get(), "encoding", "bfloat16");
        } else {
          h5::Handle t = bf16 ? h5::bfloat16_type() : h5::float16_type();
          auto d = create_dataset(group, name, t.get(), dims, chunk_rows, options);
          write_all(d, t.get(), bits.data(), name);  // same type in memory: the bits are copied as they are
        }
        break;
      }
      case ElementType::FP8_E4M3: {
        std::vector<uint8_t> bits(values.size());
        for (size_t i = 0; i < values.size(); ++i) bits[i] = float_to_e4m3(values[i]);
        auto d = create_dataset(group, name, H5T_STD_U8LE, dims, chunk_rows, options);
        write_all(d, H5T_NATIVE_UINT8, bits.data(), name);
        h5::write_string_attribute(d.get(), "encoding", "float8_e4m3fn");
        break;
      }
      case ElementType::FP4_E2M1: {
        // Blocks of 32 consecutive values along D (D % 32 == 0, so no block crosses a row), each with the
        // smallest power-of-two scale that fits its largest magnitude; two codes per byte, the first low.
        const hsize_t D = dims.back();
        if (D % hsize_t(kFp4BlockSize) != 0) fail(name, "fp4 needs head_dim a multiple of 32");
        std::vector<uint8_t> packed(values.size() / 2), scales(values.size() / size_t(kFp4BlockSize));
        for (size_t b = 0; b < scales.size(); ++b) {
          const float* v = values.data() + b * size_t(kFp4BlockSize);
          scales[b] = e2m1_block_scale(v);
          const float scale = ue8m0_to_float(scales[b]);
          for (int64_t j = 0; j < kFp4BlockSize; j += 2) {
            packed[b * size_t(kFp4BlockSize / 2) + size_t(j / 2)] =
                uint8_t(float_to_e2m1(v[j] / scale) | (float_to_e2m1(v[j + 1] / scale) << 4));
          }
        }
        std::vector<hsize_t> code_dims = dims, scale_dims = dims;
        code_dims.back() = D / 2;
        scale_dims.back() = D / hsize_t(kFp4BlockSize);
        auto d = create_dataset(group, name, H5T_STD_U8LE, code_dims, chunk_rows, options);
        write_all(d, H5T_NATIVE_UINT8, packed.data(), name);
        h5::write_string_attribute(d.get(), "encoding", "float4_e2m1fn_x2");
        const std::string scale_name = name + "_scale_blocks";
        auto sd = create_dataset(group, scale_name, H5T_STD_U8LE, scale_dims, chunk_rows, options);
        write_all(sd, H5T_NATIVE_UINT8, scales.data(), scale_name);
        break;
      }
    }
  }
};

DumpWriter::DumpWriter(const std::string& path, const FileAttributes& a, const std::string& name)
    : impl_(std::make_unique<Impl>()) {
  h5::silence_errors();
  impl_->path = name.empty() ? path : name;
  impl_->file = h5::file(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT));
  if (!impl_->file) impl_->fail("/", "cannot create file");
  hid_t root = impl_->file.get();
  h5::write_string_attribute(root, "format", kFormatName);
  h5::write_int_attribute(root, "format_version", kFormatVersion);
  h5::write_string_attribute(root, "model", a.model);
  h5::write_int_attribute(root, "n_heads", a.n_heads);
  h5::write_int_attribute(root, "head_dim", a.head_dim);
  h5::write_int_attribute(root, "index_topk", a.index_topk);
  if (a.hadamard) h5::write_int_attribute(root, "hadamard", *a.hadamard);
  if (a.rope) h5::write_string_attribute(root, "rope", *a.rope);
  if (a.scale_fmt) h5::write_string_attribute(root, "scale_fmt", *a.scale_fmt);
  if (a.source) h5::write_string_attribute(root, "source", *a.source);
}

DumpWriter::~DumpWriter() = default;
DumpWriter::DumpWriter(DumpWriter&&) noexcept = default;
DumpWriter& DumpWriter::operator=(DumpWriter&&) noexcept = default;

void DumpWriter::add_sample(const std::string& name, const SampleAttributes& a) {
  h5::Handle g = h5::group(H5Gcreate2(impl_->file.get(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  if (!g) impl_->fail("/" + name, "cannot create sample group");
  h5::write_int_attribute(g.get(), "seq_len", a.seq_len);
  if (a.task) h5::write_string_attribute(g.get(), "task", *a.task);
  if (a.context_length) h5::write_int_attribute(g.get(), "context_length", *a.context_length);
  if (a.depth_percent) h5::write_float_attribute(g.get(), "depth_percent", *a.depth_percent);
  if (a.needle_begin) h5::write_int_attribute(g.get(), "needle_begin", *a.needle_begin);
  if (a.needle_end) h5::write_int_attribute(g.get(), "needle_end", *a.needle_end);
  if (a.length_bucket) h5::write_string_attribute(g.get(), "length_bucket", *a.length_bucket);
}

void DumpWriter::add_layer(const std::string& sample, int layer, const LayerArrays& a, const WriteOptions& options) {
  const std::string where = "/" + sample + "/layer_" + std::to_string(layer);
  auto expect = [&](size_t got, int64_t want, const char* what) {
    if (got != size_t(want)) impl_->fail(where, std::string(what) + " has the wrong number of values");
  };
  expect(a.k.size(), a.keys * a.dim, "k");
  expect(a.q.size(), a.queries * a.heads * a.dim, "q");
  expect(a.w.size(), a.queries * a.heads, "w");
  expect(a.q_pos.size(), a.queries, "q_pos");
  if (!a.k_start.empty()) expect(a.k_start.size(), a.queries, "k_start");
  if (!a.k_scale.empty()) expect(a.k_scale.size(), a.keys, "k_scale");
  if (!a.topk_ref.empty()) expect(a.topk_ref.size(), a.queries * a.ref_width, "topk_ref");

  h5::Handle g = h5::group(H5Gcreate2(impl_->file.get(), where.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  if (!g) impl_->fail(where, "cannot create layer group (does the sample exist?)");
  h5::write_int_attribute(g.get(), "layer", layer);
  if (a.compress_ratio != 1) h5::write_int_attribute(g.get(), "compress_ratio", a.compress_ratio);
  if (a.window) h5::write_int_attribute(g.get(), "window", *a.window);
  const hsize_t L = hsize_t(a.keys), Nq = hsize_t(a.queries), H = hsize_t(a.heads), D = hsize_t(a.dim);
  impl_->write_tensor(g.get(), "k", a.k_type, a.k, {L, D}, options.key_chunk_rows, options);
  impl_->write_tensor(g.get(), "q", a.q_type, a.q, {Nq, H, D}, options.query_chunk_rows, options);
  auto d = impl_->create_dataset(g.get(), "w", H5T_IEEE_F32LE, {Nq, H}, options.query_chunk_rows, options);
  impl_->write_all(d, H5T_NATIVE_FLOAT, a.w.data(), "w");
  d = impl_->create_dataset(g.get(), "q_pos", H5T_STD_I64LE, {Nq}, options.query_chunk_rows, options);
  impl_->write_all(d, H5T_NATIVE_INT64, a.q_pos.data(), "q_pos");
  if (!a.k_start.empty()) {
    d = impl_->create_dataset(g.get(), "k_start", H5T_STD_I64LE, {Nq}, options.query_chunk_rows, options);
    impl_->write_all(d, H5T_NATIVE_INT64, a.k_start.data(), "k_start");
  }
  if (!a.k_scale.empty()) {
    d = impl_->create_dataset(g.get(), "k_scale", H5T_IEEE_F32LE, {L}, options.key_chunk_rows, options);
    impl_->write_all(d, H5T_NATIVE_FLOAT, a.k_scale.data(), "k_scale");
  }
  if (!a.topk_ref.empty()) {
    d = impl_->create_dataset(g.get(), "topk_ref", H5T_STD_I32LE, {Nq, hsize_t(a.ref_width)}, options.query_chunk_rows,
                              options);
    impl_->write_all(d, H5T_NATIVE_INT32, a.topk_ref.data(), "topk_ref");
    const RefDeclaration& r = a.ref_declaration;
    if (r.method) h5::write_string_attribute(d.get(), "method", *r.method);
    if (r.block_size) h5::write_int_attribute(d.get(), "block_size", *r.block_size);
    if (r.blocks) h5::write_int_attribute(d.get(), "blocks", *r.blocks);
    if (r.forced) h5::write_string_attribute(d.get(), "forced", *r.forced);
    if (r.pool_precision) h5::write_string_attribute(d.get(), "pool_precision", *r.pool_precision);
  }
}

void DumpWriter::close() {
  if (impl_->file && (H5Fflush(impl_->file.get(), H5F_SCOPE_GLOBAL) < 0 || impl_->file.close() < 0)) {
    throw std::runtime_error("writing " + impl_->path + " failed (disk full or file size limit?)");
  }
}

}  // namespace hisa
