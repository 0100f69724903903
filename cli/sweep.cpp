// `hisa sweep FILE...`: recall, IoU and cost of HISA(B, m) over a grid of block sizes and budgets, per layer,
// and the cheapest setting per layer that meets recall targets.
#include <iostream>
#include <memory>

#include "cli/commands.hpp"
#include "cli/input_flags.hpp"
#include "cli/outputs.hpp"
#include "cli/run_flags.hpp"
#include "core/atomic_file.hpp"
#include "core/error.hpp"
#include "core/int_list.hpp"
#include "render/sweep_output.hpp"
#include "run/unit_runner.hpp"

namespace hisa::cli {

namespace {

struct SweepFlags {
  std::vector<std::string> files;
  UnitInputFlags input;
  std::string block_sizes = "32,64,128,256", blocks = "8-512";
  std::string pools = "fp32", forced = "in-budget";
  double target_recall = 0.99, target_p5 = 0.95;
  std::string json_out, csv_out;
  bool no_kernel_times = false;
  RunFlags run;
};

template <typename T, typename Parse>
std::vector<T> parse_names(const std::string& text, const char* flag, Parse parse) {
  std::vector<T> out;
  for (const auto& name : split_list(text)) {
    auto v = parse(name);
    if (!v) throw UsageError(std::string(flag) + ": unknown value \"" + name + "\"");
    out.push_back(*v);
  }
  return out;  // an empty list is the library's to refuse
}

int run_sweep_command(const SweepFlags& f) {
  SweepOptions o;
  o.files = f.files;
  f.input.apply_to(o);
  o.block_sizes = parse_size_list(f.block_sizes, "block_sizes");
  o.blocks = parse_size_list(f.blocks, "blocks");
  o.pools = parse_names<PoolPrecision>(f.pools, "--pool-precision", parse_pool_precision);
  o.forced = parse_names<ForcedMode>(f.forced, "--forced", parse_forced_mode);
  o.target_recall = f.target_recall;
  o.target_p5 = f.target_p5;
  o.kernel_times = !f.no_kernel_times;
  f.run.apply_to(o.run);
  // Outputs are checked before the work, so a bad path fails at once, and written whole or not at all.
  const std::vector<OutputSpec> outputs = {{f.json_out, "--json", true}, {f.csv_out, "--csv", true}};
  check_outputs(outputs, f.files);
  const SweepResult r = run_sweep(o);
  if (!is_output_rank()) return 0;  // under MPI, rank 0 writes the outputs
  write_sweep_table(table_stream(outputs), r);
  if (!f.json_out.empty()) {
    write_file_atomically(f.json_out, [&](std::ostream& out) { out << sweep_json(r, f.run.timings).dump(2) << "\n"; });
  }
  if (!f.csv_out.empty()) write_file_atomically(f.csv_out, [&](std::ostream& out) { write_sweep_csv(out, r); });
  if (f.run.timings) write_sweep_timings(std::cerr, r);
  return 0;
}

}  // namespace

void setup_sweep(CLI::App& app, int& status) {
  auto f = std::make_shared<SweepFlags>();
  CLI::App* sub = app.add_subcommand("sweep", "Recall and cost of HISA over block sizes and budgets; the cheapest setting per layer");
  sub->add_option("files", f->files, "Dump files (HDF5, format v1), or directories: their *.h5 files in name order")->required();
  sub->add_option("--block-sizes", f->block_sizes, "Block sizes B: a list with doubling ranges, e.g. 32,64 or 32-256")
      ->capture_default_str();
  sub->add_option("--blocks", f->blocks, "Budgets m: a list with doubling ranges; 8-512 = 8,16,...,512")->capture_default_str();
  sub->add_option("--target-recall", f->target_recall, "Recall mean a setting must reach")
      ->check(finite_range(0, 1))
      ->capture_default_str();
  sub->add_option("--target-p5", f->target_p5, "Recall p5 a setting must reach")->check(finite_range(0, 1))->capture_default_str();
  sub->add_option("--pool-precision", f->pools, "Pooled keys, a list of fp32 and fp8")->capture_default_str();
  sub->add_option("--forced", f->forced, "Forced-block modes, a list of in-budget and extra")->capture_default_str();
  f->input.add_to(sub);
  sub->add_option("--json", f->json_out, "Write the config, curves, recommendations and aggregates as JSON (-: standard output)");
  sub->add_option("--csv", f->csv_out, "Write the curves per sample as tidy CSV (-: standard output)");
  sub->add_flag("--no-kernel-times", f->no_kernel_times,
                "On a GPU, skip timing HISA(B, m) and flat selection with the CUDA engine for the cost model");
  f->run.add_to(sub);
  sub->callback([f, &status] { status = run_sweep_command(*f); });
}

}  // namespace hisa::cli
