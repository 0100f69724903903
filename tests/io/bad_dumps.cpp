#include "io/bad_dumps.hpp"

#include <hdf5.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <stdexcept>

#include "io/dump_helpers.hpp"
#include "io/h5.hpp"

namespace hisa::test {

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr const char* kLayer = "/s0/layer_0";

void check(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error("test setup failed: " + what);
}

// ----- HDF5 surgery on a written file ------------------------------------------------------------------

h5::Handle open_rw(const std::string& path) {
  h5::silence_errors();
  h5::Handle f = h5::file(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT));
  check(f.valid(), "open " + path);
  return f;
}

void delete_attribute(const std::string& path, const std::string& object, const char* name) {
  h5::Handle f = open_rw(path);
  check(H5Adelete_by_name(f.get(), object.c_str(), name, H5P_DEFAULT) >= 0, std::string("delete attribute ") + name);
}

h5::Handle open_object(hid_t file, const std::string& object) {
  h5::Handle o(H5Oopen(file, object.c_str(), H5P_DEFAULT), H5Oclose);
  check(o.valid(), "open " + object);
  return o;
}

void set_int_attribute(const std::string& path, const std::string& object, const char* name, int64_t value) {
  h5::Handle f = open_rw(path);
  h5::write_int_attribute(open_object(f.get(), object).get(), name, value);
}

void set_string_attribute(const std::string& path, const std::string& object, const char* name,
                          const std::string& value) {
  h5::Handle f = open_rw(path);
  h5::write_string_attribute(open_object(f.get(), object).get(), name, value);
}

// A string attribute holding an array of `values` (fixed-length or variable-length strings), as h5py writes for
// attrs[name] = ["a", "b"] (variable) or numpy arrays of bytes (fixed).
void set_string_array_attribute(const std::string& path, const std::string& object, const char* name,
                                const std::vector<std::string>& values, bool variable_length) {
  h5::Handle f = open_rw(path);
  h5::Handle o = open_object(f.get(), object);
  if (H5Aexists(o.get(), name) > 0) H5Adelete(o.get(), name);
  hsize_t n = values.size();
  h5::Handle space = h5::dataspace(H5Screate_simple(1, &n, nullptr));
  h5::Handle type = h5::datatype(H5Tcopy(H5T_C_S1));
  if (variable_length) {
    H5Tset_size(type.get(), H5T_VARIABLE);
    std::vector<const char*> p;
    for (const auto& v : values) p.push_back(v.c_str());
    h5::Handle a = h5::attribute(H5Acreate2(o.get(), name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT));
    check(a.valid() && H5Awrite(a.get(), type.get(), p.data()) >= 0, "write string array");
  } else {
    size_t width = 1;
    for (const auto& v : values) width = std::max(width, v.size());
    H5Tset_size(type.get(), width);
    H5Tset_strpad(type.get(), H5T_STR_NULLPAD);
    std::string packed;
    for (const auto& v : values) packed += v + std::string(width - v.size(), '\0');
    h5::Handle a = h5::attribute(H5Acreate2(o.get(), name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT));
    check(a.valid() && H5Awrite(a.get(), type.get(), packed.data()) >= 0, "write string array");
  }
}

void delete_link(const std::string& path, const std::string& object) {
  h5::Handle f = open_rw(path);
  check(H5Ldelete(f.get(), object.c_str(), H5P_DEFAULT) >= 0, "delete " + object);
}

