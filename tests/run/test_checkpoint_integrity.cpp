// Checkpoint units under faults (issue 18, item 7), through the CLI: a unit file with one byte flipped anywhere
// or cut short is recomputed on --resume with a line naming it, and the outputs equal a fresh run's; a dump
// replaced by another of the same size with its mtime put back is not resumed from stale units (stat
// fingerprint: its ctime changed; content fingerprint: its bytes did); several runs sharing one checkpoint
// directory at once all succeed with the same results. And the content hash those rest on.
#include <gtest/gtest.h>
#include <omp.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "core/content_hash.hpp"
#include "synth/synth.hpp"
#include "synth_dump.hpp"
#include "cli/run_hisa.hpp"
#include "test_util.hpp"

namespace hisa {
namespace {

using test::TempDir;
using test::run_hisa;
using test::with;

// A small synthetic dump; dumps of one shape and different seeds have the same size (no compression).
std::string dump(const TempDir& dir, const std::string& name, uint64_t seed = 0) {
  test::SynthShape shape;
  shape.seq_len = 1024;
  shape.topk = 32;
  shape.head_dim = 64;
  shape.queries = "sample:24";
  shape.gzip_level = 0;
  shape.seed = seed;
  return test::write_synth(dir.file(name), shape);
}

// `hisa audit` of the dump on the CPU, small blocks, with the given extra flags; its --json written to `json`.
test::ProcessResult audit(const std::string& file, const std::string& json, const std::vector<std::string>& more,
                          const TempDir& dir) {
  std::vector<std::string> args{"audit", file, "--device", "cpu", "--threads", "1", "--block-size", "16", "--blocks", "4",
                                "--json", json};
  args.insert(args.end(), more.begin(), more.end());
  return run_hisa(args, dir);
}

// The unit files of a checkpoint directory, by name.
std::vector<std::string> unit_files(const std::string& ckpt) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(ckpt)) {
    if (e.path().extension() == ".unit") out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);  // in place: the same inode
  out.write(bytes.data(), std::streamsize(bytes.size()));
}

// "audit timings (..., 2 units, 2 resumed)" from --timings.
std::string resumed_count(const std::string& output) {
  const size_t at = output.find(" resumed)");
  if (at == std::string::npos) return "?";
  const size_t from = output.rfind(' ', at - 1);
  return output.substr(from + 1, at - from - 1);
}

class DamagedUnit : public ::testing::TestWithParam<std::string> {};

// Each way of damaging layer 0's unit file: which bytes change, and what the line on stderr says.
void damage(const std::string& kind, const std::string& unit) {
  std::string bytes = test::read_text(unit);
  ASSERT_GT(bytes.size(), 200u);
  const auto flip = [&](size_t at) { bytes[at] = char(bytes[at] ^ 0x10); };
  if (kind == "MagicByte") flip(0);
  if (kind == "LengthField") flip(14);
  if (kind == "IdentityByte") flip(40);
  if (kind == "PayloadByte") flip(bytes.size() / 2 + 100);
  if (kind == "LastByte") flip(bytes.size() - 1);
  if (kind == "TruncatedToHalf") bytes.resize(bytes.size() / 2);
  if (kind == "TruncatedByOneByte") bytes.resize(bytes.size() - 1);
  if (kind == "Empty") bytes.clear();
  if (kind == "ExtraByte") bytes += 'x';
  write_bytes(unit, bytes);
}

