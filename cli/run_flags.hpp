#pragma once
// Flags for where and how a long run works (audit, sweep): the GPUs, read-ahead, checkpoints and resuming,
// and the time report. One definition for every command that runs work units (run/unit_runner.hpp).
#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

#include "cli/option_checks.hpp"
#include "core/log.hpp"
#include "run/unit_runner.hpp"

namespace hisa::cli {

// --fp8-mma, for every command that scores on a CUDA engine (audit, select, sweep, report).
inline void add_fp8_mma_flag(CLI::App* app, bool& fp8_mma) {
  app->add_flag("--fp8-mma", fp8_mma,
                "CUDA engine: score fp8 dumps on the fp8 tensor cores (scoring 1.1-1.5x faster on an H200; not exact: "
                "differences from the CPU are near-ties within 2^-10; docs/cuda.md, \"fp8 tensor cores\")");
}

// --verbose, for every command that runs an engine: the decisions a run makes for itself, on stderr.
inline void add_verbose_flag(CLI::App* app) {
  app->add_flag_callback("--verbose", [] { set_verbose(true); },
                         "Say on stderr which kernel scores each layer's keys (and which worker takes each layer)");
}

struct RunFlags {
  std::string gpus;
  int64_t prefetch_mb = 512;
  std::string checkpoint;
  bool resume = false;
  std::string fingerprint = "stat";
  bool timings = false;

  void add_to(CLI::App* app) {
    app->add_option("--gpus", gpus, "GPUs to spread the (sample, layer) units over: all, or a list such as 0,2,3 "
                                    "(default: the first usable GPU); results never depend on it");
    // At most 1 TiB: the byte count must fit the budget's size_t with room to spare.
    app->add_option("--prefetch-mb", prefetch_mb, "Decoded input each worker reads ahead while it computes, in MiB")
        ->check(int_range(0, int64_t(1) << 20, "at most 1048576 MiB, 1 TiB"))
        ->capture_default_str();
    app->add_option("--checkpoint", checkpoint,
                    "Directory for per-unit results as they finish (atomic), and finished layers' outputs");
    app->add_flag("--resume", resume, "Take units already finished in --checkpoint DIR from there");
    app->add_option("--fingerprint", fingerprint,
                    "How checkpoints know an input file: stat (path, size, inode, mtime, ctime) or content (path, size "
                    "and a hash of every byte: one extra read of each file)")
        ->check(CLI::IsMember({"stat", "content"}))
        ->capture_default_str();
    app->add_flag("--timings", timings, "Print where the time went on stderr (and add it to --json)");
  }

  // Everything but the device, which the commands take with their other engine options.
  void apply_to(RunOptions& o) const {
    o.gpus = gpus;
    o.prefetch_bytes = size_t(prefetch_mb) << 20;
    o.checkpoint_dir = checkpoint;
    o.resume = resume;
    o.fingerprint = *parse_input_fingerprint(fingerprint);  // one of the two: checked by IsMember
    o.handle_signals = true;
  }
};

}  // namespace hisa::cli
