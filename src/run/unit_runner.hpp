#pragma once
// Running a command's work units — one (sample, layer) each — on one or several workers (the CPU, or one
// worker per GPU), with the next units read while the current one is scored, results checkpointed per unit
// as they finish (atomic rename) so an interrupted run can resume, and, under MPI, units spread over ranks
// and gathered on rank 0. Results are merged in unit order, so outputs never depend on who computed what.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "io/dump_model.hpp"
#include "io/sample_selection.hpp"

namespace hisa {

// One layer of one sample. Units are numbered layer by layer, samples in source order within a layer.
struct WorkUnit {
  size_t source = 0;  // index into the run's sources
  int layer = 0;
};
// The units of `layers` × `sources`, skipping samples that lack a layer.
std::vector<WorkUnit> make_work_units(const std::vector<SampleSource>& sources, const std::vector<int>& layers);

// A command's computation of one unit, fed piece by piece. One worker object per worker thread.
class UnitWorker {
 public:
  virtual ~UnitWorker() = default;
  // The unit's keys stay valid until finish() returns.
  virtual void begin(const WorkUnit& unit, const LayerKeys& keys) = 0;
  // queries[i] is the layer's index of batch row i.
  virtual void add(const QueryBatch& batch, std::span<const int64_t> queries) = 0;
  virtual std::string finish() = 0;  // the unit's result (bytes of the command's own encoding)
};

// What identifies an input file to a checkpoint, besides its path and size (--fingerprint): stat also takes its
// inode, modification time and status-change time (ctime, which no user can set back, so a dump replaced with
// its mtime restored is seen); content takes a hash of every byte instead (one read of the whole file per run).
enum class InputFingerprint { Stat, Content };
std::optional<InputFingerprint> parse_input_fingerprint(const std::string& name);  // "stat" or "content"

struct RunPlan {
  int64_t max_queries = 0;  // evenly spaced queries per unit (io/query_subset.hpp); 0: all
  int64_t batch = 256;      // queries per piece
  // Worker i computes on devices[i] (a CUDA device index, or -1 for the CPU); empty: one CPU worker.
  std::vector<int> devices;
  size_t prefetch_bytes = size_t(512) << 20;  // decoded input read ahead per worker, beyond the piece in use
  std::string checkpoint_dir;                 // empty: no checkpoints
  bool resume = false;                        // take finished units from checkpoint_dir
  std::string fingerprint;  // everything that decides a unit's result besides the unit (options, k, ...)
  InputFingerprint input_fingerprint = InputFingerprint::Stat;  // how each unit's input file is identified
  bool handle_signals = true;  // SIGINT/SIGTERM stop the run after the units in flight
  // --threads: the OpenMP threads of the readers' and workers' parallel regions that set no count of their own
  // (decoding, pooling, ...), so that --threads 1 runs on one thread; 0: the OpenMP default, every core.
  int threads = 0;
};

// What a command's options say about where and how its work runs (the CLI's RunFlags fill it).
struct RunOptions {
  std::string device = "cpu";  // cpu, cuda or auto (select/engine.hpp)
  bool fp8_mma = false;        // CUDA engines score fp8 operands on the fp8 tensor cores (not exact)
  std::string gpus;            // "" (the first usable GPU), "all", or a list such as 0,2,3
  size_t prefetch_bytes = size_t(512) << 20;
  std::string checkpoint_dir;
  bool resume = false;
  InputFingerprint fingerprint = InputFingerprint::Stat;
  bool handle_signals = false;  // SIGINT/SIGTERM stop the run after the units in flight (the CLI sets it)
};
// The plan for those options: devices resolved, fingerprint left to the command.
RunPlan make_run_plan(const RunOptions& options, int64_t max_queries, int64_t batch);

struct RunStats {
  double wall = 0;
  double reading = 0;    // seconds spent reading input (HDF5: the file, decompression), summed over the workers' readers
  double decoding = 0;   // seconds spent decoding it to floats and checking it (finite values), likewise
  double computing = 0;  // seconds spent in the workers' begin/add/finish, summed over workers
  double waiting = 0;    // seconds workers waited for input, summed over workers
  int64_t units = 0, resumed = 0, computed_here = 0;
  int workers = 0, ranks = 1;
};

// The run was stopped by SIGINT or SIGTERM; finished units are in the checkpoint directory, when there is one.
class Interrupted : public std::runtime_error {
 public:
  Interrupted(int64_t done, int64_t units, std::string checkpoint_dir)
      : std::runtime_error("interrupted: " + std::to_string(done) + " of this process's " + std::to_string(units) +
                           " units are done" + (checkpoint_dir.empty() ? "" : ", kept in " + checkpoint_dir)),
        checkpoint_dir_(std::move(checkpoint_dir)) {}
  const std::string& checkpoint_dir() const { return checkpoint_dir_; }

 private:
  std::string checkpoint_dir_;
};

// make_worker(device) makes worker objects; on_result (optional, called on this thread in finishing order)
// sees each unit's result as it becomes available on this rank. Returns every unit's result, indexed by
// unit, on rank 0 (and on a run without MPI); other ranks get an empty vector and must write nothing.
// Errors from a worker or a reader (InputError, ...) stop the run and are rethrown here. With plan.resume a
// unit's checkpoint is taken only when it is whole, its checksum holds and it is this run's (its identity
// matches); any other one is recomputed, with a line on stderr naming its file.
std::vector<std::string> run_units(const std::vector<SampleSource>& sources, const std::vector<WorkUnit>& units,
                                   const RunPlan& plan, const std::function<std::unique_ptr<UnitWorker>(int device)>& make_worker,
                                   RunStats& stats, const std::function<void(size_t unit, const std::string& result)>& on_result = {});

// Whether this process is rank 0 (always true without MPI).
bool is_output_rank();

}  // namespace hisa
