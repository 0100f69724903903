// DumpWriter + DumpReader: round trips for every element type and storage option, chunked key reads, query
// ranges, describe(), warnings, and every bad input the loader must reject (tests/io/bad_dumps.cpp).
#include <H5PLpublic.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.hpp"
#include "io/bad_dumps.hpp"
#include "io/dump_helpers.hpp"
#include "io/h5.hpp"
#include "test_util.hpp"

namespace hisa {
namespace {

using test::make_layer;
using test::small_file_attributes;
using test::TempDir;

// Bitwise equality of float vectors (so -0 and +0 differ, as they do in the file).
::testing::AssertionResult SameBits(const std::vector<float>& expected, const float* actual, size_t n,
                                    size_t offset = 0) {
  for (size_t i = 0; i < n; ++i) {
    if (std::bit_cast<uint32_t>(expected[offset + i]) != std::bit_cast<uint32_t>(actual[i])) {
      return ::testing::AssertionFailure() << "value " << offset + i << ": expected " << expected[offset + i]
                                           << ", read " << actual[i];
    }
  }
  return ::testing::AssertionSuccess();
}

// ---------------------------------------------------------------------------------------------------------
// Round trips

struct RoundTripParam {
  const char* name;
  ElementType q_type;
  ElementType k_type;
  bool bf16_as_uint16;
  int gzip_level;
  const char* stored_k;  // describe()'s stored_type of k
};

void PrintTo(const RoundTripParam& p, std::ostream* os) { *os << p.name; }

class RoundTrip : public ::testing::TestWithParam<RoundTripParam> {};

TEST_P(RoundTrip, WriterAndReaderAgreeBitForBit) {
  const RoundTripParam& p = GetParam();
  TempDir dir;
  const std::string path = dir.file("dump.h5");
  const int64_t L = 300, Nq = 7, H = 4, D = 16;
  FileAttributes fa = small_file_attributes(H, D, 8);
  LayerArrays layer = make_layer(L, Nq, H, D, p.q_type, p.k_type, 42, true, 8);
  // Extremes of each type are part of the round trip: zero of both signs and the largest finite value.
  const float big = p.k_type == ElementType::FP8_E4M3 ? 448.0f
                    : p.k_type == ElementType::F16    ? 65504.0f
                    : p.k_type == ElementType::BF16   ? 0x1.FEp127f
                                                      : std::numeric_limits<float>::max();
  layer.k[0] = -0.0f;
  layer.k[1] = big;
  layer.k[2] = -big;
  layer.k[3] = 0.0f;
  WriteOptions options;
  options.bf16_as_uint16 = p.bf16_as_uint16;
  options.gzip_level = p.gzip_level;
  options.key_chunk_rows = 64;
  options.query_chunk_rows = 3;
  {
    DumpWriter w(path, fa);
    SampleAttributes s;
    s.seq_len = L;
    w.add_sample("s0", s);
    w.add_layer("s0", 3, layer, options);
  }

  DumpReader r(path);
  ASSERT_EQ(1u, r.samples().size());
  EXPECT_EQ(std::vector<int>{3}, r.samples()[0].layers);
  LayerReader lr = r.open_layer("s0", 3);
  const LayerShape& sh = lr.shape();
  EXPECT_EQ(3, sh.layer);
  EXPECT_EQ(L, sh.keys);
  EXPECT_EQ(Nq, sh.queries);
  EXPECT_EQ(H, sh.heads);
  EXPECT_EQ(D, sh.dim);
  EXPECT_EQ(p.q_type, sh.q_type);
  EXPECT_EQ(p.k_type, sh.k_type);
  EXPECT_TRUE(sh.has_k_start);
  EXPECT_EQ(p.k_type == ElementType::FP8_E4M3, sh.has_k_scale);
  EXPECT_EQ(8, sh.ref_width);
  EXPECT_EQ("/s0/layer_3", lr.group_path());

  LayerKeys keys = lr.read_keys();
  ASSERT_EQ(size_t(L * D), keys.k.size());
  EXPECT_TRUE(SameBits(layer.k, keys.k.data(), keys.k.size()));
  EXPECT_TRUE(std::signbit(keys.row(0)[0]));
  ASSERT_EQ(size_t(L), keys.k_scale.size());
  if (layer.k_scale.empty()) {
    for (float s : keys.k_scale) ASSERT_EQ(1.0f, s);
  } else {
    EXPECT_TRUE(SameBits(layer.k_scale, keys.k_scale.data(), keys.k_scale.size()));
  }

  QueryBatch b = lr.read_queries(0, Nq);
  EXPECT_EQ(0, b.first);
  EXPECT_EQ(Nq, b.count);
  EXPECT_TRUE(SameBits(layer.q, b.q.data(), b.q.size()));
  EXPECT_TRUE(SameBits(layer.w, b.w.data(), b.w.size()));
  EXPECT_EQ(layer.q_pos, b.q_pos);
  EXPECT_EQ(layer.k_start, b.k_start);
  EXPECT_EQ(layer.topk_ref, b.topk_ref);
  EXPECT_EQ(8, b.ref_width);

  bool saw_k = false;
  for (const auto& d : lr.describe()) {
    if (d.name != "k") continue;
    saw_k = true;
    EXPECT_EQ(p.stored_k, d.stored_type);
    EXPECT_EQ(element_type_name(p.k_type), d.element_type);
    EXPECT_EQ((std::vector<int64_t>{L, D}), d.dims);
    EXPECT_EQ((std::vector<int64_t>{64, D}), d.chunk);
    if (p.gzip_level > 0) {
      EXPECT_EQ((std::vector<std::string>{"shuffle", "deflate"}), d.filters);
    } else {
      EXPECT_TRUE(d.filters.empty());
    }
  }
  EXPECT_TRUE(saw_k);
  EXPECT_NO_THROW(test::read_everything(path));
}

INSTANTIATE_TEST_SUITE_P(
    ElementTypes, RoundTrip,
    ::testing::Values(RoundTripParam{"f32", ElementType::F32, ElementType::F32, false, 0, "float32"},
                      RoundTripParam{"f16", ElementType::F16, ElementType::F16, false, 0, "float16"},
                      RoundTripParam{"bf16_custom_float", ElementType::BF16, ElementType::BF16, false, 0, "bfloat16"},
                      RoundTripParam{"bf16_uint16", ElementType::BF16, ElementType::BF16, true, 0, "uint16"},
                      RoundTripParam{"fp8", ElementType::FP8_E4M3, ElementType::FP8_E4M3, false, 0, "uint8"},
                      RoundTripParam{"bf16_q_fp8_k", ElementType::BF16, ElementType::FP8_E4M3, false, 0, "uint8"},
                      RoundTripParam{"f32_q_f16_k", ElementType::F32, ElementType::F16, false, 0, "float16"},
                      RoundTripParam{"bf16_gzip", ElementType::BF16, ElementType::BF16, false, 4, "bfloat16"},
                      RoundTripParam{"fp8_gzip", ElementType::FP8_E4M3, ElementType::FP8_E4M3, false, 6, "uint8"},
                      RoundTripParam{"bf16_uint16_gzip", ElementType::BF16, ElementType::BF16, true, 1, "uint16"}),
    [](const ::testing::TestParamInfo<RoundTripParam>& info) { return std::string(info.param.name); });

// torch has no uint16 view before 2.3, so dumpers write bfloat16 bits as int16 (and fp8 bits as int8); negative
// values then have negative integer codes, which must reach the decoder unchanged (not clamped to 0).
TEST(DumpIo, SignedIntegerStorageOfEncodedTensorsKeepsTheBits) {
  TempDir dir;
  const std::string path = dir.file("signed.h5");
  LayerArrays bf = make_layer(40, 3, 2, 8, ElementType::BF16, ElementType::BF16, 21);
  LayerArrays f8 = make_layer(40, 3, 2, 8, ElementType::FP8_E4M3, ElementType::FP8_E4M3, 22);
  {
    DumpWriter w(path, small_file_attributes());
    SampleAttributes s;
    s.seq_len = 40;
    w.add_sample("s", s);
    w.add_layer("s", 0, bf);
    w.add_layer("s", 1, f8);
  }
  {
    h5::Handle f = h5::file(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT));
    ASSERT_TRUE(f.valid());
    auto replace = [&](const char* where, hid_t type, std::vector<hsize_t> dims, const void* bits, const char* encoding) {
      ASSERT_GE(H5Ldelete(f.get(), where, H5P_DEFAULT), 0);
      h5::Handle space = h5::dataspace(H5Screate_simple(int(dims.size()), dims.data(), nullptr));
      h5::Handle d = h5::dataset(H5Dcreate2(f.get(), where, type, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
      ASSERT_TRUE(d.valid());
      ASSERT_GE(H5Dwrite(d.get(), type, H5S_ALL, H5S_ALL, H5P_DEFAULT, bits), 0);  // file type in memory: raw bits
      h5::write_string_attribute(d.get(), "encoding", encoding);
    };
    std::vector<uint16_t> k16, q16;
    for (float v : bf.k) k16.push_back(float_to_bf16(v));
    for (float v : bf.q) q16.push_back(float_to_bf16(v));
    replace("/s/layer_0/k", H5T_STD_I16LE, {40, 8}, k16.data(), "bfloat16");
    replace("/s/layer_0/q", H5T_STD_I16LE, {3, 2, 8}, q16.data(), "bfloat16");
    std::vector<uint8_t> k8, q8;
    for (float v : f8.k) k8.push_back(float_to_e4m3(v));
    for (float v : f8.q) q8.push_back(float_to_e4m3(v));
    replace("/s/layer_1/k", H5T_STD_I8LE, {40, 8}, k8.data(), "float8_e4m3fn");
    replace("/s/layer_1/q", H5T_STD_I8LE, {3, 2, 8}, q8.data(), "float8_e4m3fn");
  }
  DumpReader r(path);
  for (int layer : {0, 1}) {
    SCOPED_TRACE("layer " + std::to_string(layer));
    const LayerArrays& a = layer == 0 ? bf : f8;
    LayerReader lr = r.open_layer("s", layer);
    EXPECT_EQ(a.k_type, lr.shape().k_type);
    EXPECT_EQ(layer == 0 ? "int16" : "int8", lr.describe()[0].stored_type);
    LayerKeys keys = lr.read_keys();
    EXPECT_TRUE(SameBits(a.k, keys.k.data(), keys.k.size()));
    QueryBatch b = lr.read_queries(0, 3);
    EXPECT_TRUE(SameBits(a.q, b.q.data(), b.q.size()));
    EXPECT_TRUE(std::any_of(keys.k.begin(), keys.k.end(), [](float v) { return v < 0; }));  // the case that matters
  }
}

TEST(DumpIo, ALayerReaderTimesItsDecoding) {
  TempDir dir;
  const std::string path = dir.file("d.h5");
  test::write_base_file(path, test::BaseKind::Bf16Custom);
  DumpReader reader(path);
  const LayerReader layer = reader.open_layer(reader.samples().front().name, reader.samples().front().layers.front());
  EXPECT_EQ(0.0, layer.decoding_seconds());
  layer.read_keys();
  const double after_keys = layer.decoding_seconds();
  EXPECT_GT(after_keys, 0.0);
  layer.read_queries(0, layer.shape().queries);
  EXPECT_GT(layer.decoding_seconds(), after_keys);
}

TEST(DumpIo, FileAndSampleAttributesRoundTrip) {
  TempDir dir;
  const std::string path = dir.file("attrs.h5");
  FileAttributes fa = small_file_attributes();
  fa.model = "deepseek-v3.2-exp";
  fa.hadamard = 1;
  fa.rope = "half-split";
  fa.scale_fmt = "ue8m0";
  fa.source = "sglang 0.5.4, --enable-indexer-dump";
  SampleAttributes full;
  full.seq_len = 40;
  full.task = "niah";
  full.context_length = 40;
  full.depth_percent = 37.5;
  full.needle_begin = 12;
  full.needle_end = 17;
  full.length_bucket = "0-4k";
  SampleAttributes bare;
  bare.seq_len = 40;
  {
    DumpWriter w(path, fa);
    w.add_sample("needle", full);
    w.add_sample("plain", bare);
    w.add_layer("needle", 0, make_layer(40, 3, 2, 8, ElementType::BF16, ElementType::BF16, 1));
    w.add_layer("plain", 0, make_layer(40, 3, 2, 8, ElementType::BF16, ElementType::BF16, 2));
  }
  DumpReader r(path);
  const FileAttributes& a = r.attributes();
  EXPECT_EQ("deepseek-v3.2-exp", a.model);
  EXPECT_EQ(2, a.n_heads);
  EXPECT_EQ(8, a.head_dim);
  EXPECT_EQ(4, a.index_topk);
  EXPECT_EQ(1, a.hadamard);
  EXPECT_EQ("half-split", a.rope);
  EXPECT_EQ("ue8m0", a.scale_fmt);
  EXPECT_EQ("sglang 0.5.4, --enable-indexer-dump", a.source);
  EXPECT_TRUE(r.warnings().empty()) << r.warnings().front();

  const SampleAttributes& n = r.sample("needle").attributes;
  EXPECT_EQ(40, n.seq_len);
  EXPECT_EQ("niah", n.task);
  EXPECT_EQ(40, n.context_length);
  EXPECT_EQ(37.5, n.depth_percent);
  EXPECT_EQ(12, n.needle_begin);
  EXPECT_EQ(17, n.needle_end);
  EXPECT_EQ("0-4k", n.length_bucket);
  EXPECT_TRUE(n.has_needle());

  const SampleAttributes& p = r.sample("plain").attributes;
  EXPECT_EQ(40, p.seq_len);
  EXPECT_FALSE(p.task.has_value());
  EXPECT_FALSE(p.context_length.has_value());
  EXPECT_FALSE(p.depth_percent.has_value());
  EXPECT_FALSE(p.has_needle());

  try {
    r.sample("absent");
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_EQ("/absent", e.path());
    EXPECT_NE(std::string(e.what()).find("no such sample"), std::string::npos);
  }
}

TEST(DumpIo, OptionalFileAttributesMayBeAbsent) {
  TempDir dir;
  const std::string path = dir.file("bare.h5");
  {
    DumpWriter w(path, small_file_attributes());
    SampleAttributes s;
    s.seq_len = 40;
    w.add_sample("s", s);
    w.add_layer("s", 0, make_layer(40, 1, 2, 8, ElementType::F32, ElementType::F32, 3, false, 0));
  }
  DumpReader r(path);
  EXPECT_FALSE(r.attributes().hadamard.has_value());
  EXPECT_FALSE(r.attributes().rope.has_value());
  EXPECT_FALSE(r.attributes().scale_fmt.has_value());
  EXPECT_FALSE(r.attributes().source.has_value());
  LayerReader lr = r.open_layer("s", 0);
  EXPECT_FALSE(lr.shape().has_k_start);
  EXPECT_FALSE(lr.shape().has_k_scale);
  EXPECT_EQ(0, lr.shape().ref_width);
  QueryBatch b = lr.read_queries(0, 1);
  EXPECT_EQ(std::vector<int64_t>{0}, b.k_start);  // default 0
  EXPECT_TRUE(b.topk_ref.empty());
  EXPECT_EQ(0, b.ref_width);
  LayerKeys k = lr.read_keys();
  for (float s : k.k_scale) ASSERT_EQ(1.0f, s);  // default 1
}

// h5py stores a Python/numpy bool as an HDF5 enum (FALSE = 0, TRUE = 1) of int8; integer attributes accept it.
TEST(DumpIo, H5pyBoolAttributeReadsAsAnInteger) {
  TempDir dir;
  const std::string path = dir.file("bool.h5");
  {
    DumpWriter w(path, small_file_attributes());
    SampleAttributes s;
    s.seq_len = 40;
    w.add_sample("s", s);
    w.add_layer("s", 0, make_layer(40, 1, 2, 8, ElementType::F32, ElementType::F32, 3));
  }
  {
    h5::Handle f = h5::file(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT));
    h5::Handle type = h5::datatype(H5Tenum_create(H5T_NATIVE_INT8));
    int8_t no = 0, yes = 1;
    H5Tenum_insert(type.get(), "FALSE", &no);
    H5Tenum_insert(type.get(), "TRUE", &yes);
    h5::Handle space = h5::dataspace(H5Screate(H5S_SCALAR));
    h5::Handle a = h5::attribute(H5Acreate2(f.get(), "hadamard", type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT));
    ASSERT_GE(H5Awrite(a.get(), type.get(), &yes), 0);
  }
  DumpReader r(path);
  EXPECT_EQ(1, r.attributes().hadamard);
  EXPECT_TRUE(r.warnings().empty());
}

TEST(DumpIo, UnexpectedAttributeValuesAreWarnings) {
  TempDir dir;
  const std::string path = dir.file("odd.h5");
  FileAttributes fa = small_file_attributes();
  fa.hadamard = 2;
  fa.rope = "neox";
  fa.scale_fmt = "e8m0";
  {
    DumpWriter w(path, fa);
    SampleAttributes s;
    s.seq_len = 40;
    w.add_sample("s", s);
    w.add_layer("s", 0, make_layer(40, 1, 2, 8, ElementType::F32, ElementType::F32, 3));
  }
  DumpReader r(path);
  const auto& w = r.warnings();
  ASSERT_EQ(3u, w.size());
  EXPECT_NE(w[0].find("'hadamard' is 2"), std::string::npos) << w[0];
  EXPECT_NE(w[1].find("\"neox\""), std::string::npos) << w[1];
  EXPECT_NE(w[2].find("\"e8m0\""), std::string::npos) << w[2];
}

TEST(DumpIo, LayerAbsentFromOneSampleIsAWarningNotAnError) {
  TempDir dir;
  const std::string path = dir.file("gaps.h5");
  {
    DumpWriter w(path, small_file_attributes());
    SampleAttributes s;
    s.seq_len = 40;
    w.add_sample("a", s);
    w.add_sample("b", s);
    for (int layer : {0, 5, 9}) {
      w.add_layer("a", layer, make_layer(40, 3, 2, 8, ElementType::F32, ElementType::F32, uint64_t(layer)));
    }
    w.add_layer("b", 5, make_layer(40, 3, 2, 8, ElementType::F32, ElementType::F32, 7));
  }
  DumpReader r(path);
  EXPECT_EQ((std::vector<int>{0, 5, 9}), r.all_layers());
  EXPECT_EQ((std::vector<int>{0, 5, 9}), r.sample("a").layers);
  EXPECT_EQ((std::vector<int>{5}), r.sample("b").layers);
  const auto& w = r.warnings();
  ASSERT_EQ(2u, w.size());
  EXPECT_EQ("/b: layer 0 is absent (present in other samples)", w[0]);
  EXPECT_EQ("/b: layer 9 is absent (present in other samples)", w[1]);
  EXPECT_NO_THROW(test::read_everything(path));
  try {
    r.open_layer("b", 9);
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_EQ("/b/layer_9", e.path());
  }
}

TEST(DumpIo, LayersSortNumericallyNotByName) {
  TempDir dir;
  const std::string path = dir.file("order.h5");
  {
    DumpWriter w(path, small_file_attributes());
    SampleAttributes s;
    s.seq_len = 40;
    w.add_sample("s", s);
    for (int layer : {10, 2, 1}) {
      w.add_layer("s", layer, make_layer(40, 1, 2, 8, ElementType::F32, ElementType::F32, uint64_t(layer)));
    }
  }
  DumpReader r(path);
  EXPECT_EQ((std::vector<int>{1, 2, 10}), r.sample("s").layers);
}

// Dumpers that zero-pad layer numbers for sorting (layer_007) get them read as layer 7.
TEST(DumpIo, ZeroPaddedLayerGroupNames) {
  TempDir dir;
  const std::string path = dir.file("padded.h5");
  {
    DumpWriter w(path, small_file_attributes());
    SampleAttributes s;
    s.seq_len = 40;
    w.add_sample("s", s);
    w.add_layer("s", 7, make_layer(40, 3, 2, 8, ElementType::F32, ElementType::F32, 1));
    w.add_layer("s", 12, make_layer(40, 3, 2, 8, ElementType::F32, ElementType::F32, 2));
  }
  {
    h5::Handle f = h5::file(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT));
    ASSERT_GE(H5Lmove(f.get(), "/s/layer_7", f.get(), "/s/layer_007", H5P_DEFAULT, H5P_DEFAULT), 0);
    ASSERT_GE(H5Lmove(f.get(), "/s/layer_12", f.get(), "/s/layer_012", H5P_DEFAULT, H5P_DEFAULT), 0);
  }
  DumpReader r(path);
  EXPECT_EQ((std::vector<int>{7, 12}), r.sample("s").layers);
  LayerReader lr = r.open_layer("s", 7);
  EXPECT_EQ("/s/layer_007", lr.group_path());
  EXPECT_EQ(7, lr.shape().layer);
  EXPECT_NO_THROW(test::read_everything(path));
}

// Keys are read in ~4 MiB pieces of raw data; L = 20000 at D = 128 crosses those boundaries (and the HDF5 chunk
// boundaries, which are deliberately not aligned with them).
TEST(DumpIo, KeysReadInPiecesMatchTheWrittenKeys) {
  for (ElementType t : {ElementType::F32, ElementType::BF16, ElementType::FP8_E4M3}) {
    SCOPED_TRACE(std::string(element_type_name(t)));
    TempDir dir;
    const std::string path = dir.file("long.h5");
    const int64_t L = 20000, D = 128;
    LayerArrays layer = make_layer(L, 5, 2, D, ElementType::F32, t, 11);
    WriteOptions options;
    options.key_chunk_rows = 3000;
    {
      DumpWriter w(path, small_file_attributes(2, D, 4));
      SampleAttributes s;
      s.seq_len = L;
      w.add_sample("s", s);
      w.add_layer("s", 0, layer, options);
    }
    DumpReader r(path);
    LayerKeys keys = r.open_layer("s", 0).read_keys();
    ASSERT_EQ(L, keys.count);
    EXPECT_TRUE(SameBits(layer.k, keys.k.data(), keys.k.size()));
    if (t == ElementType::FP8_E4M3) {
      EXPECT_TRUE(SameBits(layer.k_scale, keys.k_scale.data(), keys.k_scale.size()));
    }
  }
}

TEST(DumpIo, NaNInALaterKeyPieceNamesItsRow) {
  TempDir dir;
  const std::string path = dir.file("long-nan.h5");
  const int64_t L = 20000, D = 128;
  LayerArrays layer = make_layer(L, 2, 2, D, ElementType::F32, ElementType::F32, 12);
  layer.k[size_t(17001 * D + 100)] = std::numeric_limits<float>::quiet_NaN();
  {
    DumpWriter w(path, small_file_attributes(2, D, 4));
    SampleAttributes s;
    s.seq_len = L;
    w.add_sample("s", s);
    w.add_layer("s", 0, layer);
  }
  DumpReader r(path);
  LayerReader lr = r.open_layer("s", 0);
  try {
    lr.read_keys();
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_EQ("/s/layer_0/k", e.path());
    EXPECT_NE(std::string(e.what()).find("row 17001 holds nan at element 100"), std::string::npos) << e.what();
  }
}

TEST(DumpIo, QueryRangesReadTheRightRows) {
  TempDir dir;
  const std::string path = dir.file("queries.h5");
  const int64_t L = 100, Nq = 10, H = 3, D = 4;
  LayerArrays layer = make_layer(L, Nq, H, D, ElementType::BF16, ElementType::BF16, 5, true, 4);
  WriteOptions options;
  options.query_chunk_rows = 4;
  {
    DumpWriter w(path, small_file_attributes(H, D, 4));
    SampleAttributes s;
    s.seq_len = L;
    w.add_sample("s", s);
    w.add_layer("s", 0, layer, options);
  }
  DumpReader r(path);
  LayerReader lr = r.open_layer("s", 0);
  for (auto [first, count] : std::vector<std::pair<int64_t, int64_t>>{{0, 10}, {3, 4}, {9, 1}, {0, 1}, {10, 0}, {5, 0}}) {
    SCOPED_TRACE("first " + std::to_string(first) + " count " + std::to_string(count));
    QueryBatch b = lr.read_queries(first, count);
    EXPECT_EQ(first, b.first);
    EXPECT_EQ(count, b.count);
    ASSERT_EQ(size_t(count * H * D), b.q.size());
    EXPECT_TRUE(SameBits(layer.q, b.q.data(), b.q.size(), size_t(first * H * D)));
    EXPECT_TRUE(SameBits(layer.w, b.w.data(), b.w.size(), size_t(first * H)));
    for (int64_t i = 0; i < count; ++i) {
      EXPECT_EQ(layer.q_pos[size_t(first + i)], b.q_pos[size_t(i)]);
      EXPECT_EQ(layer.k_start[size_t(first + i)], b.k_start[size_t(i)]);
      for (int64_t j = 0; j < 4; ++j) {
        EXPECT_EQ(layer.topk_ref[size_t((first + i) * 4 + j)], b.topk_ref[size_t(i * 4 + j)]);
      }
      // The accessors index the same rows.
      EXPECT_EQ(b.q[size_t(i * H * D + 2 * D)], b.q_row(i, 2)[0]);
      EXPECT_EQ(b.w[size_t(i * H + 1)], b.w_row(i)[1]);
    }
  }
  for (auto [first, count] : std::vector<std::pair<int64_t, int64_t>>{{8, 3}, {-1, 1}, {0, 11}, {11, 0}, {2, -1}}) {
    SCOPED_TRACE("first " + std::to_string(first) + " count " + std::to_string(count));
    try {
      lr.read_queries(first, count);
      FAIL() << "expected an InputError";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("outside [0, 10)"), std::string::npos) << e.what();
    }
  }
}

