// Numeric options and resource limits through the CLI (issue 18, item 9): every bad value exits 2 with a message
// naming the flag, before any work; a layer list is bounded by the layers the file holds, however wide; a dataset
// declared far larger than what the file stores is refused up front, naming the file and the HDF5 path. Every
// failed run leaves its input byte for byte as it was.
#include <gtest/gtest.h>
#include <hdf5.h>

#include <string>
#include <vector>

#include "io/bad_dumps.hpp"
#include "io/h5.hpp"
#include "synth_dump.hpp"
#include "cli/run_hisa.hpp"
#include "test_util.hpp"

namespace hisa {
namespace {

using test::TempDir;
using test::run_hisa;
using test::with;

// Runs the command, which must fail with exit status 2 saying every one of `said`, leaving `input` unchanged.
void expect_refused(const std::vector<std::string>& args, const std::vector<std::string>& said, const std::string& input,
                    const TempDir& dir) {
  const std::string before = test::read_text(input);
  const test::ProcessResult r = run_hisa(args, dir);
  std::string line;
  for (const auto& a : args) line += " " + a;
  ASSERT_TRUE(r.exited) << line << ": killed by signal " << r.status << "\n" << r.output;
  EXPECT_EQ(r.status, 2) << line << "\n" << r.output;
  for (const auto& s : said) EXPECT_NE(r.output.find(s), std::string::npos) << line << ": '" << s << "' not in:\n" << r.output;
  EXPECT_EQ(test::read_text(input), before) << line << ": the input changed";
}

std::string small_dump(const TempDir& dir) {
  return test::write_synth(dir.file("d.h5"), {.seq_len = 512, .layers = 2, .topk = 32, .queries = "sample:8"});
}

TEST(CliOptions, MinIouMustBeAFiniteShare) {
  TempDir dir;
  const std::string d = small_dump(dir);
  for (const char* v : {"nan", "NaN", "inf", "-inf", "-0.5", "1.5", "x"}) {
    expect_refused({"audit", d, "--device", "cpu", "--min-iou", v}, {"--min-iou"}, d, dir);
  }
  // The gate itself still works: 0 passes, 1 fails with exit 1 (the only use of 1).
  EXPECT_EQ(run_hisa({"audit", d, "--device", "cpu", "--max-queries", "2", "--min-iou", "0"}, dir).status, 0);
}

TEST(CliOptions, ThreadCountsAreBoundedInEveryCommand) {
  TempDir dir;
  const std::string d = small_dump(dir);
  const std::vector<std::vector<std::string>> commands{
      {"audit", d, "--device", "cpu"},
      {"sweep", d, "--device", "cpu"},
      {"select", d, "--device", "cpu", "-o", dir.file("sel.h5")},
      {"report", d, "--device", "cpu", "-o", dir.file("r.html")},
      {"bench", "--device", "cpu", "--keys", "4096"},
  };
  for (const auto& c : commands) {
    for (const char* v : {"100000", "-1", "4097"}) expect_refused(with(c, {"--threads", v}), {"--threads", "0.."}, d, dir);
  }
  EXPECT_FALSE(std::filesystem::exists(dir.file("sel.h5")));
  EXPECT_FALSE(std::filesystem::exists(dir.file("r.html")));
}

TEST(CliOptions, SelectionSizesAreBounded) {
  TempDir dir;
  const std::string d = small_dump(dir);
  for (const char* flag : {"--topk", "--block-size", "--blocks"}) {
    for (const auto& c : std::vector<std::vector<std::string>>{{"audit", d, "--device", "cpu"},
                                                               {"select", d, "--device", "cpu", "-o", dir.file("s.h5")},
                                                               {"explain", d, "--sample", "sample_0", "--layer", "0", "--query", "0"}}) {
      expect_refused(with(c, {flag, "1000000000"}), {flag, "16777216"}, d, dir);
      expect_refused(with(c, {flag, "0"}), {flag, "at least 1"}, d, dir);
    }
  }
  expect_refused({"sweep", d, "--device", "cpu", "--topk", "1000000000"}, {"--topk", "16777216"}, d, dir);
  expect_refused({"sweep", d, "--device", "cpu", "--blocks", "8-1000000000"}, {"--blocks", "16777216"}, d, dir);
  expect_refused({"sweep", d, "--device", "cpu", "--block-sizes", "99999999999"}, {"--block-sizes", "16777216"}, d, dir);
  expect_refused({"bench", "--device", "cpu", "--topk", "1000000000"}, {"--topk"}, d, dir);
  EXPECT_FALSE(std::filesystem::exists(dir.file("s.h5")));  // refused before the output was made
}

// k beyond L is legal (DSA then keeps every visible key); select's rows are L wide then, not k wide, so a huge k
// costs nothing.
TEST(CliOptions, SelectWithKBeyondTheKeysWritesRowsOfAtMostLKeys) {
  TempDir dir;
  const std::string d = small_dump(dir);
  const test::ProcessResult r =
      run_hisa({"select", d, "--device", "cpu", "--method", "flat", "--topk", "16777216", "-o", dir.file("s.h5")}, dir);
  ASSERT_EQ(r.status, 0) << r.output;
  h5::Handle f = h5::file(H5Fopen(dir.file("s.h5").c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  ASSERT_TRUE(f.valid());
  h5::Handle indices = h5::dataset(H5Dopen2(f.get(), "/sample_0/layer_0/indices", H5P_DEFAULT));
  ASSERT_TRUE(indices.valid());
  EXPECT_EQ(h5::dataset_dims(indices.get()), (std::vector<int64_t>{8, 512}));
}

TEST(CliOptions, LayerListsAreBoundedByTheLayersHeld) {
  TempDir dir;
  const std::string d = small_dump(dir);
  const std::vector<std::string> said{"--layers: layer 2 is in none of the selected samples", "they hold layers 0-1"};
  expect_refused({"audit", d, "--device", "cpu", "--layers", "0-2147483647"}, said, d, dir);
  expect_refused({"sweep", d, "--device", "cpu", "--layers", "1-2147483647"}, said, d, dir);
  expect_refused({"report", d, "--device", "cpu", "--layers", "0-2147483647", "-o", dir.file("r.html")}, said, d, dir);
  expect_refused({"audit", d, "--device", "cpu", "--layers", "0-2147483648"}, {"--layers", "cannot read"}, d, dir);
  expect_refused({"audit", d, "--device", "cpu", "--layers", "3-1"}, {"--layers", "runs backwards"}, d, dir);
  const test::ProcessResult ok = run_hisa({"audit", d, "--device", "cpu", "--max-queries", "2", "--layers", "1,0-1"}, dir);
  EXPECT_EQ(ok.status, 0) << ok.output;
}

TEST(CliOptions, RunFlagsAreChecked) {
  TempDir dir;
  const std::string d = small_dump(dir);
  for (const char* cmd : {"audit", "sweep"}) {
    expect_refused({cmd, d, "--device", "cpu", "--prefetch-mb", "99999999999999"}, {"--prefetch-mb", "1048576"}, d, dir);
    expect_refused({cmd, d, "--device", "cpu", "--prefetch-mb", "-1"}, {"--prefetch-mb"}, d, dir);
    expect_refused({cmd, d, "--device", "cpu", "--fingerprint", "mtime"}, {"--fingerprint", "stat", "content"}, d, dir);
    expect_refused({cmd, d, "--device", "cpu", "--max-queries", "-1"}, {"--max-queries"}, d, dir);
  }
  expect_refused({"sweep", d, "--device", "cpu", "--target-recall", "nan"}, {"--target-recall"}, d, dir);
  expect_refused({"sweep", d, "--device", "cpu", "--target-p5", "1.01"}, {"--target-p5"}, d, dir);
}

// ----- declared shapes against what the file stores --------------------------------------------------------

// Replaces dataset `name` of /s0/layer_0 with one of the given shape and type that is never written (or, with
// `rows_written` > 0, whose first rows only are), contiguous or in gzip-compressed chunks of `chunk_rows` rows.
void declare_unwritten(const std::string& path, const std::string& name, std::vector<hsize_t> dims, hid_t type,
                       hsize_t chunk_rows = 0, hsize_t rows_written = 0) {
  h5::silence_errors();
  h5::Handle f = h5::file(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT));
  ASSERT_TRUE(f.valid());
  const std::string full = "/s0/layer_0/" + name;
  if (H5Lexists(f.get(), full.c_str(), H5P_DEFAULT) > 0) {
    ASSERT_GE(H5Ldelete(f.get(), full.c_str(), H5P_DEFAULT), 0);
  }
  h5::Handle space = h5::dataspace(H5Screate_simple(int(dims.size()), dims.data(), nullptr));
  h5::Handle dcpl = h5::plist(H5Pcreate(H5P_DATASET_CREATE));
  if (chunk_rows > 0) {
    std::vector<hsize_t> chunk = dims;
    chunk[0] = chunk_rows;
    ASSERT_GE(H5Pset_chunk(dcpl.get(), int(chunk.size()), chunk.data()), 0);
    ASSERT_GE(H5Pset_deflate(dcpl.get(), 4), 0);
  }
  h5::Handle d = h5::dataset(H5Dcreate2(f.get(), full.c_str(), type, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT));
  ASSERT_TRUE(d.valid());
  if (rows_written == 0) return;
  hsize_t elements_per_row = 1;
  for (size_t i = 1; i < dims.size(); ++i) elements_per_row *= dims[i];
  std::vector<float> values(rows_written * elements_per_row, 0.25f);
  std::vector<hsize_t> start(dims.size(), 0), count = dims;
  count[0] = rows_written;
  h5::Handle file_space = h5::dataspace(H5Dget_space(d.get()));
  ASSERT_GE(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr), 0);
  h5::Handle mem_space = h5::dataspace(H5Screate_simple(int(count.size()), count.data(), nullptr));
  ASSERT_GE(H5Dwrite(d.get(), H5T_NATIVE_FLOAT, mem_space.get(), file_space.get(), H5P_DEFAULT, values.data()), 0);
}

std::vector<std::vector<std::string>> every_reading_command(const std::string& path, const TempDir& dir) {
  return {{"inspect", path},
          {"inspect", "--check", path},
          {"audit", path, "--device", "cpu"},
          {"sweep", path, "--device", "cpu"},
          {"select", path, "--device", "cpu", "-o", dir.file("sel.h5")},
          {"explain", path, "--sample", "s0", "--layer", "0", "--query", "0"}};
}

TEST(CliDeclaredShapes, KeysDeclaredButNeverWrittenAreRefusedUpFront) {
  TempDir dir;
  const std::string path = dir.file("k-unwritten.h5");
  test::write_base_file(path, test::BaseKind::F32);
  declare_unwritten(path, "k", {1000000000, 8}, H5T_IEEE_F32LE);
  ASSERT_LT(std::filesystem::file_size(path), 1u << 20);
  for (const auto& c : every_reading_command(path, dir)) {
    expect_refused(c, {path + ": /s0/layer_0/k: declares [1000000000, 8] float32, 29.8 GiB", "none of it was ever written"}, path, dir);
  }
  EXPECT_FALSE(std::filesystem::exists(dir.file("sel.h5")));
}

TEST(CliDeclaredShapes, CompressedKeysWithMissingChunksAreRefusedUpFront) {
  TempDir dir;
  const std::string path = dir.file("k-chunks.h5");
  test::write_base_file(path, test::BaseKind::F32);
  declare_unwritten(path, "k", {1000000000, 8}, H5T_IEEE_F32LE, 4096);
  for (const auto& c : every_reading_command(path, dir)) {
    expect_refused(c, {path + ": /s0/layer_0/k: declares [1000000000, 8]", "in 244141 chunks, but only 0 are stored"}, path, dir);
  }
  // Partly written: the chunks after the written rows are missing as well.
  const std::string part = dir.file("k-part.h5");
  test::write_base_file(part, test::BaseKind::F32);
  declare_unwritten(part, "k", {40000, 8}, H5T_IEEE_F32LE, 4096, 5000);
  expect_refused({"audit", part, "--device", "cpu"}, {part + ": /s0/layer_0/k:", "in 10 chunks, but only 2 are stored"}, part, dir);
}

TEST(CliDeclaredShapes, QueriesDeclaredByTheBillionAreRefusedBeforeAnyRead) {
  TempDir dir;
  const std::string path = dir.file("q-unwritten.h5");
  test::write_base_file(path, test::BaseKind::F32);
  const hsize_t n = 1000000000;
  declare_unwritten(path, "q", {n, 2, 8}, H5T_IEEE_F32LE);
  declare_unwritten(path, "w", {n, 2}, H5T_IEEE_F32LE);
  declare_unwritten(path, "q_pos", {n}, H5T_STD_I64LE);
  declare_unwritten(path, "k_start", {n}, H5T_STD_I64LE);
  declare_unwritten(path, "topk_ref", {n, 4}, H5T_STD_I32LE);
  ASSERT_LT(std::filesystem::file_size(path), 1u << 20);
  for (const auto& c : every_reading_command(path, dir)) {
    expect_refused(c, {path + ": /s0/layer_0/q: declares [1000000000, 2, 8] float32", "none of it was ever written"}, path, dir);
  }
}

TEST(CliDeclaredShapes, EveryGoodDumpPassesTheStorageCheck) {
  TempDir dir;
  for (auto kind : {test::BaseKind::F32, test::BaseKind::Fp8, test::BaseKind::Bf16Custom, test::BaseKind::Bf16Uint16}) {
    const std::string path = dir.file("good.h5");
    test::write_base_file(path, kind);
    const test::ProcessResult r = run_hisa({"inspect", "--check", path}, dir);
    EXPECT_EQ(r.status, 0) << r.output;
  }
  const std::string synth = test::write_synth(dir.file("synth.h5"), {.seq_len = 1024, .layers = 1, .topk = 32});
  EXPECT_EQ(run_hisa({"inspect", "--check", synth}, dir).status, 0);
}

}  // namespace
}  // namespace hisa
