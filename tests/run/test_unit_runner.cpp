// run/unit_runner: unit order, results independent of the worker count and the read-ahead budget, errors
// passed on, checkpoints and --resume, and interruption by SIGINT, through the library and the CLI.
#include <gtest/gtest.h>
#include <omp.h>
#include <signal.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include "core/error.hpp"
#include "io/dump_reader.hpp"
#include "pipelines/audit.hpp"
#include "render/audit_output.hpp"
#include "pipelines/sweep.hpp"
#include "render/sweep_output.hpp"
#include "run/bytes.hpp"
#include "run/unit_runner.hpp"
#include "synth_dump.hpp"
#include "test_util.hpp"

namespace hisa {
namespace {

// A dump of `layers` layers with small shapes, written by hisa synth.
std::string small_dump(const test::TempDir& dir, const std::string& name, int layers, int64_t seq_len = 1024) {
  return test::write_synth(dir.file(name), {.seq_len = seq_len, .layers = layers, .topk = 32, .queries = "sample:24"});
}

// Result = the unit's layer, the sum of its keys and the query indices it saw, in order.
class SummingWorker final : public UnitWorker {
 public:
  explicit SummingWorker(std::function<void(const WorkUnit&)> on_begin = {}) : on_begin_(std::move(on_begin)) {}
  void begin(const WorkUnit& u, const LayerKeys& keys) override {
    if (on_begin_) on_begin_(u);
    layer_ = u.layer;
    sum_ = 0;
    for (float v : keys.k) sum_ += double(v);
    queries_.clear();
  }
  void add(const QueryBatch& b, std::span<const int64_t> queries) override {
    EXPECT_EQ(int64_t(queries.size()), b.count);
    queries_.insert(queries_.end(), queries.begin(), queries.end());
  }
  std::string finish() override {
    ByteWriter w;
    w.put(layer_);
    w.put(sum_);
    w.put_vector(queries_);
    return w.take();
  }

