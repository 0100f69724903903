#pragma once
// --allow-external, for every command that reads dumps (inspect, audit, select, explain, sweep, report): one
// definition, one meaning (io/dump_reader.hpp ReaderOptions; datasets/FORMAT.md, "What lies outside the file").
#include <CLI/CLI.hpp>
#include <cstdint>
#include <optional>
#include <string>

#include "cli/option_checks.hpp"
#include "cli/run_flags.hpp"
#include "core/int_list.hpp"

namespace hisa::cli {

inline void add_allow_external_flag(CLI::App* app, bool& allow_external) {
  app->add_flag("--allow-external", allow_external,
                "Follow what reaches outside the dump: external links, external raw storage, virtual datasets "
                "(refused by default)");
}

// Which queries a unit-running command reads (sweep, crosslayer) and on what it computes: one definition of each
// flag for both.
struct UnitInputFlags {
  std::string samples, layers;
  std::optional<int64_t> topk;
  int64_t max_queries = 0;
  int threads = 0;
  std::string device = "auto";
  bool fp8_mma = false;
  bool allow_external = false;

  void add_to(CLI::App* app) {
    app->add_option("--topk", topk, "Tokens selected per query (default: the file's index_topk; at most 2^24)");
    app->add_option("--samples", samples, "Comma-separated sample names (default: all)");
    app->add_option("--layers", layers, "Layers, e.g. 0-3,7 (default: all)");
    app->add_option("--max-queries", max_queries, "At most N evenly spaced queries per layer (default 0: all)")
        ->check(CLI::NonNegativeNumber);
    app->add_option("--threads", threads, "CPU threads (default 0: all cores); results never depend on it")
        ->check(thread_count());
    app->add_option("--device", device, "cpu, cuda or auto (the GPU when one is usable)")
        ->check(CLI::IsMember({"cpu", "cuda", "auto"}))
        ->capture_default_str();
    add_fp8_mma_flag(app, fp8_mma);
    add_verbose_flag(app);
    add_allow_external_flag(app, allow_external);
  }
  IntRanges layer_list() const { return layers.empty() ? IntRanges{} : IntRanges::parse(layers, "layers"); }
  // Into a command's options (SweepOptions, CrosslayerOptions: the same names for the same things).
  template <typename Options>
  void apply_to(Options& o) const {
    o.samples = split_list(samples);
    o.layers = layer_list();
    o.max_queries = max_queries;
    o.topk = topk;
    o.threads = threads;
    o.run.device = device;
    o.run.fp8_mma = fp8_mma;
    o.reader.allow_external = allow_external;
  }
};

}  // namespace hisa::cli
