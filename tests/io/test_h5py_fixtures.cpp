// Files written by h5py (datasets/fixtures/make_h5py_fixtures.py, committed next to it) decode to exactly the
// values the script meant, in every encoding; and h5py reads what hisa's writer produces (bfloat16 custom float
// as float32). The tests that run Python skip when no python3 with h5py and numpy is found.
#include <gtest/gtest.h>

#include <bit>
#include <optional>

#include "io/dump_reader.hpp"
#include "io/dump_writer.hpp"
#include "io/fixture_values.hpp"
#include "test_util.hpp"

namespace hisa {
namespace {

namespace fx = test::fixture;
using test::TempDir;

const std::string kFixtureDir = std::string(HISA_SOURCE_DIR) + "/datasets/fixtures";
const std::string kScript = kFixtureDir + "/make_h5py_fixtures.py";

// Debian's h5py lives under /usr/bin/python3; a python3 earlier in PATH (pyenv, venv) may lack it.
std::optional<std::string> python_with_h5py() {
  static const std::optional<std::string> found = [] () -> std::optional<std::string> {
    TempDir dir;
    for (const char* candidate : {"/usr/bin/python3", "python3"}) {
      test::ProcessResult r = test::run_process({candidate, "-c", "import h5py, numpy"}, dir.path().string());
      if (r.exited && r.status == 0) return std::string(candidate);
    }
    return std::nullopt;
  }();
  return found;
}

::testing::AssertionResult SameBits(float expected, float actual, const std::string& what) {
  if (std::bit_cast<uint32_t>(expected) == std::bit_cast<uint32_t>(actual)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": expected " << std::hexfloat << expected << ", read " << actual;
}

// Every value of the fixture layout, through hisa's loader.
void check_fixture(const std::string& path, const fx::Encoding& e) {
  SCOPED_TRACE(path);
  DumpReader r(path);
  EXPECT_EQ(fx::kHeads, r.attributes().n_heads);
  EXPECT_EQ(fx::kDim, r.attributes().head_dim);
  EXPECT_EQ(fx::kTopk, r.attributes().index_topk);
  ASSERT_EQ(1u, r.samples().size());
  const SampleAttributes& sa = r.sample("s0").attributes;
  EXPECT_EQ(fx::kKeys, sa.seq_len);
  EXPECT_EQ("niah", sa.task);
  EXPECT_EQ(50.0, sa.depth_percent);
  EXPECT_EQ(18, sa.needle_begin);
  EXPECT_EQ(22, sa.needle_end);
  EXPECT_EQ("half-split", r.attributes().rope);
  EXPECT_EQ(0, r.attributes().hadamard);

  LayerReader lr = r.open_layer("s0", 0);
  const LayerShape& sh = lr.shape();
  EXPECT_EQ(e.element, sh.k_type);
  EXPECT_EQ(e.element, sh.q_type);
  ASSERT_EQ(fx::kKeys, sh.keys);
  ASSERT_EQ(fx::kQueries, sh.queries);
  ASSERT_EQ(fx::kHeads, sh.heads);
  ASSERT_EQ(fx::kDim, sh.dim);
  const bool fp8 = e.element == ElementType::FP8_E4M3;
  EXPECT_EQ(fp8, sh.has_k_scale);
  EXPECT_EQ(fp8, sh.has_k_start);
  EXPECT_EQ(fp8 ? fx::kTopk : 0, sh.ref_width);
  for (const auto& d : lr.describe()) {
    if (d.name == "k" || d.name == "q") {
      EXPECT_EQ(e.stored, d.stored_type) << d.name;
    }
  }

  LayerKeys keys = lr.read_keys();
  for (size_t i = 0; i < keys.k.size(); ++i) {
    ASSERT_TRUE(SameBits(fx::k_value(e.element, i), keys.k[i], "k[" + std::to_string(i) + "]"));
  }
  for (size_t s = 0; s < keys.k_scale.size(); ++s) {
    ASSERT_TRUE(SameBits(fp8 ? fx::k_scale_value(s) : 1.0f, keys.k_scale[s], "k_scale[" + std::to_string(s) + "]"));
  }
  QueryBatch b = lr.read_queries(0, fx::kQueries);
  for (size_t i = 0; i < b.q.size(); ++i) {
    ASSERT_TRUE(SameBits(fx::q_value(e.element, i), b.q[i], "q[" + std::to_string(i) + "]"));
  }
  for (size_t i = 0; i < b.w.size(); ++i) ASSERT_TRUE(SameBits(fx::w_value(i), b.w[i], "w[" + std::to_string(i) + "]"));
  EXPECT_EQ(fx::kQPos, b.q_pos);
  EXPECT_EQ(fp8 ? fx::kKStart : std::vector<int64_t>(3, 0), b.k_start);
  EXPECT_EQ(fp8 ? fx::kTopkRef : std::vector<int32_t>{}, b.topk_ref);
}

class H5pyFixture : public ::testing::TestWithParam<fx::Encoding> {};

TEST_P(H5pyFixture, CommittedFileDecodesToTheIntendedValues) {
  check_fixture(kFixtureDir + "/fixture_" + GetParam().name + ".h5", GetParam());
}

INSTANTIATE_TEST_SUITE_P(Encodings, H5pyFixture, ::testing::ValuesIn(fx::encodings()),
                         [](const ::testing::TestParamInfo<fx::Encoding>& info) { return std::string(info.param.name); });

TEST(H5pyFixtures, ScriptStillWritesWhatTheCommittedFilesHold) {
  auto python = python_with_h5py();
  if (!python) GTEST_SKIP() << "no python3 with h5py and numpy";
  TempDir dir;
  test::ProcessResult r = test::run_process({*python, kScript, "generate", dir.path().string()}, dir.path().string());
  ASSERT_TRUE(r.exited && r.status == 0) << r.output;
  for (const auto& e : fx::encodings()) check_fixture(dir.file(std::string("fixture_") + e.name + ".h5"), e);
}

// hisa's writer, h5py's reader: every encoding decodes (with h5py and numpy alone) to the fixture values,
// and the bfloat16 custom float comes out of h5py as float32.
TEST(H5pyFixtures, H5pyReadsWhatHisaWrites) {
  auto python = python_with_h5py();
  if (!python) GTEST_SKIP() << "no python3 with h5py and numpy";
  TempDir dir;
  std::vector<std::string> argv{*python, kScript, "verify"};
  for (const auto& e : fx::encodings()) {
    const std::string path = dir.file(std::string("hisa_") + e.name + ".h5");
    FileAttributes fa;
    fa.model = "hisa-writer";
    fa.n_heads = fx::kHeads;
    fa.head_dim = fx::kDim;
    fa.index_topk = fx::kTopk;
    DumpWriter w(path, fa);
    SampleAttributes s;
    s.seq_len = fx::kKeys;
    w.add_sample("s0", s);
    WriteOptions options;
    options.bf16_as_uint16 = e.uint16_storage;
    options.gzip_level = 4;
    w.add_layer("s0", 0, fx::layer(e.element), options);
    w.close();
    argv.push_back(path);
  }
  test::ProcessResult r = test::run_process(argv, dir.path().string());
  ASSERT_TRUE(r.exited);
  EXPECT_EQ(0, r.status) << r.output;
  EXPECT_NE(r.output.find("hisa_bfloat16.h5 /s0/layer_0/k: bfloat16, h5py dtype float32"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("OK " + dir.file("hisa_float8_e4m3fn.h5")), std::string::npos) << r.output;
}

// The check above is only worth something if verify notices a wrong value.
TEST(H5pyFixtures, VerifyRejectsAWrongValue) {
  auto python = python_with_h5py();
  if (!python) GTEST_SKIP() << "no python3 with h5py and numpy";
  TempDir dir;
  const std::string path = dir.file("wrong.h5");
  FileAttributes fa;
  fa.model = "hisa-writer";
  fa.n_heads = fx::kHeads;
  fa.head_dim = fx::kDim;
  fa.index_topk = fx::kTopk;
  LayerArrays layer = fx::layer(ElementType::BF16);
  layer.k[17] = 2.0f;
  {
    DumpWriter w(path, fa);
    SampleAttributes s;
    s.seq_len = fx::kKeys;
    w.add_sample("s0", s);
    w.add_layer("s0", 0, layer);
  }
  test::ProcessResult r = test::run_process({*python, kScript, "verify", path}, dir.path().string());
  ASSERT_TRUE(r.exited);
  EXPECT_EQ(1, r.status) << r.output;
  EXPECT_NE(r.output.find("/s0/layer_0/k: values differ from the bfloat16 pattern"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace hisa