 private:
  std::function<void(const WorkUnit&)> on_begin_;
  int layer_ = 0;
  double sum_ = 0;
  std::vector<int64_t> queries_;
};

struct Fixture {
  std::vector<DumpReader> readers;
  std::vector<SampleSource> sources;
  std::vector<WorkUnit> units;
  explicit Fixture(const std::vector<std::string>& files) {
    for (const auto& f : files) readers.emplace_back(f);
    sources = select_samples(readers, {});
    units = make_work_units(sources, select_layers(sources, {}));
  }
  std::vector<std::string> run(RunPlan plan, RunStats& stats, std::function<void(const WorkUnit&)> on_begin = {}) {
    return run_units(sources, units, plan, [&](int) { return std::make_unique<SummingWorker>(on_begin); }, stats);
  }
};

TEST(WorkUnits, LayerMajorAndOnlyWhereTheSampleHasTheLayer) {
  test::TempDir dir;
  const std::string a = small_dump(dir, "a.h5", 3), b = small_dump(dir, "b.h5", 2);
  Fixture f({a, b});
  const std::vector<std::pair<size_t, int>> expected{{0, 0}, {1, 0}, {0, 1}, {1, 1}, {0, 2}};
  ASSERT_EQ(f.units.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(f.units[i].source, expected[i].first);
    EXPECT_EQ(f.units[i].layer, expected[i].second);
  }
}

TEST(UnitRunner, ResultsDoNotDependOnWorkersOrReadAhead) {
  test::TempDir dir;
  Fixture f({small_dump(dir, "a.h5", 5)});
  RunPlan one;
  one.batch = 5;
  one.handle_signals = false;
  RunStats s1, s2;
  const auto base = f.run(one, s1);
  ASSERT_EQ(base.size(), 5u);
  EXPECT_EQ(s1.workers, 1);
  EXPECT_EQ(s1.computed_here, 5);
  for (size_t u = 0; u < base.size(); ++u) {
    ByteReader r(base[u]);
    EXPECT_EQ(r.get<int>(), f.units[u].layer);
    r.get<double>();
    EXPECT_EQ(r.get_vector<int64_t>().size(), 24u);  // every query, in batches of 5
  }
  RunPlan many = one;
  many.devices = {-1, -1, -1};  // three CPU workers
  many.prefetch_bytes = 1;      // one piece at a time
  many.max_queries = 0;
  EXPECT_EQ(f.run(many, s2), base);
  EXPECT_EQ(s2.workers, 3);
}

// --threads reaches the parallel regions of the workers' (and readers') own threads, which OpenMP would otherwise
// give every core: each worker sees that team size; without it, OpenMP's default.
TEST(UnitRunner, ThreadsSetTheTeamSizeOnTheWorkersThreads) {
  test::TempDir dir;
  Fixture f({small_dump(dir, "a.h5", 2)});
  for (const int threads : {1, 3, 0}) {
    RunPlan plan;
    plan.handle_signals = false;
    plan.devices = {-1, -1};
    plan.threads = threads;
    std::mutex m;
    std::vector<int> seen;
    RunStats stats;
    f.run(plan, stats, [&](const WorkUnit&) {
      std::lock_guard lock(m);
      seen.push_back(omp_get_max_threads());
    });
    ASSERT_EQ(seen.size(), 2u);
    int fresh = 0;  // what a new thread gets
    std::thread([&] { fresh = omp_get_max_threads(); }).join();
    const int want = threads > 0 ? threads : fresh;
    for (int n : seen) EXPECT_EQ(n, want) << "--threads " << threads;
  }
}

// --timings' I/O split: the readers' decoding and checking apart from HDF5's own reading.
TEST(UnitRunner, StatsSplitReadingFromDecoding) {
  test::TempDir dir;
  Fixture f({small_dump(dir, "a.h5", 2)});
  RunPlan plan;
  plan.handle_signals = false;
  RunStats stats;
  f.run(plan, stats);
  EXPECT_GT(stats.decoding, 0.0);
  EXPECT_GT(stats.reading, 0.0);
  EXPECT_LT(stats.decoding + stats.reading, stats.wall + 1.0);
}

TEST(UnitRunner, AWorkersErrorStopsTheRunAndIsRethrown) {
  test::TempDir dir;
  Fixture f({small_dump(dir, "a.h5", 4)});
  RunPlan plan;
  plan.devices = {-1, -1};
  plan.handle_signals = false;
  RunStats stats;
  EXPECT_THROW(f.run(plan, stats, [](const WorkUnit& u) {
    if (u.layer == 2) throw InputError("x.h5", "/sample/layer_2", "bad");
  }), InputError);
}

// The reader is at most two layers ahead of the worker and reuses the storage of scored layers' keys: over eight
// layers of equal size the worker sees at most three LayerKeys, whatever the prefetch budget allows (new memory costs
// page faults; docs/long-runs.md bounds host memory by three layers' keys).
class KeyStorageWorker final : public UnitWorker {
 public:
  explicit KeyStorageWorker(std::vector<std::pair<const LayerKeys*, const float*>>& seen) : seen_(seen) {}
  void begin(const WorkUnit&, const LayerKeys& keys) override {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the reader gets ahead meanwhile
    seen_.emplace_back(&keys, keys.k.data());
  }
  void add(const QueryBatch&, std::span<const int64_t>) override {}
  std::string finish() override { return "done"; }

