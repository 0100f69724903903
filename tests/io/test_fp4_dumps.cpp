// FP4 dumps (DeepSeek-V4: e2m1 codes, two per byte, with a ue8m0 scale per 32 values in k_scale_blocks and
// q_scale_blocks; datasets/FORMAT.md, "Element encodings"): written and read back bit for bit, every block scale
// honoured, and the ways such a file can be wrong refused with their place.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.hpp"
#include "io/dump_helpers.hpp"
#include "io/h5.hpp"
#include "test_util.hpp"

namespace hisa {
namespace {

constexpr int64_t kKeys = 70, kQueries = 5, kHeads = 3, kDim = 64;

// e2m1 values with a different power-of-two scale per 32-value block, from 2^-9 to 2^9.
LayerArrays fp4_layer() {
  LayerArrays a = test::make_layer(kKeys, kQueries, kHeads, kDim, ElementType::FP4_E2M1, ElementType::FP4_E2M1, 5,
                                   true, 0);
  auto spread = [](std::vector<float>& v) {
    for (size_t i = 0; i < v.size(); ++i) v[i] = std::ldexp(v[i], int((i / kFp4BlockSize) % 19) - 9);
  };
  spread(a.k);
  spread(a.q);
  return a;
}

std::string write_fp4(const test::TempDir& dir, const LayerArrays& a) {
  const std::string path = dir.file("fp4.h5");
  DumpWriter w(path, test::small_file_attributes(kHeads, kDim, 8));
  SampleAttributes s;
  s.seq_len = kKeys;
  w.add_sample("s0", s);
  w.add_layer("s0", 0, a);
  w.close();
  return path;
}

TEST(Fp4Dumps, WrittenAndReadBackBitForBit) {
  test::TempDir dir;
  const LayerArrays a = fp4_layer();
  const std::string path = write_fp4(dir, a);
  LayerReader lr = DumpReader(path).open_layer("s0", 0);
  EXPECT_EQ(lr.shape().k_type, ElementType::FP4_E2M1);
  EXPECT_EQ(lr.shape().q_type, ElementType::FP4_E2M1);
  EXPECT_EQ(lr.shape().dim, kDim);
  const LayerKeys keys = lr.read_keys();
  ASSERT_EQ(keys.k.size(), a.k.size());
  for (size_t i = 0; i < a.k.size(); ++i) ASSERT_EQ(keys.k[i], a.k[i]) << "k element " << i;
  const QueryBatch b = lr.read_queries(1, 3);
  for (size_t i = 0; i < b.q.size(); ++i) ASSERT_EQ(b.q[i], a.q[size_t(kHeads * kDim) + i]) << "q element " << i;
  // What is stored: D/2 bytes a row, D/32 scales a row.
  bool saw_blocks = false;
  for (const auto& d : lr.describe()) {
    if (d.name == "k") {
      EXPECT_EQ(d.dims, (std::vector<int64_t>{kKeys, kDim / 2}));
      EXPECT_EQ(d.element_type, "fp4");
    }
    if (d.name == "q_scale_blocks") {
      EXPECT_EQ(d.dims, (std::vector<int64_t>{kQueries, kHeads, kDim / 32}));
    }
    saw_blocks = saw_blocks || d.name == "k_scale_blocks";
  }
  EXPECT_TRUE(saw_blocks);
}

TEST(Fp4Dumps, FirstValueSitsInTheLowNibble) {
  test::TempDir dir;
  LayerArrays a = fp4_layer();
  std::fill(a.k.begin(), a.k.end(), 0.0f);
  a.k[0] = 1.0f;   // code 0x2
  a.k[1] = -6.0f;  // code 0xF
  const std::string path = write_fp4(dir, a);
  h5::Handle f = h5::file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  h5::Handle k = h5::dataset(H5Dopen2(f.get(), "/s0/layer_0/k", H5P_DEFAULT));
  std::vector<uint8_t> row(kDim / 2);
  h5::read_rows(k.get(), H5T_NATIVE_UINT8, 0, 1, row.data());
  EXPECT_EQ(row[0], 0xF2u);
  h5::Handle s = h5::dataset(H5Dopen2(f.get(), "/s0/layer_0/k_scale_blocks", H5P_DEFAULT));
  std::vector<uint8_t> scales(kDim / 32);
  h5::read_rows(s.get(), H5T_NATIVE_UINT8, 0, 1, scales.data());
  EXPECT_EQ(scales[0], 127u);  // amax 6: scale 1
}

// The message of reading everything in the file after `change` (a raw HDF5 edit of a good fp4 file).
template <typename Change>
std::string refusal(Change change) {
  test::TempDir dir;
  const std::string path = write_fp4(dir, fp4_layer());
  {
    h5::Handle f = h5::file(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT));
    change(f.get());
  }
  try {
    test::read_everything(path);
  } catch (const InputError& e) {
    return e.what();
  }
  return "(read without complaint)";
}

TEST(Fp4Dumps, MissingMisshapenOrNaNScalesAreRefused) {
  std::string m = refusal([](hid_t f) { H5Ldelete(f, "/s0/layer_0/k_scale_blocks", H5P_DEFAULT); });
  EXPECT_NE(m.find("/s0/layer_0/k_scale_blocks: missing: fp4 k needs its block scales"), std::string::npos) << m;
  m = refusal([](hid_t f) {
    H5Ldelete(f, "/s0/layer_0/q_scale_blocks", H5P_DEFAULT);
    hsize_t dims[3] = {kQueries, kHeads, 1};
    h5::Handle space = h5::dataspace(H5Screate_simple(3, dims, nullptr));
    h5::Handle d = h5::dataset(H5Dcreate2(f, "/s0/layer_0/q_scale_blocks", H5T_STD_U8LE, space.get(), H5P_DEFAULT,
                                          H5P_DEFAULT, H5P_DEFAULT));
    std::vector<uint8_t> v(kQueries * kHeads, 127);
    H5Dwrite(d.get(), H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data());
  });
  EXPECT_NE(m.find("/s0/layer_0/q_scale_blocks: shape [5, 3, 1] does not match [5, 3, 2]"), std::string::npos) << m;
  m = refusal([](hid_t f) {
    h5::Handle d = h5::dataset(H5Dopen2(f, "/s0/layer_0/k_scale_blocks", H5P_DEFAULT));
    h5::Handle space = h5::dataspace(H5Dget_space(d.get()));
    hsize_t at[2] = {33, 1};
    H5Sselect_elements(space.get(), H5S_SELECT_SET, 1, at);
    hsize_t one = 1;
    h5::Handle mem = h5::dataspace(H5Screate_simple(1, &one, nullptr));
    const uint8_t nan = 0xFF;
    H5Dwrite(d.get(), H5T_NATIVE_UINT8, mem.get(), space.get(), H5P_DEFAULT, &nan);
  });
  EXPECT_NE(m.find("/s0/layer_0/k: row 33 holds nan at element 32"), std::string::npos) << m;
}

}  // namespace
}  // namespace hisa