TEST(DumpIo, LayerWithoutQueries) {
  TempDir dir;
  const std::string path = dir.file("empty.h5");
  {
    DumpWriter w(path, small_file_attributes());
    SampleAttributes s;
    s.seq_len = 40;
    w.add_sample("s", s);
    w.add_layer("s", 0, make_layer(40, 0, 2, 8, ElementType::BF16, ElementType::BF16, 1, true, 4));
  }
  DumpReader r(path);
  LayerReader lr = r.open_layer("s", 0);
  EXPECT_EQ(0, lr.shape().queries);
  EXPECT_EQ(0, lr.read_queries(0, 0).count);
  EXPECT_NO_THROW(test::read_everything(path));
}

TEST(DumpIo, DescribeListsEveryDataset) {
  TempDir dir;
  const std::string path = dir.file("describe.h5");
  WriteOptions options;
  options.gzip_level = 4;
  options.key_chunk_rows = 16;
  options.query_chunk_rows = 2;
  {
    DumpWriter w(path, small_file_attributes());
    SampleAttributes s;
    s.seq_len = 40;
    w.add_sample("s", s);
    w.add_layer("s", 0, make_layer(40, 3, 2, 8, ElementType::FP8_E4M3, ElementType::FP8_E4M3, 1), options);
  }
  DumpReader r(path);
  auto d = r.open_layer("s", 0).describe();
  ASSERT_EQ(7u, d.size());
  const std::vector<std::tuple<std::string, std::vector<int64_t>, std::string, std::string>> expected{
      {"k", {40, 8}, "uint8", "fp8"},         {"q", {3, 2, 8}, "uint8", "fp8"},
      {"w", {3, 2}, "float32", "float32"},    {"q_pos", {3}, "int64", "int64"},
      {"k_start", {3}, "int64", "int64"},     {"k_scale", {40}, "float32", "float32"},
      {"topk_ref", {3, 4}, "int32", "int32"}};
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(std::get<0>(expected[i]), d[i].name);
    EXPECT_EQ(std::get<1>(expected[i]), d[i].dims) << d[i].name;
    EXPECT_EQ(std::get<2>(expected[i]), d[i].stored_type) << d[i].name;
    EXPECT_EQ(std::get<3>(expected[i]), d[i].element_type) << d[i].name;
    EXPECT_EQ((std::vector<std::string>{"shuffle", "deflate"}), d[i].filters) << d[i].name;
    ASSERT_FALSE(d[i].chunk.empty()) << d[i].name;
  }
  EXPECT_EQ((std::vector<int64_t>{16, 8}), d[0].chunk);
  EXPECT_EQ((std::vector<int64_t>{2, 2, 8}), d[1].chunk);
}

