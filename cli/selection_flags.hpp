#pragma once
// Flags shared by every subcommand that selects tokens (audit, select): one definition, one meaning.
#include <CLI/CLI.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cli/input_flags.hpp"
#include "cli/run_flags.hpp"
#include "core/error.hpp"
#include "core/int_list.hpp"
#include "pipelines/audit.hpp"
#include "select/config.hpp"

namespace hisa::cli {

struct SelectionFlags {
  std::string samples, layers;
  int64_t max_queries = 0;
  int64_t block_size = 128, blocks = 64;
  std::string forced = "in-budget", pool = "fp32", device = "auto";
  std::optional<int64_t> topk;
  int threads = 0;
  bool fp8_mma = false;
  bool allow_external = false;

  // Everything: which queries to read, how to select them, on what.
  void add_to(CLI::App* app) {
    app->add_option("--samples", samples, "Comma-separated sample names (default: all)");
    app->add_option("--layers", layers, "Layers, e.g. 0-3,7 (default: all)");
    app->add_option("--max-queries", max_queries, "At most N evenly spaced queries per layer (default 0: all)")
        ->check(CLI::NonNegativeNumber);
    add_config_to(app);
    app->add_option("--device", device, "cpu, cuda or auto")->check(CLI::IsMember({"cpu", "cuda", "auto"}))->capture_default_str();
    app->add_option("--threads", threads, "CPU threads (default 0: all cores); results never depend on it")
        ->check(thread_count());
    add_fp8_mma_flag(app, fp8_mma);
    add_verbose_flag(app);
    add_allow_external_flag(app, allow_external);
  }

  // Only the selection rule: block size, budget, forced mode, pooling, k.
  void add_config_to(CLI::App* app) {
    app->add_option("--block-size", block_size, "HISA block size B")->capture_default_str();
    app->add_option("--blocks", blocks, "HISA blocks kept, m")->capture_default_str();
    app->add_option("--forced", forced, "Forced first/last blocks: in-budget (official code) or extra (paper)")
        ->check(CLI::IsMember({"in-budget", "extra"}))
        ->capture_default_str();
    app->add_option("--pool-precision", pool, "Pooled keys: fp32 mean, or re-quantised to fp8 e4m3")
        ->check(CLI::IsMember({"fp32", "fp8"}))
        ->capture_default_str();
    app->add_option("--topk", topk, "Tokens selected per query (default: the file's index_topk; at most 2^24)");
  }

  SelectionConfig config() const {
    SelectionConfig c;
    c.block_size = block_size;
    c.blocks = blocks;
    c.forced = *parse_forced_mode(forced);
    c.pool = *parse_pool_precision(pool);
    if (topk) c.topk = *topk;
    c.validate();
    return c;
  }
  // Fills everything but the files and the command's own options.
  void apply_to(AuditOptions& o) const {
    o.samples = sample_list();
    o.layers = layer_list();
    o.max_queries = max_queries;
    o.topk = topk;
    o.config = config();
    o.run.device = device;
    o.run.fp8_mma = fp8_mma;
    o.threads = threads;
    o.reader.allow_external = allow_external;
  }

  std::vector<std::string> sample_list() const { return split_list(samples); }
  IntRanges layer_list() const { return layers.empty() ? IntRanges{} : IntRanges::parse(layers, "layers"); }
};

}  // namespace hisa::cli
