// `hisa report FILE... -o report.html`: the audit as one self-contained HTML page of tables and charts.
#include <iostream>
#include <memory>

#include "cli/commands.hpp"
#include "core/atomic_file.hpp"
#include "cli/ref_flags.hpp"
#include "cli/selection_flags.hpp"
#include "render/html_report.hpp"

namespace hisa::cli {

namespace {

struct ReportFlags {
  std::vector<std::string> files;
  SelectionFlags selection;
  RefFlags ref;
  std::string output;
  int64_t worst = 10, pictures = 6;
  std::string command_line;
  std::string sweep_json, crosslayer_json;
};

int run_report_command(const ReportFlags& f) {
  ReportOptions o;
  o.audit.files = f.files;
  f.selection.apply_to(o.audit);
  o.audit.worst = f.worst;
  o.audit.ref = f.ref.overrides();
  o.pictures = f.pictures;
  o.command_line = f.command_line;
  o.sweep_json = f.sweep_json;
  o.crosslayer_json = f.crosslayer_json;
  // Check the output first, so a bad path fails before the audit runs; the page is written whole or not at all.
  std::vector<std::string> inputs = f.files;
  if (!f.sweep_json.empty()) inputs.push_back(f.sweep_json);
  if (!f.crosslayer_json.empty()) inputs.push_back(f.crosslayer_json);
  check_outputs({{f.output, "-o", true}}, inputs);
  const ReportData d = collect_report(o);
  write_file_atomically(f.output, [&](std::ostream& out) { write_html_report(out, d); });
  std::cerr << "hisa: wrote " << (is_stdout(f.output) ? "the report to standard output" : f.output) << " (" << d.audit.layers.size() << " layers, " << d.pictures.size()
            << " query pictures)\n";
  return 0;
}

std::string joined_command_line(int argc, char** argv) {
  std::string s = "hisa";
  for (int i = 1; i < argc; ++i) s += std::string(" ") + argv[i];
  return s;
}

}  // namespace

void setup_report(CLI::App& app, int& status, int argc, char** argv) {
  auto f = std::make_shared<ReportFlags>();
  f->command_line = joined_command_line(argc, argv);
  CLI::App* sub = app.add_subcommand("report", "Write the audit as one self-contained HTML page (tables, inline SVG charts)");
  sub->add_option("files", f->files, "Dump files (HDF5, format v1), or directories: their *.h5 files in name order")->required();
  f->selection.add_to(sub);
  f->ref.add_to(sub);
  sub->add_option("-o,--output", f->output, "Output HTML file (-: standard output)")->required();
  sub->add_option("--sweep", f->sweep_json, "A `hisa sweep --json` file whose recommendation the page shows");
  sub->add_option("--crosslayer", f->crosslayer_json,
                  "A `hisa crosslayer --json` file whose pairs of layers and reuse plans the page shows");
  sub->add_option("--worst", f->worst, "Worst queries listed per layer (by IoU, then coverage loss)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--pictures", f->pictures,
                  "How many of those to draw with their scores: each layer's worst first (re-scored on the CPU)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  sub->callback([f, &status] { status = run_report_command(*f); });
}

}  // namespace hisa::cli