// ---------------------------------------------------------------------------------------------------------
// Bad inputs through the library

class BadInput : public ::testing::TestWithParam<test::BadCase> {};

TEST_P(BadInput, IsAnInputErrorNamingFilePathAndWhatWasFound) {
  const test::BadCase& c = GetParam();
  TempDir dir;
  const std::string path = dir.file(c.name + ".h5");
  c.make(path);
  unsigned plugin_state = 0;
  if (c.needs_no_plugins) {  // a system-wide plugin for the filter must not rescue the file
    H5PLget_loading_state(&plugin_state);
    H5PLset_loading_state(0);
  }
  try {
    test::read_everything(path);
    ADD_FAILURE() << "the loader accepted the bad file";
  } catch (const InputError& e) {
    const std::string what = e.what();
    EXPECT_EQ(path, e.file());
    EXPECT_EQ(c.hdf5_path, e.path());
    EXPECT_EQ(0u, what.find(path + ": " + (c.hdf5_path.empty() ? "" : c.hdf5_path + ": "))) << what;
    for (const auto& f : c.found) EXPECT_NE(what.find(f), std::string::npos) << "'" << f << "' not in: " << what;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not an InputError: " << e.what();
  }
  if (c.needs_no_plugins) H5PLset_loading_state(plugin_state);
}

INSTANTIATE_TEST_SUITE_P(Loader, BadInput, ::testing::ValuesIn(test::bad_cases()),
                         [](const ::testing::TestParamInfo<test::BadCase>& info) { return info.param.name; });

}  // namespace
}  // namespace hisa
