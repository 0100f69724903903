// `hisa audit FILE...`: per-layer fidelity of HISA and block-sparse against flat DSA.
#include <cstdio>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>

#include "cli/commands.hpp"
#include "cli/outputs.hpp"
#include "cli/ref_flags.hpp"
#include "cli/run_flags.hpp"
#include "cli/selection_flags.hpp"
#include "core/atomic_file.hpp"
#include "run/unit_runner.hpp"
#include "render/audit_output.hpp"

namespace hisa::cli {

namespace {

struct AuditFlags {
  std::vector<std::string> files;
  SelectionFlags selection;
  std::string json_out, csv_out, per_query_out;
  std::optional<double> min_iou;
  int64_t worst = 0;
  std::string worst_by = "iou";
  RefFlags ref;
  std::optional<int64_t> max_ref_unexplained;
  int64_t parity = 0;
  std::string method = "hisa";
  RunFlags run;
};

void write_audit_timings(std::ostream& out, const AuditResult& r) {
  const auto& t = r.timings;
  const StageTimes& e = t.engine;
  char line[1024];  // the lines run past 200 characters
  std::snprintf(line, sizeof line,
                "audit timings (engine %s, %d worker%s, %d rank%s, %lld units, %lld resumed)\n"
                "  wall clock: total %.3f s, merging %.3f s\n"
                "  summed over workers: I/O reading %.3f s, decoding %.3f s, I/O waiting %.3f s, compute %.3f s\n"
                "  compute, this process: engine calls %.3f s (pooling %.3f, token scores %.3f, block scores %.3f, "
                "block choice %.3f, top-k %.3f, masses %.3f, transfers %.3f; 0: not timed apart), per-query metrics %.3f s\n",
                r.engine.c_str(), t.run.workers, t.run.workers == 1 ? "" : "s", t.run.ranks, t.run.ranks == 1 ? "" : "s",
                (long long)t.run.units, (long long)t.run.resumed, t.total, t.merging, t.run.reading, t.run.decoding, t.run.waiting,
                t.run.computing, e.calls, e.pooling, e.token_scores, e.block_scores, e.block_choice, e.topk, e.masses, e.transfers,
                t.metrics);
  out << line;
}

// --max-ref-unexplained N: a serving stack's CI fails (exit 1) when its selection has more than N tokens no tie,
// near tie or block flip explains, over every layer; a dump without topk_ref has nothing to judge (exit 2).
int ref_gate(const AuditResult& r, int64_t most) {
  int64_t unexplained = 0;
  bool judged = false;
  for (const auto& l : r.layers) {
    if (!l.ref_unexplained) continue;
    judged = true;
    unexplained += *l.ref_unexplained;
  }
  if (!judged) {
    std::cerr << "hisa: --max-ref-unexplained: no audited layer has a topk_ref dataset to judge\n";
    return 2;
  }
  if (unexplained <= most) return 0;
  std::cerr << "hisa: " << unexplained << " tokens of topk_ref are unexplained (no tie, near tie or block flip), above "
            << "--max-ref-unexplained " << most << "\n";
  for (const auto& l : r.layers) {
    if (l.ref_unexplained && *l.ref_unexplained > 0) {
      std::cerr << "hisa: layer " << l.layer << ": " << *l.ref_unexplained << " in " << *l.ref_queries_unexplained
                << " queries\n";
    }
  }
  return 1;
}

int run_audit_command(const AuditFlags& f) {
  AuditOptions o;
  o.files = f.files;
  f.selection.apply_to(o);
  o.worst = f.worst;
  o.worst_by = f.worst_by == "ref-iou" ? WorstOrder::RefIou : WorstOrder::HisaIou;
  o.ref = f.ref.overrides();
  o.parity = f.parity;
  o.certified = f.method == "certified";
  f.run.apply_to(o.run);

  // Outputs are checked before the work and each is written whole or not at all; the per-query CSV streams into
  // its temporary file during the run.
  const std::vector<OutputSpec> outputs = {
      {f.json_out, "--json", true}, {f.csv_out, "--csv", true}, {f.per_query_out, "--per-query", true}};
  check_outputs(outputs, f.files);
  std::optional<OutputFile> per_query;
  std::function<void(const QueryRecord&)> on_query;
  if (!f.per_query_out.empty()) {
    per_query.emplace(f.per_query_out);
    write_query_csv_header(per_query->stream());
    on_query = [&](const QueryRecord& q) { write_query_csv_row(per_query->stream(), q); };
  }
  AuditResult r = run_audit(o, on_query);
  if (!is_output_rank()) return 0;  // under MPI, rank 0 writes the outputs
  write_audit_table(table_stream(outputs), r);
  if (!f.json_out.empty()) write_file_atomically(f.json_out, [&](std::ostream& out) { out << audit_json(r).dump(2) << "\n"; });
  if (!f.csv_out.empty()) write_file_atomically(f.csv_out, [&](std::ostream& out) { write_layer_csv(out, r); });
  if (per_query) per_query->commit();
  if (f.run.timings) write_audit_timings(std::cerr, r);
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
  if (f.max_ref_unexplained) return ref_gate(r, *f.max_ref_unexplained);
  return 0;
}

}  // namespace

void setup_audit(CLI::App& app, int& status) {
  auto f = std::make_shared<AuditFlags>();
  CLI::App* sub = app.add_subcommand("audit", "Per-layer fidelity of HISA and block-sparse against flat DSA top-k");
  sub->add_option("files", f->files, "Dump files (HDF5, format v1), or directories: their *.h5 files in name order")->required();
  f->selection.add_to(sub);
  sub->add_option("--json", f->json_out, "Write the config and every per-layer number as JSON (-: standard output)");
  sub->add_option("--csv", f->csv_out, "Write the per-layer numbers as tidy CSV (-: standard output)");
  sub->add_option("--per-query", f->per_query_out, "Write one CSV row per query (-: standard output)");
  sub->add_option("--min-iou", f->min_iou, "Exit 1 when some layer's mean HISA IoU is below this (a number in [0, 1])")
      ->check(finite_range(0, 1));
  sub->add_option("--worst", f->worst, "List the N worst queries per layer (by IoU, then coverage loss)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--worst-by", f->worst_by,
                  "Rank --worst by iou (HISA against DSA) or ref-iou (topk_ref against its rule, then unexplained tokens)")
      ->check(CLI::IsMember({"iou", "ref-iou"}))
      ->capture_default_str();
  f->ref.add_to(sub);
  sub->add_option("--max-ref-unexplained", f->max_ref_unexplained,
                  "Exit 1 when topk_ref has more than N unexplained tokens over all layers (exit 2 without topk_ref)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--method", f->method,
                  "hisa; or certified: also run the exact branch-and-bound selection and report what it scored")
      ->check(CLI::IsMember({"hisa", "certified"}))
      ->capture_default_str();
  sub->add_option("--parity", f->parity,
                  "Also audit the first N queries of each sample and layer with the CPU engine and count the differences")
      ->check(CLI::NonNegativeNumber);
  f->run.add_to(sub);
  sub->callback([f, &status] { status = run_audit_command(*f); });
}

}  // namespace hisa::cli
