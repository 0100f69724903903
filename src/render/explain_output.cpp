#include "render/explain_output.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/text_escape.hpp"
#include "metrics/ref_judge.hpp"
#include "select/blocks.hpp"

namespace hisa {

namespace {

// Unicode eighth blocks, low to high.
const char* const kLevels[] = {" ", "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"};

void write_picture(std::ostream& out, const Explanation& e, int width) {
  const QueryAudit& a = e.audit;
  const int64_t n = a.visible, columns = std::min<int64_t>(width, n);
  auto column_of = [&](int64_t pos) { return (pos - a.k_start) * columns / n; };
  std::vector<float> col_max(size_t(columns), -INFINITY);
  for (int64_t i = 0; i < n; ++i) col_max[size_t(i * columns / n)] = std::max(col_max[size_t(i * columns / n)], e.row[size_t(i)]);
  // The shading scale spans the finite scores; scores that overflowed (+inf, and -inf for NaN) take the top and
  // bottom level, so they neither turn the scale into NaN nor flatten the finite ones.
  float lo = INFINITY, hi = -INFINITY;
  for (float v : e.row) {
    if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  }
  std::string scores, kept(size_t(columns), '.'), tokens(size_t(columns), ' ');
  for (float v : col_max) {
    int level = 8;
    if (v == -INFINITY) {
      level = 1;
    } else if (std::isfinite(v) && hi > lo) {
      level = 1 + int(std::lround(7.0 * (double(v) - lo) / (double(hi) - lo)));
    }
    scores += kLevels[std::clamp(level, 1, 8)];
  }
  for (int64_t blk : a.hisa_blocks) {
    const TokenRange visible = visible_in_block(blk, e.config.block_size, a.k_start, a.q_pos);
    for (int64_t c = column_of(visible.first); c <= column_of(visible.last); ++c) kept[size_t(c)] = '#';
  }
  for (int64_t s : e.extras) tokens[size_t(column_of(s))] = '+';
  for (int64_t s : a.flat) {
    char& t = tokens[size_t(column_of(s))];
    if (t == ' ' || t == '+') t = '|';
  }
  for (const auto& m : e.misses) tokens[size_t(column_of(m.position))] = 'x';
  // The axis names token positions: on a compressed layer, the first token of the first visible row and the last
  // token of the last one.
  const int64_t c = e.compress_ratio, first = a.k_start * c, last = (a.q_pos + 1) * c - 1;
  const char* label = c == 1 ? "position" : "token   ";
  char axis[160];
  std::snprintf(axis, sizeof axis, "%-12s %s %lld%*s%lld\n", "", label, (long long)first,
                int(std::max<int64_t>(1, columns - 9 - int64_t(std::to_string(first).size()))), "", (long long)last);
  out << "\n" << axis;
  out << "  scores    " << scores << "   (column max, ";
  if (lo <= hi) {
    out << lo << " .. " << hi << ")\n";
  } else {
    out << "no finite score)\n";
  }
  out << "  kept      " << kept << "   (# = HISA kept a block here)\n";
  out << "  tokens    " << tokens << "   (x = DSA token HISA missed, | = DSA token kept, + = HISA only)\n";
}

void write_misses(std::ostream& out, const Explanation& e, int64_t max_misses) {
  const QueryMetrics& m = e.metrics;
  const SelectionConfig& c = e.config;
  char line[512];
  out << "\nmisses by cause:";
  for (int cause = 0; cause < kMissCauses; ++cause) {
    out << "  " << miss_cause_name(MissCause(cause)) << " " << m.miss_causes[size_t(cause)];
  }
  out << "\n\n";
  std::snprintf(line, sizeof line, "%8s %8s %6s %11s %11s %6s %11s %9s %11s %8s  %-11s %s\n", "position", "distance",
                "rank", "score", "margin", "block", "J", "rank/m", "best", "J/best", "cause", "replaced by (score)");
  out << line;
  int64_t shown = 0;
  for (const auto& d : e.misses) {
    if (shown++ == max_misses) {
      out << "  ... " << (e.misses.size() - size_t(max_misses)) << " more (--max-misses, or --json for all)\n";
      break;
    }
    char replaced[64] = "-";
    if (d.replaced_by >= 0) std::snprintf(replaced, sizeof replaced, "%lld (%g)", (long long)d.replaced_by, double(d.replaced_score));
    char rank[32];
    std::snprintf(rank, sizeof rank, "%lld/%lld", (long long)d.block_rank, (long long)c.blocks);
    std::snprintf(line, sizeof line, "%8lld %8lld %6lld %11.5g %11.4g %6lld %11.5g %9s %11.5g %8.4f  %-11s %s\n",
                  (long long)d.position, (long long)d.distance, (long long)d.dsa_rank, double(d.score), double(d.margin),
                  (long long)d.block, double(d.block_score), rank, double(d.block_best), d.pooled_to_best,
                  std::string(miss_cause_name(d.cause)).c_str(), replaced);
    out << line;
  }
}


// --ref: each token on which topk_ref and its rule's exact selection differ, with its class (and, for a block
// flip, its block's J beside the cut block's).
void write_ref_differences(std::ostream& out, const Explanation& e, int64_t max_shown) {
  const RefJudgement& r = *e.ref;
  char line[512];
  std::snprintf(line, sizeof line,
                "\ntopk_ref vs %s: IoU %.4f; %lld tie swaps, %lld near ties, %lld block flips, %lld unexplained\n",
                describe_ref_rule(*e.ref_rule).c_str(), r.iou, (long long)r.tie_swaps, (long long)r.near_ties,
                (long long)r.block_flips, (long long)r.unexplained);
  out << line;
  if (r.cut_position) out << "  the rule's cut: position " << *r.cut_position << ", score " << *r.cut_score << "\n";
  if (r.cut_block) out << "  the rule's cut block: " << *r.cut_block << ", J " << *r.cut_J << "\n";
  if (r.differences.empty()) return;
  std::snprintf(line, sizeof line, "\n%8s %-9s %-12s %11s %6s %11s  %s\n", "position", "held by", "class", "score", "block",
                "J", "why");
  out << line;
  int64_t shown = 0;
  for (const auto& d : r.differences) {
    if (shown++ == max_shown) {
      out << "  ... " << (r.differences.size() - size_t(max_shown)) << " more (--max-misses, or --json for all)\n";
      break;
    }
    auto value = [](const std::optional<float>& v) {
      char b[32] = "-";
      if (v) std::snprintf(b, sizeof b, "%.5g", double(*v));
      return std::string(b);
    };
    std::snprintf(line, sizeof line, "%8lld %-9s %-12s %11s %6s %11s  %s\n", (long long)d.position,
                  d.in_ref ? "topk_ref" : "the rule", std::string(ref_class_name(d.cls)).c_str(), value(d.score).c_str(),
                  d.block >= 0 ? std::to_string(d.block).c_str() : "-", value(d.block_J).c_str(), d.why.c_str());
    out << line;
  }
}

}  // namespace

void write_explanation(std::ostream& out, const Explanation& e, int64_t max_misses, int width) {
  const QueryAudit& a = e.audit;
  const QueryMetrics& m = e.metrics;
  const SelectionConfig& c = e.config;
  char line[512];
  out << terminal_safe(e.options.file) << "  /" << terminal_safe(e.options.sample) << "/layer_" << e.options.layer << "  query " << e.options.query
      << "\n";
  std::snprintf(line, sizeof line,
                "q_pos %lld, k_start %lld, %lld visible keys; k = %lld, B = %lld, m = %lld (%s, pool %s); %lld "
                "eligible blocks, %zu kept\n",
                (long long)a.token_pos, (long long)a.k_start, (long long)a.visible, (long long)c.topk, (long long)c.block_size,
                (long long)c.blocks, std::string(forced_mode_name(c.forced)).c_str(),
                std::string(pool_precision_name(c.pool)).c_str(), (long long)a.block_scores.size(), a.hisa_blocks.size());
  out << line;
  if (e.compress_ratio != 1) {
    std::snprintf(line, sizeof line,
                  "compressed keys: one row per %lld tokens; the query at token %lld sees rows %lld .. %lld (positions "
                  "below count rows)\n",
                  (long long)e.compress_ratio, (long long)a.token_pos, (long long)a.k_start, (long long)a.q_pos);
    out << line;
  }
  std::snprintf(line, sizeof line,
                "DSA %zu tokens, HISA %zu, both %zu: IoU %.4f, recall %.4f, coverage %.4f vs DSA's %.4f (ratio %.4f); "
                "k-th score %g%s\n",
                a.flat.size(), a.hisa.size(), a.flat.size() - e.misses.size(), m.hisa.iou, m.hisa.recall, m.hisa.coverage,
                m.coverage_flat, m.hisa.coverage_ratio, double(a.kth_score),
                m.certified ? "; certified exact" : "");
  out << line;
  if (m.needle_recall_flat) {
    std::snprintf(line, sizeof line, "needle recall: DSA %.4f, HISA %.4f, block-sparse %.4f\n", *m.needle_recall_flat,
                  m.hisa.needle_recall.value_or(0), m.block.needle_recall.value_or(0));
    out << line;
  }
  write_picture(out, e, width);
  if (e.misses.empty()) {
    out << "\nHISA holds every DSA token.\n";
  } else {
    write_misses(out, e, max_misses);
  }
  if (e.ref) write_ref_differences(out, e, max_misses);
}

nlohmann::json explanation_json(const Explanation& e) {
  const QueryAudit& a = e.audit;
  nlohmann::json j;
  j["file"] = e.options.file;
  j["sample"] = e.options.sample;
  j["layer"] = e.options.layer;
  j["query"] = e.options.query;
  j["config"] = {{"topk", e.config.topk},
                 {"block_size", e.config.block_size},
                 {"blocks", e.config.blocks},
                 {"forced", forced_mode_name(e.config.forced)},
                 {"pool_precision", pool_precision_name(e.config.pool)}};
  j["q_pos"] = a.token_pos;
  if (e.compress_ratio != 1) {
    j["compress_ratio"] = e.compress_ratio;
    j["last_row"] = a.q_pos;
  }
  j["k_start"] = a.k_start;
  j["visible"] = a.visible;
  j["kth_score"] = std::isinf(a.kth_score) ? nlohmann::json(nullptr) : nlohmann::json(a.kth_score);
  j["dsa"] = a.flat;
  j["dsa_scores"] = a.flat_scores;
  j["hisa"] = a.hisa;
  j["hisa_scores"] = a.hisa_scores;
  j["hisa_only"] = e.extras;
  j["kept_blocks"] = a.hisa_blocks;
  j["block_sparse"] = a.block;
  j["first_eligible_block"] = a.k_start / e.config.block_size;
  j["block_scores"] = a.block_scores;
  j["block_best"] = a.block_best;
  j["block_bounds"] = e.block_bounds;
  j["block_keep_ranks"] = block_keep_ranks(a, e.config);
  j["scores"] = e.row;  // I[t,s] for s = k_start .. q_pos
  j["metrics"] = {{"iou", e.metrics.hisa.iou},
                  {"recall", e.metrics.hisa.recall},
                  {"coverage", e.metrics.hisa.coverage},
                  {"coverage_flat", e.metrics.coverage_flat},
                  {"coverage_ratio", e.metrics.hisa.coverage_ratio},
                  {"certified", e.metrics.certified}};
  j["misses"] = nlohmann::json::array();
  for (const auto& d : e.misses) {
    j["misses"].push_back({{"position", d.position},
                           {"distance", d.distance},
                           {"dsa_rank", d.dsa_rank},
                           {"score", d.score},
                           {"margin", d.margin},
                           {"block", d.block},
                           {"block_score", d.block_score},
                           {"block_rank", d.block_rank},
                           {"block_best", d.block_best},
                           {"pooled_to_best", d.pooled_to_best},
                           {"cause", miss_cause_name(d.cause)},
                           {"replaced_by", d.replaced_by},
                           {"replaced_score", d.replaced_score}});
  }
  if (e.ref) {
    const RefJudgement& r = *e.ref;
    nlohmann::json ref = {{"rule", describe_ref_rule(*e.ref_rule)}, {"method", ref_method_name(e.ref_rule->method)},
                          {"iou", r.iou}, {"tie_swaps", r.tie_swaps}, {"near_ties", r.near_ties},
                          {"block_flips", r.block_flips}, {"unexplained", r.unexplained}};
    auto opt = [](const auto& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); };
    ref["cut_position"] = opt(r.cut_position);
    ref["cut_score"] = opt(r.cut_score);
    ref["cut_block"] = opt(r.cut_block);
    ref["cut_J"] = opt(r.cut_J);
    ref["differences"] = nlohmann::json::array();
    for (const auto& d : r.differences) {
      ref["differences"].push_back({{"position", d.position}, {"side", d.in_ref ? "topk_ref" : "rule"},
                                    {"class", ref_class_name(d.cls)}, {"score", opt(d.score)},
                                    {"block", d.block >= 0 ? nlohmann::json(d.block) : nlohmann::json(nullptr)},
                                    {"block_J", opt(d.block_J)}, {"why", d.why}});
    }
    j["ref"] = ref;
  }
  return j;
}

}  // namespace hisa
