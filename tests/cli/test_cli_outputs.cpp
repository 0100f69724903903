// Every output of every command, byte for byte, against expected files committed in tests/cli/expected/: the
// tables on stdout, JSON, CSV, per-query CSV, checkpointed layer files, the HTML report, and `hisa select`'s
// HDF5 (as text: attributes and every value; HDF5 files themselves hold creation times). A change that moves
// code must leave these alone; one that means to change an output regenerates them with
// HISA_UPDATE_EXPECTED=1 (then `git diff tests/cli/expected` shows what changed, for review).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "io/h5.hpp"
#include "test_util.hpp"

namespace hisa {
namespace {

namespace fs = std::filesystem;

// One case: shell commands run in a scratch directory that holds the inputs (ds.h5 and glm.h5, the golden
// dumps; mixed.h5 and niah.h5, small synthetic ones), then the files compared. Their stdout, concatenated, is
// compared as stdout.txt. Files ending in .h5 are compared as text.
struct OutputCase {
  const char* name;
  std::vector<const char*> commands;
  std::vector<const char*> outputs;
};

const std::vector<OutputCase>& cases() {
  static const std::vector<OutputCase> all = {
      {"inspect", {"hisa inspect ds.h5", "hisa inspect mixed.h5", "hisa inspect niah.h5 --json", "hisa inspect glm.h5 --check"}, {}},
      {"audit_golden",
       {"hisa audit ds.h5 --device cpu --block-size 16 --blocks 8 --worst 3 --json audit.json --csv audit.csv",
        "hisa audit ds.h5 --device cpu --block-size 16 --blocks 8 --max-queries 40 --per-query queries.csv"},
       {"audit.json", "audit.csv", "queries.csv"}},
      {"audit_two_files",
       {"hisa audit ds.h5 glm.h5 --device cpu --block-size 16 --blocks 4 --max-queries 64 --method certified "
        "--parity 8 --worst 2 --json audit.json --csv audit.csv --per-query queries.csv"},
       {"audit.json", "audit.csv", "queries.csv"}},
      {"audit_synthetic",
       {"hisa audit mixed.h5 --device cpu --topk 100 --block-size 64 --blocks 6 --forced extra --pool-precision fp8 "
        "--max-queries 10 --worst 2 --json audit.json --csv audit.csv --per-query queries.csv",
        "hisa audit mixed.h5 niah.h5 --device cpu --block-size 32 --blocks 4 --checkpoint ck --json both.json",
        "hisa audit niah.h5 --device cpu --block-size 32 --blocks 4 --layers 0 --samples sample_0 --csv niah.csv"},
       {"audit.json", "audit.csv", "queries.csv", "both.json", "ck/layer_0.json", "ck/layer_1.json", "niah.csv"}},
      {"sweep_golden",
       {"hisa sweep ds.h5 glm.h5 --device cpu --block-sizes 8-32 --blocks 1-8 --pool-precision fp32,fp8 "
        "--forced in-budget,extra --max-queries 48 --json sweep.json --csv sweep.csv"},
       {"sweep.json", "sweep.csv"}},
      {"sweep_synthetic",
       {"hisa sweep mixed.h5 niah.h5 --device cpu --max-queries 12 --block-sizes 32-128 --blocks 2-32 "
        "--target-recall 0.9 --target-p5 0.8 --json sweep.json --csv sweep.csv --checkpoint ck"},
       {"sweep.json", "sweep.csv", "ck/layer_0.csv", "ck/layer_1.csv"}},
      {"crosslayer",
       {"hisa crosslayer ds.h5 glm.h5 --device cpu --reuse-every 2 --reuse-map 2:1 --recall-target 0.2 --json ds.json "
        "--csv ds.csv",
        "hisa crosslayer mixed.h5 --device cpu --max-queries 12 --topk 32 --json mixed.json"},
       {"ds.json", "ds.csv", "mixed.json"}},
      {"select",
       {"hisa select mixed.h5 --device cpu --method flat --max-queries 6 -o flat.h5",
        "hisa select mixed.h5 --device cpu --method hisa --block-size 64 --blocks 8 --max-queries 6 -o hisa.h5",
        "hisa select mixed.h5 --device cpu --method block --block-size 64 --max-queries 6 -o block.h5",
        "hisa select niah.h5 --device cpu --method certified --block-size 32 --layers 1 -o certified.h5",
        "hisa select ds.h5 --device cpu --method hisa --block-size 16 --blocks 4 --forced extra --samples niah_512_d75 "
        "--max-queries 20 -o golden.h5"},
       {"flat.h5", "hisa.h5", "block.h5", "certified.h5", "golden.h5"}},
      {"explain",
       {"hisa explain mixed.h5 --sample sample_1 --layer 1 --query 5 --block-size 64 --blocks 8 --json mixed.json",
        "hisa explain ds.h5 --sample niah_512_d25 --layer 2 --query 300 --block-size 16 --blocks 4 --max-misses 5 "
        "--width 60 --json golden.json",
        "hisa explain niah.h5 --sample sample_0 --layer 0 --query 15 --block-size 32 --blocks 2 --pool-precision fp8"},
       {"mixed.json", "golden.json"}},
      {"report",
       {"hisa report ds.h5 --device cpu --block-size 16 --blocks 8 --max-queries 100 -o golden.html",
        "hisa sweep mixed.h5 --device cpu --max-queries 8 --block-sizes 32-64 --blocks 2-16 --json sweep.json > /dev/null",
        "hisa crosslayer mixed.h5 --device cpu --max-queries 8 --reuse-every 2 --json crosslayer.json > /dev/null",
        "hisa report mixed.h5 niah.h5 --device cpu --block-size 64 --blocks 4 --max-queries 8 --worst 3 --pictures 2 "
        "--sweep sweep.json --crosslayer crosslayer.json -o synthetic.html"},
       {"golden.html", "synthetic.html"}},
  };
  return all;
}

const char* const kInputs =
    "cp \"$SRC/datasets/golden/deepseek_v32_tiny_niah.h5\" ds.h5 && "
    "cp \"$SRC/datasets/golden/glm_moe_dsa_tiny_niah.h5\" glm.h5 && "
    "hisa synth -o mixed.h5 --profile mixed --seq-len 4096 --layers 2 --heads 8 --head-dim 64 --topk 128 "
    "--queries sample:24 --samples 2 2> /dev/null && "
    "hisa synth -o niah.h5 --profile niah --seq-len 2048 --layers 2 --heads 4 --head-dim 64 --topk 128 "
    "--queries sample:16 --samples 2 --packed 2 --dtype fp8 2> /dev/null";

// Attributes and datasets of an HDF5 file as text, groups in name order.
void describe_object(hid_t object, const std::string& path, std::ostringstream& out) {
  std::vector<std::string> names;
  hsize_t at = 0;
  H5Aiterate2(object, H5_INDEX_NAME, H5_ITER_INC, &at,
              [](hid_t, const char* name, const H5A_info_t*, void* data) -> herr_t {
                static_cast<std::vector<std::string>*>(data)->push_back(name);
                return 0;
              },
              &names);
  for (const std::string& a : names) {
    const char* name = a.c_str();
    out << path << " @" << name << " = ";
    h5::Handle attr = h5::attribute(H5Aopen(object, name, H5P_DEFAULT));
    h5::Handle type = h5::datatype(H5Aget_type(attr.get()));
    if (H5Tget_class(type.get()) == H5T_STRING) {
      out << '"' << h5::read_string_attribute(object, name).value_or("?") << "\"\n";
    } else {
      out << h5::read_int_attribute(object, name).value_or(-1) << "\n";
    }
  }
  for (const std::string& child : h5::child_names(object)) {
    const std::string child_path = path + (path == "/" ? "" : "/") + child;
    if (h5::child_is_group(object, child)) {
      h5::Handle g = h5::group(H5Gopen2(object, child.c_str(), H5P_DEFAULT));
      describe_object(g.get(), child_path, out);
      continue;
    }
    h5::Handle d = h5::dataset(H5Dopen2(object, child.c_str(), H5P_DEFAULT));
    const std::vector<int64_t> dims = h5::dataset_dims(d.get());
    int64_t n = 1;
    out << child_path << " [";
    for (size_t i = 0; i < dims.size(); ++i) out << (i ? "," : "") << dims[i], n *= dims[i];
    out << "]";
    std::vector<int64_t> values(static_cast<size_t>(n));
    if (n > 0) h5::read_rows(d.get(), H5T_NATIVE_INT64, 0, dims[0], values.data());
    for (int64_t v : values) out << " " << v;
    out << "\n";
  }
}

std::string h5_as_text(const std::string& path) {
  h5::Handle f = h5::file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  if (!f) return "cannot open " + path + "\n";
  std::ostringstream out;
  describe_object(f.get(), "/", out);
  return out.str();
}

std::string output_text(const fs::path& file) {
  return file.extension() == ".h5" ? h5_as_text(file.string()) : test::read_text(file.string());
}

// "line N: expected ... got ..." for the first line that differs.
std::string first_difference(const std::string& expected, const std::string& actual) {
  std::istringstream e(expected), a(actual);
  std::string le, la;
  for (int line = 1;; ++line) {
    const bool more_e = bool(std::getline(e, le)), more_a = bool(std::getline(a, la));
    if (!more_e && !more_a) return "they differ only in a final newline";
    if (le != la || more_e != more_a) {
      return "line " + std::to_string(line) + ":\n  expected: " + (more_e ? le : "<end>") + "\n  actual:   " +
             (more_a ? la : "<end>");
    }
  }
}

TEST(CliOutputs, EveryOutputMatchesTheCommittedExpectedFiles) {
#if !HISA_OPTIMIZED_BUILD
  // The expected numbers are the optimised build's, bit for bit; the sanitizer build (-O1) rounds some fp32 sums
  // differently, which the definitions allow, so its outputs differ in the last digits.
  GTEST_SKIP() << "expected outputs are those of the Release build";
#endif
  const fs::path expected_root = fs::path(HISA_SOURCE_DIR) / "tests/cli/expected";
  const bool update = std::getenv("HISA_UPDATE_EXPECTED") != nullptr;
  test::TempDir dir;
  const fs::path bin = fs::path(HISA_BINARY).parent_path();
  const std::string env = "export PATH=\"" + bin.string() + ":$PATH\" SRC=\"" + HISA_SOURCE_DIR + "\"; cd \"" +
                          dir.path().string() + "\" && ";
  const auto inputs = test::run_process({"bash", "-c", env + kInputs}, dir.path().string());
  ASSERT_TRUE(inputs.exited && inputs.status == 0) << inputs.output;
  for (const OutputCase& c : cases()) {
    SCOPED_TRACE(c.name);
    const fs::path work = dir.path() / c.name;
    fs::create_directories(work);
    std::string script = env + "cd " + c.name + " && exec > stdout.txt";
    for (const char* command : c.commands) {
      script += std::string(" && ") + command;
    }
    // Inputs are read from the parent directory.
    for (const char* in : {"ds.h5", "glm.h5", "mixed.h5", "niah.h5"}) fs::create_symlink(dir.path() / in, work / in);
    const auto run = test::run_process({"bash", "-c", script}, dir.path().string());
    ASSERT_TRUE(run.exited && run.status == 0) << run.output;
    std::vector<std::string> outputs(c.outputs.begin(), c.outputs.end());
    outputs.insert(outputs.begin(), "stdout.txt");
    for (const std::string& name : outputs) {
      SCOPED_TRACE(name);
      ASSERT_TRUE(fs::exists(work / name)) << "the case wrote no " << name;
      const std::string actual = output_text(work / name);
      const fs::path expected_file = expected_root / c.name / (name + (name.ends_with(".h5") ? ".txt" : ""));
      if (update) {
        fs::create_directories(expected_file.parent_path());
        std::ofstream(expected_file, std::ios::binary) << actual;
        continue;
      }
      ASSERT_TRUE(fs::exists(expected_file)) << "no expected file " << expected_file
                                             << " (HISA_UPDATE_EXPECTED=1 writes it)";
      const std::string expected = test::read_text(expected_file.string());
      EXPECT_TRUE(expected == actual) << expected_file << " differs, " << first_difference(expected, actual);
    }
  }
}

}  // namespace
}  // namespace hisa