TEST_P(DamagedUnit, IsRecomputedWithALineNamingItAndTheOutputsEqualAFreshRun) {
  TempDir dir;
  const std::string file = dump(dir, "a.h5"), ckpt = dir.file("ckpt");
  const test::ProcessResult fresh = audit(file, dir.file("fresh.json"), {}, dir);
  ASSERT_EQ(fresh.status, 0) << fresh.output;
  const test::ProcessResult first = audit(file, dir.file("first.json"), {"--checkpoint", ckpt}, dir);
  ASSERT_EQ(first.status, 0) << first.output;
  const std::vector<std::string> units = unit_files(ckpt);
  ASSERT_EQ(units.size(), 2u);
  const std::string unit = units[0];  // layer_0.<hash>.unit
  ASSERT_NE(unit.find("/layer_0."), std::string::npos) << unit;
  const std::string good = test::read_text(unit);
  damage(GetParam(), unit);
  ASSERT_NE(test::read_text(unit), good);
  const std::string dump_before = test::read_text(file);

  const test::ProcessResult resumed = audit(file, dir.file("resumed.json"), {"--checkpoint", ckpt, "--resume", "--timings"}, dir);
  ASSERT_TRUE(resumed.exited) << resumed.output;
  EXPECT_EQ(resumed.status, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("hisa: checkpoint " + unit + " is damaged"), std::string::npos) << resumed.output;
  EXPECT_NE(resumed.output.find("; recomputing it\n"), std::string::npos) << resumed.output;
  EXPECT_EQ(resumed.output.find(units[1]), std::string::npos) << "the good unit was named: " << resumed.output;
  EXPECT_EQ(resumed_count(resumed.output), "1") << resumed.output;
  EXPECT_EQ(test::read_text(dir.file("resumed.json")), test::read_text(dir.file("fresh.json")));
  EXPECT_EQ(test::read_text(file), dump_before);
  // The recomputed unit was written again, whole: the next resume takes both without a word.
  EXPECT_EQ(test::read_text(unit), good);
  const test::ProcessResult again = audit(file, dir.file("again.json"), {"--checkpoint", ckpt, "--resume", "--timings"}, dir);
  EXPECT_EQ(again.status, 0) << again.output;
  EXPECT_EQ(again.output.find("hisa: checkpoint"), std::string::npos) << again.output;
  EXPECT_EQ(resumed_count(again.output), "2") << again.output;
  EXPECT_EQ(test::read_text(dir.file("again.json")), test::read_text(dir.file("fresh.json")));
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, DamagedUnit,
                         ::testing::Values("MagicByte", "LengthField", "IdentityByte", "PayloadByte", "LastByte",
                                           "TruncatedToHalf", "TruncatedByOneByte", "Empty", "ExtraByte"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

// The sweep shares the runner: one case there too.
TEST(Checkpoints, SweepRecomputesADamagedUnit) {
  TempDir dir;
  const std::string file = dump(dir, "a.h5"), ckpt = dir.file("ckpt");
  const std::vector<std::string> base{"sweep", file, "--device", "cpu", "--threads", "1", "--block-sizes", "8,32", "--blocks", "1-8"};
  auto with = [&](std::vector<std::string> more) {
    std::vector<std::string> args = base;
    args.insert(args.end(), more.begin(), more.end());
    return args;
  };
  ASSERT_EQ(run_hisa(with({"--json", dir.file("fresh.json")}), dir).status, 0);
  ASSERT_EQ(run_hisa(with({"--checkpoint", ckpt, "--json", dir.file("first.json")}), dir).status, 0);
  const std::string unit = unit_files(ckpt).back();
  damage("PayloadByte", unit);
  const test::ProcessResult r = run_hisa(with({"--checkpoint", ckpt, "--resume", "--json", dir.file("resumed.json")}), dir);
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("hisa: checkpoint " + unit + " is damaged (checksum mismatch); recomputing it"), std::string::npos)
      << r.output;
  EXPECT_EQ(test::read_text(dir.file("resumed.json")), test::read_text(dir.file("fresh.json")));
}

// Overwrites `file` in place (same inode, same size) with `other`'s bytes and puts its times back.
void replace_keeping_mtime(const std::string& file, const std::string& other) {
  struct stat st {};
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  const std::string bytes = test::read_text(other);
  ASSERT_EQ(bytes.size(), size_t(st.st_size)) << "the replacement must have the same size";
  write_bytes(file, bytes);
  const struct timespec times[2] = {st.st_atim, st.st_mtim};
  ASSERT_EQ(::utimensat(AT_FDCWD, file.c_str(), times, 0), 0);
  struct stat now {};
  ASSERT_EQ(::stat(file.c_str(), &now), 0);
  ASSERT_EQ(now.st_ino, st.st_ino);
  ASSERT_EQ(now.st_size, st.st_size);
  ASSERT_EQ(now.st_mtim.tv_sec, st.st_mtim.tv_sec);
  ASSERT_EQ(now.st_mtim.tv_nsec, st.st_mtim.tv_nsec);
}

class ReplacedDump : public ::testing::TestWithParam<std::string> {};

TEST_P(ReplacedDump, WithItsMtimeRestoredIsNotResumedFromStaleUnits) {
  TempDir dir;
  const std::string file = dump(dir, "a.h5", 0), other = dump(dir, "b.h5", 1), ckpt = dir.file("ckpt");
  const std::vector<std::string> flags{"--checkpoint", ckpt, "--fingerprint", GetParam(), "--timings"};
  const test::ProcessResult first = audit(file, dir.file("first.json"), flags, dir);
  ASSERT_EQ(first.status, 0) << first.output;
  replace_keeping_mtime(file, other);
  const test::ProcessResult fresh = audit(file, dir.file("fresh.json"), {}, dir);
  ASSERT_EQ(fresh.status, 0) << fresh.output;
  ASSERT_NE(test::read_text(dir.file("fresh.json")), test::read_text(dir.file("first.json")));  // the test means something

  const test::ProcessResult resumed = audit(file, dir.file("resumed.json"), with(flags, {"--resume"}), dir);
  EXPECT_EQ(resumed.status, 0) << resumed.output;
  EXPECT_EQ(resumed_count(resumed.output), "0") << resumed.output;
  EXPECT_EQ(test::read_text(dir.file("resumed.json")), test::read_text(dir.file("fresh.json")));
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, ReplacedDump, ::testing::Values("stat", "content"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

// --fingerprint content knows a file by its bytes: touching it (a new mtime and ctime) keeps its units.
TEST(Checkpoints, ContentFingerprintResumesATouchedFile) {
  TempDir dir;
  const std::string file = dump(dir, "a.h5"), ckpt = dir.file("ckpt");
  const std::vector<std::string> flags{"--checkpoint", ckpt, "--fingerprint", "content", "--timings"};
  ASSERT_EQ(audit(file, dir.file("first.json"), flags, dir).status, 0);
  std::filesystem::last_write_time(file, std::filesystem::last_write_time(file) + std::chrono::hours(1));
  const test::ProcessResult r = audit(file, dir.file("resumed.json"), with(flags, {"--resume"}), dir);
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(resumed_count(r.output), "2") << r.output;
  EXPECT_EQ(test::read_text(dir.file("resumed.json")), test::read_text(dir.file("first.json")));
  // The stat fingerprint (the default) sees the new times: nothing of that run is taken.
  const test::ProcessResult by_stat = audit(file, dir.file("stat.json"), {"--checkpoint", ckpt, "--resume", "--timings"}, dir);
  EXPECT_EQ(by_stat.status, 0) << by_stat.output;
  EXPECT_EQ(resumed_count(by_stat.output), "0") << by_stat.output;
}

// Several runs on one checkpoint directory at once (some resuming what others write): every one succeeds, with
// the outputs of a run alone, and the directory holds whole units only.
TEST(Checkpoints, ConcurrentRunsShareOneDirectory) {
  TempDir dir;
  const std::string a = dump(dir, "a.h5"), ckpt = dir.file("ckpt");
  ASSERT_EQ(audit(a, dir.file("alone.json"), {}, dir).status, 0);
  constexpr int kRuns = 6;
  std::vector<test::ProcessResult> results(kRuns);
  std::vector<std::thread> threads;
  for (int i = 0; i < kRuns; ++i) {
    threads.emplace_back([&, i] {
      std::vector<std::string> more{"--checkpoint", ckpt};
      if (i % 2 == 1) more.push_back("--resume");
      results[size_t(i)] = audit(a, dir.file("run" + std::to_string(i) + ".json"), more, dir);
    });
  }
  for (auto& t : threads) t.join();
  const std::string alone = test::read_text(dir.file("alone.json"));
  for (int i = 0; i < kRuns; ++i) {
    EXPECT_TRUE(results[size_t(i)].exited && results[size_t(i)].status == 0) << "run " << i << ":\n" << results[size_t(i)].output;
    EXPECT_EQ(results[size_t(i)].output.find("hisa: checkpoint"), std::string::npos) << results[size_t(i)].output;
    EXPECT_EQ(test::read_text(dir.file("run" + std::to_string(i) + ".json")), alone) << "run " << i;
  }
  // Only finished files: two units and two layer files, nothing temporary.
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(ckpt)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  ASSERT_EQ(names.size(), 4u) << ::testing::PrintToString(names);
  EXPECT_EQ(names[1], "layer_0.json");  // after layer_0.<hex>.unit
  EXPECT_EQ(names[3], "layer_1.json");
  const test::ProcessResult resumed = audit(a, dir.file("resumed.json"), {"--checkpoint", ckpt, "--resume", "--timings"}, dir);
  EXPECT_EQ(resumed_count(resumed.output), "2") << resumed.output;
  EXPECT_EQ(test::read_text(dir.file("resumed.json")), alone);
}

// ----- the hash itself ---------------------------------------------------------------------------------------

TEST(ContentHash, EveryFlippedByteAndEveryTruncationChangesIt) {
  std::string bytes(1000, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = char(i * 37 + 11);
  const uint64_t h = hash_bytes(bytes.data(), bytes.size());
  for (size_t i = 0; i < bytes.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string changed = bytes;
      changed[i] = char(changed[i] ^ (1 << bit));
      ASSERT_NE(hash_bytes(changed.data(), changed.size()), h) << "byte " << i << " bit " << bit;
    }
  }
  for (size_t n = 0; n < bytes.size(); ++n) ASSERT_NE(hash_bytes(bytes.data(), n), h) << "first " << n << " bytes";
  // Trailing zeros are not lost in the padding of the last word.
  const std::string zeros(5, '\0');
  EXPECT_NE(hash_bytes(zeros.data(), 3), hash_bytes(zeros.data(), 4));
  EXPECT_NE(hash_bytes(bytes.data(), bytes.size(), 1), h);  // the seed takes part
}

TEST(ContentHash, AFileHashesTheSameWhateverTheThreadCountAndChangesWithAnyByte) {
  TempDir dir;
  const std::string path = dir.file("data.bin");
  std::string bytes(size_t(20) << 20, '\0');  // 20 MiB: three blocks of 8 MiB, the last one partial
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = char((i * 2654435761u) >> 13);
  write_bytes(path, bytes);
  const uint64_t h = hash_file(path);
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  EXPECT_EQ(hash_file(path), h);
  omp_set_num_threads(threads);
  for (size_t at : {size_t(0), (size_t(8) << 20) - 1, size_t(8) << 20, bytes.size() - 1}) {
    std::string changed = bytes;
    changed[at] = char(changed[at] ^ 1);
    write_bytes(path, changed);
    EXPECT_NE(hash_file(path), h) << "byte " << at;
  }
  write_bytes(path, bytes.substr(0, bytes.size() - 1));
  EXPECT_NE(hash_file(path), h);
  write_bytes(path, "");
  EXPECT_EQ(hash_file(path), hash_file(path));
  EXPECT_THROW(hash_file(dir.file("absent")), std::runtime_error);
}

}  // namespace
}  // namespace hisa
