#pragma once
// How a dump's topk_ref is judged (audit, explain --ref): overrides of what its attributes declare, and the
// near-tie tolerance (docs/definitions.md, "Judging topk_ref").
#include <CLI/CLI.hpp>
#include <optional>
#include <string>

#include "cli/option_checks.hpp"
#include "metrics/ref_rule.hpp"
#include "select/config.hpp"

namespace hisa::cli {

struct RefFlags {
  std::string method, forced, pool;
  std::optional<int64_t> block_size, blocks;
  double tolerance = kDefaultRefTolerance;

  void add_to(CLI::App* app) {
    app->add_option("--ref-method", method, "Judge topk_ref as this rule's selection, whatever it declares")
        ->check(CLI::IsMember({"flat", "hisa", "block-sparse"}));
    app->add_option("--ref-block-size", block_size, "topk_ref's block size B (over its 'block_size' attribute)")
        ->check(int_range(1, kMaxSelectionSize));
    app->add_option("--ref-blocks", blocks, "topk_ref's block budget m (over its 'blocks' attribute)")
        ->check(int_range(1, kMaxSelectionSize));
    app->add_option("--ref-forced", forced, "topk_ref's forced-block mode: in-budget or extra (over 'forced')")
        ->check(CLI::IsMember({"in-budget", "extra"}));
    app->add_option("--ref-pool-precision", pool, "topk_ref's pooled keys: fp32 or fp8 (over 'pool_precision')")
        ->check(CLI::IsMember({"fp32", "fp8"}));
    app->add_option("--ref-tolerance", tolerance,
                    "Near ties and block flips: within this share of the scores' magnitude of the cut (default 2^-10)")
        ->check(finite_range(0, 1));
  }

  RefOverrides overrides() const {
    RefOverrides o;
    if (!method.empty()) o.method = parse_method(method);
    o.block_size = block_size;
    o.blocks = blocks;
    if (!forced.empty()) o.forced = parse_forced_mode(forced);
    if (!pool.empty()) o.pool = parse_pool_precision(pool);
    o.tolerance = tolerance;
    return o;
  }
};

}  // namespace hisa::cli
