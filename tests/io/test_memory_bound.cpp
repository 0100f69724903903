// datasets/FORMAT.md ("Memory") states the peak memory of loading one layer of L = 131,072 keys and 4,096
// queries at H = 64, D = 128 in bf16. This test writes such a file and runs `hisa inspect --check` on it (every
// value read and validated) as a child process, measuring its peak resident set size with wait4().
//
// Run alone with `ctest -L memory` or `build/tests/hisa_memory_test`; the main suite does not include it.
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

#include "io/dump_helpers.hpp"
#include "test_util.hpp"

namespace hisa {
namespace {

using test::TempDir;

constexpr int64_t kKeys = 131072, kQueries = 4096, kHeads = 64, kDim = 128, kTopk = 2048;
constexpr int64_t kQueryBatch = 256;  // the batch `hisa inspect --check` reads
constexpr int64_t kMiB = 1 << 20;

// Generation needs ~300 MiB; it runs in a child so that neither this process nor (through it) the measured
// processes start from a large resident set (Linux carries a process's peak RSS across fork and exec).
void generate_in_child(const std::string& path) {
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    try {
      FileAttributes fa = test::small_file_attributes(kHeads, kDim, kTopk);
      DumpWriter w(path, fa);
      SampleAttributes s;
      s.seq_len = kKeys;
      w.add_sample("s0", s);
      w.add_layer("s0", 0,
                  test::make_layer(kKeys, kQueries, kHeads, kDim, ElementType::BF16, ElementType::BF16, 7, true, kTopk));
      w.close();
      ::_exit(0);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "generation failed: %s\n", e.what());
      ::_exit(1);
    }
  }
  int status = 0;
  ASSERT_EQ(pid, ::waitpid(pid, &status, 0));
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the generator failed";
}

TEST(MemoryBound, InspectCheckOfAFullSizeBf16LayerStaysWithinTheStatedBound) {
  TempDir dir;
  const std::string path = dir.file("full-layer.h5");
  generate_in_child(path);
  // k (32 MiB) and q (64 MiB) in bf16, topk_ref (32 MiB), w: the file really is full size.
  ASSERT_GE(std::filesystem::file_size(path), uintmax_t(128 * kMiB));

  test::ProcessResult baseline = test::run_process({HISA_BINARY, "--version"}, dir.path().string());
  ASSERT_TRUE(baseline.exited && baseline.status == 0) << baseline.output;
  test::ProcessResult r = test::run_process({HISA_BINARY, "inspect", "--check", path}, dir.path().string());
  ASSERT_TRUE(r.exited && r.status == 0) << r.output;

  // The bound of FORMAT.md, term by term (bytes).
  const int64_t decoded_keys = kKeys * kDim * 4 + kKeys * 4;                  // k as float + k_scale
  const int64_t key_read_buffer = 4 * kMiB;                                  // raw rows per read
  const int64_t decoded_batch = kQueryBatch * (kHeads * kDim * 4 + kHeads * 4 + 8 + 8 + kTopk * 4);
  const int64_t raw_batch = kQueryBatch * kHeads * kDim * 2;                 // raw bf16 q of the batch
  const int64_t hdf5 = 7 * kMiB + 1 * kMiB + 8 * kMiB;                       // chunk caches, conversion buffer, library
  const int64_t bound_kib = baseline.max_rss_kib + (decoded_keys + key_read_buffer + decoded_batch + raw_batch + hdf5) / 1024;

  std::printf("hisa --version peak RSS:          %8ld KiB\n", baseline.max_rss_kib);
  std::printf("hisa inspect --check peak RSS:    %8ld KiB (%.1f MiB above --version)\n", r.max_rss_kib,
              double(r.max_rss_kib - baseline.max_rss_kib) / 1024.0);
  std::printf("bound (FORMAT.md):                %8lld KiB (%.1f MiB above --version)\n", (long long)bound_kib,
              double(bound_kib - baseline.max_rss_kib) / 1024.0);
  RecordProperty("baseline_rss_kib", int(baseline.max_rss_kib));
  RecordProperty("peak_rss_kib", int(r.max_rss_kib));
  RecordProperty("bound_kib", int(bound_kib));
  EXPECT_LE(r.max_rss_kib, bound_kib);
  // The keys alone are 64 MiB: a peak far below that means the layer was not really read.
  EXPECT_GE(r.max_rss_kib - baseline.max_rss_kib, kKeys * kDim * 4 / 1024);
}

}  // namespace
}  // namespace hisa