 private:
  std::vector<std::pair<const LayerKeys*, const float*>>& seen_;
};

TEST(UnitRunner, TheReaderReusesThreeLayersKeyStorage) {
  test::TempDir dir;
  Fixture f({small_dump(dir, "a.h5", 8)});
  RunPlan plan;
  plan.handle_signals = false;
  plan.prefetch_bytes = size_t(1) << 30;  // the budget alone would let every layer be read ahead
  std::vector<std::pair<const LayerKeys*, const float*>> seen;
  RunStats stats;
  const auto results = run_units(f.sources, f.units, plan, [&](int) { return std::make_unique<KeyStorageWorker>(seen); },
                                 stats);
  ASSERT_EQ(results.size(), 8u);
  ASSERT_EQ(seen.size(), 8u);
  std::set<const LayerKeys*> objects;
  std::set<const float*> storage;
  for (const auto& [keys, data] : seen) {
    objects.insert(keys);
    storage.insert(data);
  }
  // At most three, however far the reader got ahead within the worker's sleep (a slow reader may need only two).
  EXPECT_LE(objects.size(), 3u);
  EXPECT_EQ(storage.size(), objects.size());  // equal layers: each LayerKeys keeps its first allocation
}

// A worker that fails while its reader waits for key storage (all three held: one being scored, two queued) ends
// the run with its error; the reader is woken rather than left waiting.
TEST(UnitRunner, AFailureWakesAReaderWaitingForKeyStorage) {
  test::TempDir dir;
  Fixture f({small_dump(dir, "a.h5", 8)});
  RunPlan plan;
  plan.handle_signals = false;
  RunStats stats;
  EXPECT_THROW(f.run(plan, stats, [](const WorkUnit& u) {
    if (u.layer == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (u.layer == 1) throw InputError("x.h5", "/sample/layer_1", "bad");
  }), InputError);
}

TEST(UnitRunner, CheckpointsAreResumedOnlyForTheSameRun) {
  test::TempDir dir;
  Fixture f({small_dump(dir, "a.h5", 3)});
  RunPlan plan;
  plan.checkpoint_dir = dir.file("ckpt");
  plan.fingerprint = "run A";
  plan.handle_signals = false;
  RunStats stats;
  const auto first = f.run(plan, stats);
  size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(plan.checkpoint_dir)) {
    EXPECT_EQ(e.path().extension(), ".unit") << e.path();  // no temporary left behind
    ++files;
  }
  EXPECT_EQ(files, 3u);

  plan.resume = true;
  const auto again = f.run(plan, stats, [](const WorkUnit&) { FAIL() << "a finished unit was computed again"; });
  EXPECT_EQ(again, first);
  EXPECT_EQ(stats.resumed, 3);
  EXPECT_EQ(stats.computed_here, 0);

  plan.fingerprint = "run B";  // other options: nothing may be reused
  int computed = 0;
  f.run(plan, stats, [&](const WorkUnit&) { ++computed; });
  EXPECT_EQ(computed, 3);
  EXPECT_EQ(stats.resumed, 0);

  plan.checkpoint_dir.clear();
  EXPECT_THROW(f.run(plan, stats), UsageError);  // --resume without --checkpoint
}

TEST(UnitRunner, SigintStopsAfterTheUnitsInFlightAndResumeFinishes) {
  test::TempDir dir;
  Fixture f({small_dump(dir, "a.h5", 4)});
  RunPlan plan;
  plan.checkpoint_dir = dir.file("ckpt");
  plan.handle_signals = true;
  RunStats stats;
  const auto before = std::signal(SIGINT, SIG_DFL);
  EXPECT_THROW(f.run(plan, stats, [](const WorkUnit& u) {
    if (u.layer == 2) {
      std::raise(SIGINT);
      std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the main thread sees it meanwhile
    }
  }), Interrupted);
  EXPECT_EQ(std::signal(SIGINT, before), SIG_DFL);  // the run's handler is gone again
  EXPECT_GE(stats.computed_here, 2);
  EXPECT_LT(stats.computed_here, 4);
  plan.resume = true;
  plan.handle_signals = false;
  RunStats resumed;
  const auto all = f.run(plan, resumed);
  EXPECT_EQ(resumed.resumed, stats.computed_here);
  plan.checkpoint_dir.clear();
  plan.resume = false;
  RunStats fresh;
  EXPECT_EQ(f.run(plan, fresh), all);
}

SweepOptions sweep_of(const std::string& file) {
  SweepOptions o;
  o.files = {file};
  o.block_sizes = {8, 32};
  o.blocks = {1, 2, 4, 8};
  o.progress = false;
  return o;
}

TEST(SweepCheckpoints, FinishedLayersAreWrittenAndResumeGivesTheSameResult) {
  test::TempDir dir;
  const std::string file = small_dump(dir, "a.h5", 3);
  const std::string plain = sweep_json(run_sweep(sweep_of(file))).dump();
  SweepOptions o = sweep_of(file);
  o.run.checkpoint_dir = dir.file("ckpt");
  EXPECT_EQ(sweep_json(run_sweep(o)).dump(), plain);
  for (int layer = 0; layer < 3; ++layer) {
    const std::string csv = test::read_text(dir.file("ckpt/layer_" + std::to_string(layer) + ".csv"));
    EXPECT_NE(csv.find("sample,layer,block_size"), std::string::npos);
    EXPECT_NE(csv.find("\n" + std::string("sample_0,") + std::to_string(layer) + ",8,1,"), std::string::npos) << csv;
  }
  o.run.resume = true;
  EXPECT_EQ(sweep_json(run_sweep(o)).dump(), plain);
}

TEST(AuditCheckpoints, FinishedLayersAreWrittenAndResumeGivesTheSameResult) {
  test::TempDir dir;
  const std::string a = small_dump(dir, "a.h5", 3), b = small_dump(dir, "b.h5", 2);
  AuditOptions o;
  o.files = {a, b};
  o.config.block_size = 16;
  o.config.blocks = 4;
  o.run.device = "cpu";
  o.worst = 3;
  o.progress = false;
  const std::string plain = audit_json(run_audit(o)).dump();
  o.run.checkpoint_dir = dir.file("ckpt");
  EXPECT_EQ(audit_json(run_audit(o)).dump(), plain);
  for (int layer = 0; layer < 3; ++layer) {
    const auto j = nlohmann::json::parse(test::read_text(dir.file("ckpt/layer_" + std::to_string(layer) + ".json")));
    ASSERT_EQ(j.at("layers").size(), 1u);
    EXPECT_EQ(j.at("layers")[0].at("layer"), layer);
  }
  o.run.resume = true;
  const AuditResult resumed = run_audit(o);
  EXPECT_EQ(resumed.timings.run.resumed, 5);  // 3 + 2 units, none computed again
  EXPECT_EQ(audit_json(resumed).dump(), plain);
  // Per-query output needs every query in order: no resuming.
  EXPECT_THROW(run_audit(o, [](const QueryRecord&) {}), UsageError);
}

TEST(Inputs, ADirectoryStandsForItsDumpsInNameOrder) {
  test::TempDir dir;
  std::filesystem::create_directory(dir.file("dumps"));
  small_dump(dir, "dumps/b.h5", 1);
  small_dump(dir, "dumps/a.h5", 1);
  { std::ofstream(dir.file("dumps/notes.txt")) << "not a dump"; }
  EXPECT_EQ(expand_inputs({dir.file("dumps"), dir.file("x.h5")}),
            (std::vector<std::string>{dir.file("dumps/a.h5"), dir.file("dumps/b.h5"), dir.file("x.h5")}));
  std::filesystem::create_directory(dir.file("empty"));
  EXPECT_THROW(expand_inputs({dir.file("empty")}), UsageError);
  SweepOptions o = sweep_of(dir.file("dumps"));
  const SweepResult r = run_sweep(o);
  EXPECT_EQ(r.files, (std::vector<std::string>{dir.file("dumps/a.h5"), dir.file("dumps/b.h5")}));
  EXPECT_EQ(r.samples.size(), 2u);
}

// The CLI: SIGINT mid-run exits 130 with finished units kept; --resume then gives the uninterrupted outputs.
TEST(SweepCli, InterruptedRunResumesToTheSameOutputs) {
  test::TempDir dir;
  const std::string file = small_dump(dir, "a.h5", 24, 8192);
  const std::string bin = HISA_BINARY;
  const auto full = test::run_process({bin, "sweep", file, "--device", "cpu", "--threads", "1", "--json", dir.file("full.json"),
                                       "--csv", dir.file("full.csv")}, dir.path().string());
  ASSERT_EQ(full.status, 0) << full.output;

  const std::string ckpt = dir.file("ckpt");
  const std::vector<std::string> args{bin, "sweep", file, "--device", "cpu", "--threads", "1", "--checkpoint", ckpt,
                                      "--json", dir.file("part.json"), "--csv", dir.file("part.csv")};
  const std::string stderr_file = dir.file("interrupted.txt");
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const int null = ::open("/dev/null", O_WRONLY);
    const int err = ::open(stderr_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(null, 1);
    ::dup2(err, 2);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  // Interrupt once the first layer is finished.
  for (int i = 0; i < 600 && !std::filesystem::exists(ckpt + "/layer_0.csv"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ::kill(pid, SIGINT);
  int wstatus = 0;
  ASSERT_EQ(::waitpid(pid, &wstatus, 0), pid);
  // On a loaded machine the run may have finished its units before the signal came: then SIGINT ends it in
  // the output phase (default action) or not at all, and there is nothing to resume.
  if (WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGINT) GTEST_SKIP() << "the signal came after the units were done";
  ASSERT_TRUE(WIFEXITED(wstatus));
  const int status = WEXITSTATUS(wstatus);
  if (status == 0) GTEST_SKIP() << "the run finished before the signal arrived";
  EXPECT_EQ(status, 130);
  // The library says how far it got and where the units are; the CLI adds the flag that continues.
  const std::string said = test::read_text(stderr_file);
  EXPECT_NE(said.find("units are done, kept in " + ckpt + "; rerun with --resume to continue from there"),
            std::string::npos) << said;
  EXPECT_FALSE(std::filesystem::exists(dir.file("part.json")));  // outputs are whole or absent
  EXPECT_TRUE(std::filesystem::exists(ckpt + "/layer_0.csv"));

  auto resume = args;
  resume.push_back("--resume");
  const auto done = test::run_process(resume, dir.path().string());
  ASSERT_EQ(done.status, 0) << done.output;
  EXPECT_EQ(test::read_text(dir.file("part.json")), test::read_text(dir.file("full.json")));
  EXPECT_EQ(test::read_text(dir.file("part.csv")), test::read_text(dir.file("full.csv")));
}

}  // namespace
}  // namespace hisa
