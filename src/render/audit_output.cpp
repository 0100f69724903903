#include "render/audit_output.hpp"

#include <cstdio>
#include <sstream>

#include "core/text_escape.hpp"
#include "metrics/diagnosis.hpp"
#include "render/text_format.hpp"

namespace hisa {

namespace {

std::string num(double v, const char* fmt = "%.6g") { return format_number(v, fmt); }
std::string opt(const std::optional<double>& v, const char* fmt = "%.6g") { return v ? num(*v, fmt) : ""; }
std::string opt_dash(const std::optional<double>& v) { return v ? num(*v, "%.4f") : "-"; }

// A statistic over no values does not exist (a layer with no queries): null, never a made-up 0.
nlohmann::json stat(double v, bool exists) { return exists ? nlohmann::json(v) : nlohmann::json(nullptr); }

nlohmann::json json_of(const Distribution& d) {
  const bool any = d.count > 0;
  return {{"count", d.count},          {"mean", stat(d.mean, any)}, {"stderr", stat(d.stderr_, any)},
          {"min", stat(d.min, any)},   {"p1", stat(d.p1, any)},     {"p5", stat(d.p5, any)},
          {"p50", stat(d.p50, any)},   {"max", stat(d.max, any)}};
}

template <typename T>
nlohmann::json json_opt(const std::optional<T>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

nlohmann::json json_of(const MethodStats& m) {
  return {{"iou", json_of(m.iou)},
          {"recall", json_of(m.recall)},
          {"coverage", json_of(m.coverage)},
          {"coverage_ratio", json_of(m.coverage_ratio)},
          {"exact_share", stat(m.exact_share, m.iou.count > 0)},
          {"needle_recall_mean", json_opt(m.needle_recall_mean)},
          {"first_miss_rank_median", json_opt(m.first_miss_rank_median)}};
}

nlohmann::json json_of(const CoveragePattern& p) {
  nlohmann::json buckets = nlohmann::json::array();
  for (size_t b = 0; b < p.distance_share.size(); ++b) {
    buckets.push_back({{"distance", distance_bucket_label(int(b))}, {"share", p.distance_share[b]}});
  }
  return {{"tokens", p.tokens},
          {"distance_share", buckets},
          {"sink_block_share", p.sink_block_share},
          {"own_block_share", p.own_block_share},
          {"blocks_touched_p50", p.blocks_touched_p50},
          {"blocks_touched_p95", p.blocks_touched_p95}};
}

nlohmann::json causes_json(const std::array<int64_t, 4>& counts) {
  nlohmann::json j;
  for (int c = 0; c < kMissCauses; ++c) j[std::string(miss_cause_name(MissCause(c)))] = counts[size_t(c)];
  return j;
}

}  // namespace

nlohmann::json audit_json(const AuditResult& r) {
  nlohmann::json j;
  j["config"] = {{"topk", r.config.topk},
                 {"block_size", r.config.block_size},
                 {"blocks", r.config.blocks},
                 {"forced", forced_mode_name(r.config.forced)},
                 {"pool_precision", pool_precision_name(r.config.pool)},
                 {"block_sparse_blocks", r.config.block_sparse_blocks()},
                 {"engine", r.engine}};
  j["files"] = r.files;
  j["layers"] = nlohmann::json::array();
  for (const auto& l : r.layers) {
    nlohmann::json e = {{"layer", l.layer},
                        {"queries", l.queries},
                        {"samples", l.samples},
                        {"missing_samples", l.missing_samples},
                        {"flat", {{"coverage_mean", stat(l.coverage_flat_mean, l.queries > 0)},
                                  {"needle_recall_mean", json_opt(l.needle_recall_flat_mean)}}},
                        {"hisa", json_of(l.hisa)},
                        {"block", json_of(l.block)},
                        {"patterns", {{"dsa", json_of(l.dsa)}, {"hisa_misses", json_of(l.hisa_misses)}}}};
    if (l.compress_ratio != 1) e["compress_ratio"] = l.compress_ratio;
    if (l.window) e["window"] = *l.window;
    if (l.ref_iou_mean) {
      e["ref_method"] = *l.ref_method;
      e["ref_rule"] = *l.ref_rule;
      e["ref_iou_mean"] = *l.ref_iou_mean;
      e["ref_iou_min"] = *l.ref_iou_min;
      e["ref_tie_swaps"] = *l.ref_tie_swaps;
      e["ref_near_ties"] = *l.ref_near_ties;
      e["ref_block_flips"] = *l.ref_block_flips;
      e["ref_unexplained"] = *l.ref_unexplained;
      e["ref_queries_unexplained"] = *l.ref_queries_unexplained;
    }
    if (l.parity) {
      e["parity"] = {{"queries", l.parity->queries}, {"flat_differ", l.parity->flat_differ},
                     {"hisa_differ", l.parity->hisa_differ}, {"unexplained", l.parity->unexplained}};
    }
    e["miss_causes"] = causes_json(l.miss_causes);
    e["certified_share"] = stat(l.certified_share, l.queries > 0);
    if (l.certified_scored_share) {
      e["certified_method"] = {{"scored_share_mean", *l.certified_scored_share},
                               {"exact_share", *l.certified_exact_share}};
    }
    if (!l.worst.empty()) {
      e["worst"] = nlohmann::json::array();
      for (const auto& w : l.worst) {
        nlohmann::json q = {{"sample", w.sample}, {"query", w.query}, {"q_pos", w.q_pos}, {"iou", w.iou},
                             {"recall", w.recall}, {"coverage_ratio", w.coverage_ratio},
                             {"miss_causes", causes_json(w.miss_causes)}};
        if (w.ref_iou) q["ref_iou"] = *w.ref_iou, q["ref_unexplained"] = w.ref_unexplained;
        e["worst"].push_back(q);
      }
    }
    j["layers"].push_back(e);
  }
  return j;
}

void write_audit_table(std::ostream& out, const AuditResult& r) {
  const auto& c = r.config;
  out << "HISA(B=" << c.block_size << ", m=" << c.blocks << ", forced " << forced_mode_name(c.forced) << ", pool "
      << pool_precision_name(c.pool) << ") and block-sparse (m=" << c.block_sparse_blocks() << ") against DSA top-"
      << c.topk << "   [engine: " << r.engine << "]\n\n";
  char line[512];
  std::snprintf(line, sizeof line, "%5s %7s | %-29s %7s %7s | %-15s %7s %7s | %-20s | %7s\n", "layer", "queries",
                "HISA IoU mean±se   p5     min", "recall", "cov.rat", "block IoU  p5", "recall", "cov.rat",
                "needle D / H / S", "ref IoU");
  out << line;
  if (r.layers.empty()) out << "(no layers: the selected samples hold no layer_<N> groups)\n";
  for (const auto& l : r.layers) {
    if (l.queries == 0) {  // a layer whose dumps hold no queries: nothing was compared, so no numbers
      std::snprintf(line, sizeof line, "%5d %7d | no queries in the selected samples\n", l.layer, 0);
      out << line;
      continue;
    }
    std::string needle = "-";
    if (l.needle_recall_flat_mean) {
      needle = opt_dash(l.needle_recall_flat_mean) + " " + opt_dash(l.hisa.needle_recall_mean) + " " +
               opt_dash(l.block.needle_recall_mean);
    }
    std::snprintf(line, sizeof line,
                  "%5d %7lld | %.4f±%.4f %.4f %.4f %7.4f %7.4f | %.4f %.4f %7.4f %7.4f | %-20s | %7s\n", l.layer,
                  (long long)l.queries, l.hisa.iou.mean, l.hisa.iou.stderr_, l.hisa.iou.p5, l.hisa.iou.min,
                  l.hisa.recall.mean, l.hisa.coverage_ratio.mean, l.block.iou.mean, l.block.iou.p5, l.block.recall.mean,
                  l.block.coverage_ratio.mean, needle.c_str(), opt_dash(l.ref_iou_mean).c_str());
    out << line;
  }
  for (const auto& l : r.layers) {
    if (l.compress_ratio != 1 || l.window) {
      out << "layer " << l.layer << ":";
      if (l.compress_ratio != 1) {
        out << " compressed keys, one row per " << l.compress_ratio << " tokens (k, B and the selections count rows)";
      }
      if (l.window) out << (l.compress_ratio != 1 ? ";" : "") << " a window of " << *l.window << " tokens is attended besides";
      out << "\n";
    }
  }
  for (const auto& l : r.layers) {
    if (l.ref_tie_swaps) {
      out << "layer " << l.layer << ": topk_ref vs " << terminal_safe(*l.ref_rule) << ": " << *l.ref_tie_swaps
          << " tie swaps, " << *l.ref_near_ties << " near ties, " << *l.ref_block_flips << " block flips, "
          << *l.ref_unexplained << " unexplained (in " << *l.ref_queries_unexplained << " queries)\n";
    }
  }
  for (const auto& l : r.layers) {
    if (l.parity) {
      out << "layer " << l.layer << ": " << r.engine << " vs the CPU engine on " << l.parity->queries
          << " queries: DSA differs on " << l.parity->flat_differ << ", HISA on " << l.parity->hisa_differ << ", "
          << l.parity->unexplained << " differences not near-ties\n";
    }
  }
  out << "\nHISA's misses by cause (share of misses; docs/definitions.md), certified-exact queries\n";
  std::snprintf(line, sizeof line, "%5s %9s %9s %11s %9s %9s %10s%s\n", "layer", "misses", "dilution", "near_cutoff",
                "forced", "near_tie", "certified", r.layers.empty() || !r.layers[0].certified_scored_share ? ""
                : "  branch-and-bound: keys scored, = DSA");
  out << line;
  for (const auto& l : r.layers) {
    int64_t total = 0;
    for (int64_t c : l.miss_causes) total += c;
    if (l.queries == 0) {
      std::snprintf(line, sizeof line, "%5d %9d %9s %11s %9s %9s %10s\n", l.layer, 0, "-", "-", "-", "-", "-");
      out << line;
      continue;
    }
    auto share = [&](MissCause c) { return total ? 100.0 * double(l.miss_causes[size_t(c)]) / double(total) : 0.0; };
    std::snprintf(line, sizeof line, "%5d %9lld %8.1f%% %10.1f%% %8.1f%% %8.1f%% %9.1f%%", l.layer, (long long)total,
                  share(MissCause::MeanDilution), share(MissCause::NearCutoff), share(MissCause::DisplacedByForced),
                  share(MissCause::NearTie), 100.0 * l.certified_share);
    out << line;
    if (l.certified_scored_share) {
      std::snprintf(line, sizeof line, "  %10.1f%% %10.1f%%", 100.0 * *l.certified_scored_share,
                    100.0 * *l.certified_exact_share);
      out << line;
    }
    out << "\n";
  }
  for (const auto& l : r.layers) {
    if (l.worst.empty()) continue;
    const bool by_ref = r.worst_by == WorstOrder::RefIou;
    out << "\nlayer " << l.layer << ": " << l.worst.size()
        << (by_ref ? " worst queries (by topk_ref's IoU with its rule, then unexplained tokens)\n"
                   : " worst queries (by IoU, then coverage loss)\n");
    std::snprintf(line, sizeof line, "  %-20s %7s %8s %7s %7s %8s  %s%s\n", "sample", "query", "q_pos", "iou", "recall",
                  "cov.rat", "misses: dilution/near_cutoff/forced/near_tie", by_ref ? "  ref IoU  unexplained" : "");
    out << line;
    for (const auto& w : l.worst) {
      std::snprintf(line, sizeof line, "  %-20s %7lld %8lld %7.4f %7.4f %8.4f  %lld/%lld/%lld/%lld",
                    terminal_safe(w.sample).c_str(),
                    (long long)w.query, (long long)w.q_pos, w.iou, w.recall, w.coverage_ratio,
                    (long long)w.miss_causes[size_t(MissCause::MeanDilution)],
                    (long long)w.miss_causes[size_t(MissCause::NearCutoff)],
                    (long long)w.miss_causes[size_t(MissCause::DisplacedByForced)],
                    (long long)w.miss_causes[size_t(MissCause::NearTie)]);
      out << line;
      if (by_ref) out << "  " << opt_dash(w.ref_iou) << "  " << (w.ref_iou ? std::to_string(w.ref_unexplained) : "-");
      out << "\n";
    }
  }
  for (const auto& l : r.layers) {
    if (!l.missing_samples.empty()) {
      out << "layer " << l.layer << " is absent from:";
      for (const auto& s : l.missing_samples) out << " " << terminal_safe(s);
      out << "\n";
    }
  }
}

namespace {

std::string opt_rank(const std::optional<int64_t>& v) { return v ? std::to_string(*v) : ""; }

}  // namespace

void write_layer_csv(std::ostream& out, const AuditResult& r) {
  out << "layer,queries,flat_coverage_mean,flat_needle_recall_mean";
  for (const char* m : {"hisa", "block"}) {
    for (const char* metric : {"iou", "recall"}) {
      for (const char* stat : {"mean", "stderr", "min", "p1", "p5", "p50"}) out << "," << m << "_" << metric << "_" << stat;
    }
    out << "," << m << "_coverage_mean," << m << "_coverage_ratio_mean," << m << "_exact_share," << m
        << "_needle_recall_mean," << m << "_first_miss_rank_median";
  }
  out << ",dsa_blocks_touched_p50,dsa_blocks_touched_p95,dsa_sink_block_share,dsa_own_block_share"
         ",miss_tokens,miss_blocks_touched_p50,miss_blocks_touched_p95,ref_iou_mean,ref_iou_min"
         ",miss_dilution,miss_near_cutoff,miss_forced,miss_near_tie,certified_share,ref_tie_swaps,ref_unexplained"
         ",parity_queries,parity_flat_differ,parity_hisa_differ,parity_unexplained"
         ",ref_method,ref_near_ties,ref_block_flips,ref_queries_unexplained\n";
  for (const auto& l : r.layers) {
    // Statistics of a layer with no queries are empty fields (they do not exist), counts stay 0.
    auto val = [&](double v) { return l.queries > 0 ? num(v) : std::string(); };
    out << l.layer << "," << l.queries << "," << val(l.coverage_flat_mean) << "," << opt(l.needle_recall_flat_mean);
    for (const MethodStats* m : {&l.hisa, &l.block}) {
      for (const Distribution* d : {&m->iou, &m->recall}) {
        out << "," << val(d->mean) << "," << val(d->stderr_) << "," << val(d->min) << "," << val(d->p1) << ","
            << val(d->p5) << "," << val(d->p50);
      }
      out << "," << val(m->coverage.mean) << "," << val(m->coverage_ratio.mean) << "," << val(m->exact_share) << ","
          << opt(m->needle_recall_mean) << "," << opt(m->first_miss_rank_median);
    }
    out << "," << val(l.dsa.blocks_touched_p50) << "," << val(l.dsa.blocks_touched_p95) << ","
        << val(l.dsa.sink_block_share) << "," << val(l.dsa.own_block_share) << "," << l.hisa_misses.tokens << ","
        << val(l.hisa_misses.blocks_touched_p50) << "," << val(l.hisa_misses.blocks_touched_p95) << ","
        << opt(l.ref_iou_mean) << "," << opt(l.ref_iou_min);
    for (MissCause c : {MissCause::MeanDilution, MissCause::NearCutoff, MissCause::DisplacedByForced, MissCause::NearTie}) {
      out << "," << l.miss_causes[size_t(c)];
    }
    out << "," << val(l.certified_share) << "," << (l.ref_tie_swaps ? std::to_string(*l.ref_tie_swaps) : "") << ","
        << (l.ref_unexplained ? std::to_string(*l.ref_unexplained) : "");
    if (l.parity) {
      out << "," << l.parity->queries << "," << l.parity->flat_differ << "," << l.parity->hisa_differ << ","
          << l.parity->unexplained;
    } else {
      out << ",,,,";
    }
    out << "," << (l.ref_method ? csv_field(*l.ref_method) : "") << "," << opt_rank(l.ref_near_ties) << ","
        << opt_rank(l.ref_block_flips) << "," << opt_rank(l.ref_queries_unexplained) << "\n";
  }
}

void write_query_csv_header(std::ostream& out) {
  out << "sample,layer,query,q_pos,iou,recall,coverage_ratio,first_miss_rank,block_iou,block_recall,"
         "block_coverage_ratio,block_first_miss_rank,visible,flat_coverage,hisa_coverage,block_coverage,"
         "needle_recall_flat,needle_recall_hisa,needle_recall_block,ref_iou,file,"
         "miss_dilution,miss_near_cutoff,miss_forced,miss_near_tie,certified,certified_keys_scored,ref_tie_swaps,"
         "ref_unexplained,ref_near_ties,ref_block_flips\n";
}

void write_query_csv_row(std::ostream& out, const QueryRecord& q) {
  const QueryMetrics& m = *q.metrics;
  out << csv_field(q.sample) << "," << q.layer << "," << m.query << "," << m.q_pos << "," << num(m.hisa.iou) << ","
      << num(m.hisa.recall) << "," << num(m.hisa.coverage_ratio) << "," << opt_rank(m.hisa.first_miss_rank) << ","
      << num(m.block.iou) << "," << num(m.block.recall) << "," << num(m.block.coverage_ratio) << ","
      << opt_rank(m.block.first_miss_rank) << "," << m.visible << "," << num(m.coverage_flat) << ","
      << num(m.hisa.coverage) << "," << num(m.block.coverage) << "," << opt(m.needle_recall_flat) << ","
      << opt(m.hisa.needle_recall) << "," << opt(m.block.needle_recall) << "," << opt(m.ref_iou) << ","
      << csv_field(q.file);
  for (MissCause c : {MissCause::MeanDilution, MissCause::NearCutoff, MissCause::DisplacedByForced, MissCause::NearTie}) {
    out << "," << m.miss_causes[size_t(c)];
  }
  out << "," << (m.certified ? 1 : 0) << "," << opt_rank(m.certified_keys_scored) << "," << opt_rank(m.ref_tie_swaps)
      << "," << opt_rank(m.ref_unexplained) << "," << opt_rank(m.ref_near_ties) << "," << opt_rank(m.ref_block_flips)
      << "\n";
}

}  // namespace hisa