// Replaces dataset `name` of the layer group with a new one of the given file type and shape; `data` is in
// `mem_type`. The optional filter is set mandatory on a chunked layout.
void replace_dataset(const std::string& path, const std::string& name, hid_t file_type, hid_t mem_type,
                     std::vector<hsize_t> dims, const void* data, const char* encoding = nullptr, int filter = -1) {
  h5::Handle f = open_rw(path);
  const std::string full = std::string(kLayer) + "/" + name;
  if (H5Lexists(f.get(), full.c_str(), H5P_DEFAULT) > 0) check(H5Ldelete(f.get(), full.c_str(), H5P_DEFAULT) >= 0, "delete");
  h5::Handle space = h5::dataspace(H5Screate_simple(int(dims.size()), dims.data(), nullptr));
  h5::Handle dcpl = h5::plist(H5Pcreate(H5P_DATASET_CREATE));
  if (filter >= 0) {
    check(H5Pset_chunk(dcpl.get(), int(dims.size()), dims.data()) >= 0, "chunk");
    check(H5Pset_filter(dcpl.get(), H5Z_filter_t(filter), H5Z_FLAG_MANDATORY, 0, nullptr) >= 0, "set filter");
  }
  h5::Handle d = h5::dataset(H5Dcreate2(f.get(), full.c_str(), file_type, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT));
  check(d.valid(), "create " + full);
  check(H5Dwrite(d.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0, "write " + full);
  if (encoding) h5::write_string_attribute(d.get(), "encoding", encoding);
}

// Overwrites one element of a dataset of the layer (flat index into its row-major shape) with `value`
// given in `mem_type`; with mem_type < 0 the dataset's own type is used, i.e. `value` holds raw stored bits.
void poke(const std::string& path, const std::string& name, std::vector<hsize_t> coords, hid_t mem_type,
          const void* value) {
  h5::Handle f = open_rw(path);
  const std::string full = std::string(kLayer) + "/" + name;
  h5::Handle d = h5::dataset(H5Dopen2(f.get(), full.c_str(), H5P_DEFAULT));
  check(d.valid(), "open " + full);
  h5::Handle space = h5::dataspace(H5Dget_space(d.get()));
  check(H5Sselect_elements(space.get(), H5S_SELECT_SET, 1, coords.data()) >= 0, "select");
  hsize_t one = 1;
  h5::Handle mem_space = h5::dataspace(H5Screate_simple(1, &one, nullptr));
  h5::Handle own_type = h5::datatype(H5Dget_type(d.get()));
  if (mem_type < 0) mem_type = own_type.get();
  check(H5Dwrite(d.get(), mem_type, mem_space.get(), space.get(), H5P_DEFAULT, value) >= 0, "poke " + full);
}

void poke_float(const std::string& path, const std::string& name, std::vector<hsize_t> coords, float v) {
  poke(path, name, std::move(coords), H5T_NATIVE_FLOAT, &v);
}
void poke_int64(const std::string& path, const std::string& name, std::vector<hsize_t> coords, int64_t v) {
  poke(path, name, std::move(coords), H5T_NATIVE_INT64, &v);
}

// A pass-through filter registered under LZ4's id only while the file is written, so the file names a
// mandatory filter that the reading process does not have.
size_t pass_through(unsigned, size_t, const unsigned[], size_t nbytes, size_t*, void**) { return nbytes; }

void write_with_absent_filter(const std::string& path) {
  write_base_file(path, BaseKind::F32);
  H5Z_class2_t cls{};
  cls.version = H5Z_CLASS_T_VERS;
  cls.id = H5Z_filter_t(kAbsentFilterId);
  cls.encoder_present = 1;
  cls.decoder_present = 1;
  cls.name = "lz4";
  cls.filter = pass_through;
  check(H5Zregister(&cls) >= 0, "register the stand-in filter");
  std::vector<float> k(40 * 8, 0.5f);
  replace_dataset(path, "k", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {40, 8}, k.data(), nullptr, kAbsentFilterId);
  check(H5Zunregister(H5Z_filter_t(kAbsentFilterId)) >= 0, "unregister the stand-in filter");
}

BadCase make_case(std::string name, std::function<void(const std::string&)> make, std::string hdf5_path,
                  std::vector<std::string> found) {
  return BadCase{std::move(name), std::move(make), std::move(hdf5_path), std::move(found), false};
}

std::string layer_path(const std::string& dataset) { return std::string(kLayer) + "/" + dataset; }

std::vector<BadCase> build_cases() {
  std::vector<BadCase> c;
  const auto base = [](BaseKind kind) { return [kind](const std::string& p) { write_base_file(p, kind); }; };
  const auto f32 = BaseKind::F32;

  // ----- not a (complete) HDF5 file
  c.push_back(make_case("MissingFile", [](const std::string&) {}, "", {"no such file"}));
  c.push_back(make_case("TextFile", [](const std::string& p) { std::ofstream(p) << "model,layer\nx,1\n"; }, "",
                        {"not an HDF5 file"}));
  c.push_back(make_case("EmptyFile", [](const std::string& p) { std::ofstream{p}; }, "", {"not an HDF5 file"}));
  c.push_back(make_case("TruncatedFile",
                        [](const std::string& p) {
                          write_base_file(p, BaseKind::F32);
                          std::filesystem::resize_file(p, std::filesystem::file_size(p) / 2);
                        },
                        "", {"truncated"}));

  // ----- file attributes
  c.push_back(make_case("MissingFormat", [=](const std::string& p) { base(f32)(p); delete_attribute(p, "/", "format"); },
                        "/", {"missing attribute 'format'", "hisa-dump"}));
  c.push_back(make_case("WrongFormat",
                        [=](const std::string& p) { base(f32)(p); set_string_attribute(p, "/", "format", "zarr-dump"); },
                        "/", {"\"zarr-dump\"", "expected \"hisa-dump\""}));
  c.push_back(make_case("MissingFormatVersion",
                        [=](const std::string& p) { base(f32)(p); delete_attribute(p, "/", "format_version"); }, "/",
                        {"missing attribute 'format_version'"}));
  c.push_back(make_case("UnknownFormatVersion",
                        [=](const std::string& p) { base(f32)(p); set_int_attribute(p, "/", "format_version", 2); }, "/",
                        {"unknown format_version 2", "version 1"}));
  c.push_back(make_case("FormatVersionIsAString",
                        [=](const std::string& p) { base(f32)(p); set_string_attribute(p, "/", "format_version", "1"); },
                        "/", {"'format_version' should be an integer, found string"}));
  c.push_back(make_case("ModelIsAnArrayOfFixedStrings",
                        [=](const std::string& p) {
                          base(f32)(p);
                          set_string_array_attribute(p, "/", "model", {"a", std::string(5000, 'b')}, false);
                        },
                        "/", {"'model' should be a single string, found an array of 2 strings"}));
  c.push_back(make_case("RopeIsAnArrayOfStrings",
                        [=](const std::string& p) {
                          base(f32)(p);
                          set_string_array_attribute(p, "/", "rope", {"half-split", "interleaved"}, true);
                        },
                        "/", {"'rope' should be a single string, found an array of 2 strings"}));
  c.push_back(make_case("MissingModel", [=](const std::string& p) { base(f32)(p); delete_attribute(p, "/", "model"); },
                        "/", {"missing attribute 'model'"}));
  c.push_back(make_case("MissingIndexTopk",
                        [=](const std::string& p) { base(f32)(p); delete_attribute(p, "/", "index_topk"); }, "/",
                        {"missing attribute 'index_topk'"}));

  // ----- sample and layer groups
  c.push_back(make_case("MissingSeqLen", [=](const std::string& p) { base(f32)(p); delete_attribute(p, "/s0", "seq_len"); },
                        "/s0", {"missing attribute 'seq_len'"}));
  c.push_back(make_case("NeedleBeginWithoutEnd",
                        [=](const std::string& p) { base(f32)(p); set_int_attribute(p, "/s0", "needle_begin", 3); }, "/s0",
                        {"needle_begin", "needle_end"}));
  c.push_back(make_case("LayerAttributeDisagreesWithName",
                        [=](const std::string& p) { base(f32)(p); set_int_attribute(p, kLayer, "layer", 7); }, kLayer,
                        {"attribute 'layer' is 7", "layer_0"}));
  c.push_back(make_case("CompressRatioZero",
                        [=](const std::string& p) { base(f32)(p); set_int_attribute(p, kLayer, "compress_ratio", 0); },
                        kLayer, {"attribute 'compress_ratio' is 0, expected 1 to 1048576"}));
  c.push_back(make_case("WindowIsAString",
                        [=](const std::string& p) { base(f32)(p); set_string_attribute(p, kLayer, "window", "128"); },
                        kLayer, {"'window' should be an integer, found string"}));
  c.push_back(make_case("TwoGroupsForOneLayer",
                        [=](const std::string& p) {
                          base(f32)(p);
                          h5::Handle f = open_rw(p);
                          check(H5Lcreate_hard(f.get(), kLayer, f.get(), "/s0/layer_00", H5P_DEFAULT, H5P_DEFAULT) >= 0,
                                "link");
                        },
                        "/s0/layer_00", {"second group for layer 0", "/s0/layer_0)"}));

  // ----- missing datasets
  for (const char* name : {"k", "q", "w", "q_pos"}) {
    c.push_back(make_case(std::string("Missing_") + name,
                          [=](const std::string& p) { base(f32)(p); delete_link(p, layer_path(name)); }, layer_path(name),
                          {"missing dataset"}));
  }
  c.push_back(make_case("Fp8KeysWithoutKScale",
                        [=](const std::string& p) { base(BaseKind::Fp8)(p); delete_link(p, layer_path("k_scale")); },
                        layer_path("k_scale"), {"missing", "fp8 keys"}));

  // ----- shapes that disagree
  c.push_back(make_case("QWrongHeadCount",
                        [=](const std::string& p) { base(f32)(p); set_int_attribute(p, "/", "n_heads", 3); },
                        layer_path("q"), {"[3, 2, 8]", "n_heads=3"}));
  c.push_back(make_case("QWrongHeadDim",
                        [=](const std::string& p) {
                          base(f32)(p);
                          std::vector<float> q(3 * 2 * 9, 0.25f);
                          replace_dataset(p, "q", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {3, 2, 9}, q.data());
                        },
                        layer_path("q"), {"[3, 2, 9]", "head_dim=8"}));
  c.push_back(make_case("KWrongHeadDim",
                        [=](const std::string& p) {
                          base(f32)(p);
                          std::vector<float> k(40 * 9, 0.25f);
                          replace_dataset(p, "k", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {40, 9}, k.data());
                        },
                        layer_path("k"), {"second dimension is 9", "head_dim is 8"}));
  c.push_back(make_case("WWrongShape",
                        [=](const std::string& p) {
                          base(f32)(p);
                          std::vector<float> w(3 * 3, 0.25f);
                          replace_dataset(p, "w", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {3, 3}, w.data());
                        },
                        layer_path("w"), {"[3, 3]", "[Nq, H] = [3, 2]"}));
  c.push_back(make_case("WWrongRank",
                        [=](const std::string& p) {
                          base(f32)(p);
                          std::vector<float> w(6, 0.25f);
                          replace_dataset(p, "w", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {6}, w.data());
                        },
                        layer_path("w"), {"expected 2 dimensions, found 1"}));
  c.push_back(make_case("QPosWrongLength",
                        [=](const std::string& p) {
                          base(f32)(p);
                          std::vector<int64_t> pos{1, 2};
                          replace_dataset(p, "q_pos", H5T_STD_I64LE, H5T_NATIVE_INT64, {2}, pos.data());
                        },
                        layer_path("q_pos"), {"length 2", "Nq = 3"}));
  c.push_back(make_case("KStartWrongLength",
                        [=](const std::string& p) {
                          base(f32)(p);
                          std::vector<int64_t> ks{0, 0, 0, 0};
                          replace_dataset(p, "k_start", H5T_STD_I64LE, H5T_NATIVE_INT64, {4}, ks.data());
                        },
                        layer_path("k_start"), {"length 4", "Nq = 3"}));
  c.push_back(make_case("KScaleWrongLength",
                        [=](const std::string& p) {
                          base(BaseKind::Fp8)(p);
                          std::vector<float> s(39, 1.0f);
                          replace_dataset(p, "k_scale", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {39}, s.data());
                        },
                        layer_path("k_scale"), {"length 39", "L = 40"}));
  c.push_back(make_case("TopkRefWrongRowCount",
                        [=](const std::string& p) {
                          base(f32)(p);
                          std::vector<int32_t> r(4 * 4, -1);
                          replace_dataset(p, "topk_ref", H5T_STD_I32LE, H5T_NATIVE_INT32, {4, 4}, r.data());
                        },
                        layer_path("topk_ref"), {"[4, 4]", "Nq = 3"}));
  c.push_back(make_case("TopkRefWrongWidth",
                        [=](const std::string& p) {
                          base(f32)(p);
                          std::vector<int32_t> r(3 * 5, -1);
                          replace_dataset(p, "topk_ref", H5T_STD_I32LE, H5T_NATIVE_INT32, {3, 5}, r.data());
                        },
                        layer_path("topk_ref"), {"[3, 5]", "index_topk = 4"}));

  // ----- positions and ranges
  c.push_back(make_case("QPosAtL", [=](const std::string& p) { base(f32)(p); poke_int64(p, "q_pos", {2}, 40); },
                        layer_path("q_pos"), {"row 2", "position 40", "[0, L=40)"}));
  c.push_back(make_case("QPosNegative", [=](const std::string& p) { base(f32)(p); poke_int64(p, "q_pos", {0}, -1); },
                        layer_path("q_pos"), {"row 0", "position -1"}));
  c.push_back(make_case("KStartAfterQPos", [=](const std::string& p) { base(f32)(p); poke_int64(p, "k_start", {1}, 20); },
                        layer_path("k_start"), {"row 1", "k_start 20", "q_pos=19"}));
  c.push_back(make_case("TopkRefIndexOutOfRange",
                        [=](const std::string& p) {
                          base(f32)(p);
                          int32_t v = 40;
                          poke(p, "topk_ref", {1, 2}, H5T_NATIVE_INT32, &v);
                        },
                        layer_path("topk_ref"), {"row 1", "index 40"}));

  // ----- element types and encodings
  c.push_back(make_case("QFloat64",
                        [=](const std::string& p) {
                          base(f32)(p);
                          std::vector<double> q(3 * 2 * 8, 0.5);
                          replace_dataset(p, "q", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, {3, 2, 8}, q.data());
                        },
                        layer_path("q"), {"unsupported element type float64"}));
  c.push_back(make_case("KUint8WithoutEncoding",
                        [=](const std::string& p) {
                          base(f32)(p);
                          std::vector<uint8_t> k(40 * 8, 0x38);
                          replace_dataset(p, "k", H5T_STD_U8LE, H5T_NATIVE_UINT8, {40, 8}, k.data());
                        },
                        layer_path("k"), {"unsupported element type uint8", "encoding"}));
  c.push_back(make_case("KUnknownEncoding",
                        [=](const std::string& p) {
                          base(f32)(p);
                          std::vector<uint8_t> k(40 * 8, 0x38);
                          replace_dataset(p, "k", H5T_STD_U8LE, H5T_NATIVE_UINT8, {40, 8}, k.data(), "float8_e5m2");
                        },
                        layer_path("k"), {"unsupported encoding \"float8_e5m2\""}));
  c.push_back(make_case("EncodingOnFloatStorage",
                        [=](const std::string& p) {
                          base(f32)(p);
                          std::vector<float> q(3 * 2 * 8, 0.5f);
                          replace_dataset(p, "q", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {3, 2, 8}, q.data(), "bfloat16");
                        },
                        layer_path("q"), {"needs uint16 storage, found float32"}));
  c.push_back(make_case("Fp4KeysWithHeadDimNotAMultipleOf32",
                        [=](const std::string& p) {
                          base(f32)(p);
                          std::vector<uint8_t> k(40 * 4, 0x21);
                          replace_dataset(p, "k", H5T_STD_U8LE, H5T_NATIVE_UINT8, {40, 4}, k.data(), "float4_e2m1fn_x2");
                        },
                        layer_path("k"), {"fp4 values need head_dim a multiple of 32", "found 8"}));
  c.push_back(make_case("Fp4OnUint16Storage",
                        [=](const std::string& p) {
                          base(f32)(p);
                          std::vector<uint16_t> k(40 * 4, 0x21);
                          replace_dataset(p, "k", H5T_STD_U16LE, H5T_NATIVE_UINT16, {40, 4}, k.data(), "float4_e2m1fn_x2");
                        },
                        layer_path("k"), {"encoding \"float4_e2m1fn_x2\" needs uint8 storage, found uint16"}));
  c.push_back(make_case("QPosFloat",
                        [=](const std::string& p) {
                          base(f32)(p);
                          std::vector<float> pos{0, 1, 2};
                          replace_dataset(p, "q_pos", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {3}, pos.data());
                        },
                        layer_path("q_pos"), {"expected int64, found float32"}));

  // ----- values that are not finite (with the row)
  c.push_back(make_case("NaNInQ", [=](const std::string& p) { base(f32)(p); poke_float(p, "q", {2, 1, 3}, kNaN); },
                        layer_path("q"), {"row 2", "nan", "element 11"}));
  c.push_back(make_case("InfInK", [=](const std::string& p) { base(f32)(p); poke_float(p, "k", {17, 5}, -kInf); },
                        layer_path("k"), {"row 17", "-inf"}));
  c.push_back(make_case("NaNInW", [=](const std::string& p) { base(f32)(p); poke_float(p, "w", {1, 0}, kNaN); },
                        layer_path("w"), {"row 1", "nan"}));
  c.push_back(make_case("NaNInKScale",
                        [=](const std::string& p) { base(BaseKind::Fp8)(p); poke_float(p, "k_scale", {3}, kNaN); },
                        layer_path("k_scale"), {"row 3", "nan"}));
  c.push_back(make_case("ZeroKScale",
                        [=](const std::string& p) { base(BaseKind::Fp8)(p); poke_float(p, "k_scale", {4}, 0.0f); },
                        layer_path("k_scale"), {"row 4", "positive"}));
  c.push_back(make_case("Fp8NaNCodeInK",
                        [=](const std::string& p) {
                          base(BaseKind::Fp8)(p);
                          uint8_t nan_code = 0xFF;
                          poke(p, "k", {6, 0}, -1, &nan_code);
                        },
                        layer_path("k"), {"row 6", "nan"}));
  c.push_back(make_case("Bf16InfInQ",
                        [=](const std::string& p) {
                          base(BaseKind::Bf16Custom)(p);
                          uint16_t inf_bits = 0x7F80;
                          poke(p, "q", {1, 0, 0}, -1, &inf_bits);
                        },
                        layer_path("q"), {"row 1", "inf"}));
  c.push_back(make_case("Bf16Uint16NaNInK",
                        [=](const std::string& p) {
                          base(BaseKind::Bf16Uint16)(p);
                          uint16_t nan_bits = 0x7FC0;
                          poke(p, "k", {39, 7}, -1, &nan_bits);
                        },
                        layer_path("k"), {"row 39", "nan"}));

  // ----- storage
  BadCase filter = make_case("UnavailableFilter", write_with_absent_filter, layer_path("k"),
                             {"'lz4'", std::to_string(kAbsentFilterId), "HDF5_PLUGIN_PATH"});
  filter.needs_no_plugins = true;
  c.push_back(std::move(filter));
  return c;
}

}  // namespace

void write_base_file(const std::string& path, BaseKind kind) {
  ElementType type = ElementType::F32;
  WriteOptions options;
  options.key_chunk_rows = 16;
  options.query_chunk_rows = 2;
  switch (kind) {
    case BaseKind::F32: type = ElementType::F32; break;
    case BaseKind::Fp8: type = ElementType::FP8_E4M3; break;
    case BaseKind::Bf16Custom: type = ElementType::BF16; break;
    case BaseKind::Bf16Uint16:
      type = ElementType::BF16;
      options.bf16_as_uint16 = true;
      break;
  }
  DumpWriter w(path, small_file_attributes());
  SampleAttributes s;
  s.seq_len = 40;
  w.add_sample("s0", s);
  w.add_layer("s0", 0, make_layer(40, 3, 2, 8, type, type, 1), options);
  w.close();
}

const std::vector<BadCase>& bad_cases() {
  static const std::vector<BadCase> cases = build_cases();
  return cases;
}

}  // namespace hisa::test
