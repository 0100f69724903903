// `hisa explain FILE --sample S --layer N --query I`: what HISA missed for one query, and why.
#include <iostream>
#include <memory>

#include "cli/commands.hpp"
#include "cli/outputs.hpp"
#include "cli/ref_flags.hpp"
#include "cli/selection_flags.hpp"
#include "pipelines/explain.hpp"
#include "render/explain_output.hpp"

namespace hisa::cli {

namespace {

struct ExplainFlags {
  std::string file, sample, json_out;
  int layer = 0;
  int64_t query = 0, max_misses = 40;
  int width = 100;
  SelectionFlags selection;
  bool ref = false;
  RefFlags ref_flags;
};

int run_explain_command(const ExplainFlags& f) {
  ExplainOptions o;
  o.file = f.file;
  o.sample = f.sample;
  o.layer = f.layer;
  o.query = f.query;
  o.topk = f.selection.topk;
  o.config = f.selection.config();
  o.reader.allow_external = f.selection.allow_external;
  o.ref = f.ref;
  o.ref_overrides = f.ref_flags.overrides();
  const std::vector<OutputSpec> outputs = {{f.json_out, "--json", true}};
  check_outputs(outputs, {f.file});
  Explanation e = explain_query(o);
  write_explanation(table_stream(outputs), e, f.max_misses, f.width);
  if (!f.json_out.empty()) {
    write_file_atomically(f.json_out, [&](std::ostream& out) { out << explanation_json(e).dump(2) << "\n"; });
  }
  return 0;
}

}  // namespace

void setup_explain(CLI::App& app, int& status) {
  auto f = std::make_shared<ExplainFlags>();
  CLI::App* sub = app.add_subcommand("explain", "Show one query's DSA and HISA sets, every miss and its cause");
  sub->add_option("file", f->file, "Dump file (HDF5, format v1)")->required();
  sub->add_option("--sample", f->sample, "Sample (group) name")->required();
  sub->add_option("--layer", f->layer, "Layer number")->required();
  sub->add_option("--query", f->query, "The query's row in the layer (the per-query CSV's `query`)")->required();
  f->selection.add_config_to(sub);
  add_allow_external_flag(sub, f->selection.allow_external);
  sub->add_flag("--ref", f->ref,
                "Also judge the query's topk_ref against the rule it follows: each differing token and its class");
  f->ref_flags.add_to(sub);
  sub->add_option("--json", f->json_out, "Write everything (sets, scores, blocks, misses) as JSON (-: standard output)");
  sub->add_option("--max-misses", f->max_misses, "Misses listed in the terminal")->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--width", f->width, "Columns of the picture")->capture_default_str()->check(CLI::Range(10, 1000));
  sub->callback([f, &status] { status = run_explain_command(*f); });
}

}  // namespace hisa::cli
