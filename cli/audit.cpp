// `hisa audit FILE...`: per-layer fidelity of HISA and block-sparse against flat DSA.
#include <fstream>
#include <iostream>
#include <memory>

#include "cli/commands.hpp"
#include "cli/selection_flags.hpp"
#include "report/audit_output.hpp"

namespace hisa::cli {

namespace {

struct AuditFlags {
  std::vector<std::string> files;
  SelectionFlags selection;
  std::string json_out, csv_out, per_query_out;
  std::optional<double> min_iou;
  int64_t worst = 0;
  std::string method = "hisa";
};

std::ofstream open_output(const std::string& path, const char* flag) {
  std::ofstream out(path);
  if (!out) throw UsageError(std::string(flag) + ": cannot write " + path);
  return out;
}

int run_audit_command(const AuditFlags& f) {
  AuditOptions o;
  o.files = f.files;
  f.selection.apply_to(o);
  o.worst = f.worst;
  o.method = *parse_method(f.method);

  std::ofstream per_query;
  if (!f.per_query_out.empty()) {
    per_query = open_output(f.per_query_out, "--per-query");
    write_query_csv_header(per_query);
  }
  AuditResult r = run_audit(o, [&](const QueryRecord& q) {
    if (per_query.is_open()) write_query_csv_row(per_query, q);
  });
  write_audit_table(std::cout, r);
  if (!f.json_out.empty()) open_output(f.json_out, "--json") << audit_json(r).dump(2) << "\n";
  if (!f.csv_out.empty()) {
    auto out = open_output(f.csv_out, "--csv");
    write_layer_csv(out, r);
  }
  if (f.min_iou) {
    bool failed = false;
    for (const auto& l : r.layers) {
      if (l.queries > 0 && l.hisa.iou.mean < *f.min_iou) {
        std::cerr << "hisa: layer " << l.layer << ": mean HISA IoU " << l.hisa.iou.mean << " is below --min-iou "
                  << *f.min_iou << "\n";
        failed = true;
      }
    }
    if (failed) return 1;
  }
  return 0;
}

}  // namespace

void setup_audit(CLI::App& app, int& status) {
  auto f = std::make_shared<AuditFlags>();
  CLI::App* sub = app.add_subcommand("audit", "Per-layer fidelity of HISA and block-sparse against flat DSA top-k");
  sub->add_option("files", f->files, "Dump files (HDF5, format v1)")->required();
  f->selection.add_to(sub);
  sub->add_option("--json", f->json_out, "Write the config and every per-layer number as JSON");
  sub->add_option("--csv", f->csv_out, "Write the per-layer numbers as tidy CSV");
  sub->add_option("--per-query", f->per_query_out, "Write one CSV row per query");
  sub->add_option("--min-iou", f->min_iou, "Exit 1 when some layer's mean HISA IoU is below this");
  sub->add_option("--worst", f->worst, "List the N worst queries per layer (by IoU, then coverage loss)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--method", f->method,
                  "hisa; or certified: also run the exact branch-and-bound selection and report what it scored")
      ->check(CLI::IsMember({"hisa", "certified"}))
      ->capture_default_str();
  sub->callback([f, &status] { status = run_audit_command(*f); });
}

}  // namespace hisa::cli
