// `hisa crosslayer FILE...`: how well each layer's flat selection stands in for a later layer's own, and which
// reuse plan (DeepSeek-V4.1, IndexCache) keeps a recall target with the fewest indexer layers.
#include <iostream>
#include <memory>

#include "cli/commands.hpp"
#include "cli/input_flags.hpp"
#include "cli/outputs.hpp"
#include "cli/run_flags.hpp"
#include "core/atomic_file.hpp"
#include "core/int_list.hpp"
#include "render/crosslayer_output.hpp"
#include "run/unit_runner.hpp"

namespace hisa::cli {

namespace {

struct CrosslayerFlags {
  std::vector<std::string> files;
  UnitInputFlags input;
  std::string reuse_map;
  std::optional<int> reuse_every;
  double recall_target = 0.95;
  std::string json_out, csv_out;
  RunFlags run;
};

int run_crosslayer_command(const CrosslayerFlags& f) {
  CrosslayerOptions o;
  o.files = f.files;
  f.input.apply_to(o);
  o.reuse_every = f.reuse_every;
  if (!f.reuse_map.empty()) o.reuse_map = parse_reuse_map(f.reuse_map);
  o.recall_target = f.recall_target;
  f.run.apply_to(o.run);
  const std::vector<OutputSpec> outputs = {{f.json_out, "--json", true}, {f.csv_out, "--csv", true}};
  check_outputs(outputs, f.files);
  const CrosslayerResult r = run_crosslayer(o);
  if (!is_output_rank()) return 0;  // under MPI, rank 0 writes the outputs
  write_crosslayer_table(table_stream(outputs), r);
  if (!f.json_out.empty()) {
    write_file_atomically(f.json_out, [&](std::ostream& out) { out << crosslayer_json(r).dump(2) << "\n"; });
  }
  if (!f.csv_out.empty()) write_file_atomically(f.csv_out, [&](std::ostream& out) { write_crosslayer_csv(out, r); });
  if (f.run.timings) {
    std::cerr << "crosslayer timings: total " << r.total_seconds << " s; summed over workers: reading " << r.run.reading
              << " s, decoding " << r.run.decoding << " s, waiting " << r.run.waiting << " s, computing "
              << r.run.computing << " s\n";
  }
  return 0;
}

}  // namespace

void setup_crosslayer(CLI::App& app, int& status) {
  auto f = std::make_shared<CrosslayerFlags>();
  CLI::App* sub = app.add_subcommand(
      "crosslayer", "How well each layer's flat selection stands in for a later layer's own; reuse plans across layers");
  sub->add_option("files", f->files, "Dump files (HDF5, format v1), or directories: their *.h5 files in name order")->required();
  sub->add_option("--reuse-every", f->reuse_every,
                  "Evaluate the plan where each layer uses the selection of the nearest earlier layer whose number is a "
                  "multiple of N")
      ->check(int_range(1, 1000000));
  sub->add_option("--reuse-map", f->reuse_map, "Evaluate an explicit plan, LAYER:SOURCE pairs such as 5:4,6:4");
  sub->add_option("--recall-target", f->recall_target,
                  "The recall mean every layer must keep for a plan to meet the target")
      ->check(finite_range(0, 1))
      ->capture_default_str();
  f->input.add_to(sub);
  sub->add_option("--json", f->json_out, "Write the pairs, pooled pairs and plans as JSON (-: standard output)");
  sub->add_option("--csv", f->csv_out, "Write one row per pair of layers as tidy CSV (-: standard output)");
  f->run.add_to(sub);
  sub->callback([f, &status] { status = run_crosslayer_command(*f); });
}

}  // namespace hisa::cli
