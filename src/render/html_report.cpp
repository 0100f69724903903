// `hisa report`'s page (html_report.hpp). About 570 lines: one writer per section of the page, in page order,
// with the page's CSS; the data comes ready from pipelines/report and the charts from render/svg.
#include "render/html_report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "metrics/diagnosis.hpp"
#include "render/svg.hpp"

namespace hisa {

using svg::escape;

const std::vector<std::string>& report_headings() {
  static const std::vector<std::string> headings = {"Summary",         "Per-layer fidelity", "IoU distributions",
                                                    "Recall versus budget", "Block-size recommendation",
                                                    "Reuse across layers", "Misses by cause", "Worst queries",
                                                    "Configuration"};
  return headings;
}

namespace {

constexpr const char* kHisaColor = "#3b6fb6";
constexpr const char* kBlockColor = "#d9822b";
// The colour bands of the tables and the summary; stated on the page.
constexpr double kFaithful = 0.95, kMixed = 0.80;

// Colours of the miss causes, in MissCause order: near_tie, forced, near_cutoff, dilution.
const std::vector<std::string> kCauseColors = {"#9e9e9e", "#8e6bbf", "#e0b04a", "#c9483c"};
const std::vector<std::string> kCauseLabels = {"near_tie", "forced", "near_cutoff", "dilution"};

std::string fixed(double v, int decimals = 4) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}
std::string fixed(const std::optional<double>& v, int decimals = 4) { return v ? fixed(*v, decimals) : "–"; }
std::string percent(double share) { return fixed(100.0 * share, 1) + " %"; }

const char* band(double iou) { return iou >= kFaithful ? "good" : iou >= kMixed ? "fair" : "poor"; }

// "0-3, 7, 9-10"
std::string compact_list(std::vector<int> values) {
  std::sort(values.begin(), values.end());
  std::string out;
  for (size_t i = 0; i < values.size();) {
    size_t j = i;
    while (j + 1 < values.size() && values[j + 1] == values[j] + 1) ++j;
    if (!out.empty()) out += ", ";
    out += std::to_string(values[i]);
    if (j > i) out += "-" + std::to_string(values[j]);
    i = j + 1;
  }
  return out.empty() ? "none" : out;
}

// "layers 0-3, 7", "layer 2" or "none"
std::string layers_phrase(const std::vector<int>& layers) {
  if (layers.empty()) return "none";
  return (layers.size() == 1 ? "layer " : "layers ") + compact_list(layers);
}

// Quotes a word for a POSIX shell when it holds anything but safe characters.
std::string shell_word(const std::string& w) {
  if (!w.empty() && w.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_./:=+-,") ==
                        std::string::npos) {
    return w;
  }
  std::string out = "'";
  for (char ch : w) out += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return out + "'";
}

std::string config_flags(const SelectionConfig& c) {
  return "--block-size " + std::to_string(c.block_size) + " --blocks " + std::to_string(c.blocks) + " --forced " +
         std::string(forced_mode_name(c.forced)) + " --pool-precision " + std::string(pool_precision_name(c.pool)) +
         " --topk " + std::to_string(c.topk);
}

std::string config_name(const SelectionConfig& c) {
  return "HISA(B=" + std::to_string(c.block_size) + ", m=" + std::to_string(c.blocks) + ", forced " +
         std::string(forced_mode_name(c.forced)) + ", pool " + std::string(pool_precision_name(c.pool)) + ")";
}

int64_t total_queries(const AuditResult& r) {
  int64_t n = 0;
  for (const auto& l : r.layers) n += l.queries;
  return n;
}

// Query-weighted mean of a per-layer mean.
template <typename F>
double weighted_mean(const AuditResult& r, F value) {
  double sum = 0;
  int64_t n = 0;
  for (const auto& l : r.layers) {
    sum += value(l) * double(l.queries);
    n += l.queries;
  }
  return n > 0 ? sum / double(n) : 0.0;
}

std::array<int64_t, 4> all_miss_causes(const AuditResult& r) {
  std::array<int64_t, 4> total{};
  for (const auto& l : r.layers) {
    for (size_t c = 0; c < total.size(); ++c) total[c] += l.miss_causes[c];
  }
  return total;
}

void heading(std::ostream& out, int index, const char* id) {
  out << "<section id=\"" << id << "\"><h2>" << escape(report_headings()[size_t(index)]) << "</h2>\n";
}

// `hisa crosslayer --json` (docs/commands/crosslayer.md): the pooled recall of each layer's own selection by each
// earlier layer's, as a table with the bands' colours, and the reuse plans.
void write_crosslayer(std::ostream& out, const ReportData& d) {
  heading(out, 5, "crosslayer");
  if (d.crosslayer.is_null()) {
    out << "<p>No cross-layer analysis was given. Run <code>hisa crosslayer FILE... --json crosslayer.json</code> and "
           "pass <code>--crosslayer crosslayer.json</code> to show which layers could reuse an earlier layer's "
           "selection (DeepSeek-V4.1, IndexCache) and the cheapest reuse plan.</p>\n</section>\n";
    return;
  }
  const auto& j = d.crosslayer;
  const std::vector<int> layers = j.at("layers").get<std::vector<int>>();
  std::map<std::pair<int, int>, std::pair<int64_t, double>> pooled;  // (source, layer) -> (queries, recall mean)
  for (const auto& p : j.at("pooled")) {
    pooled[{p.at("source_layer").get<int>(), p.at("layer").get<int>()}] = {p.at("queries").get<int64_t>(),
                                                                          p.at("recall_mean").get<double>()};
  }
  out << "<p class=\"note\">Recall of layer L's own flat top-" << j.at("topk").get<int64_t>()
      << " by layer S's selection, mean over the queries both hold (rows L, columns S &lt; L), pooled over "
      << j.at("samples").size() << " sample(s). A layer that reuses S keeps this share of its own selection.</p>\n"
      << "<div class=\"scroll\"><table>\n<thead><tr><th>L \\ S</th>";
  for (size_t s = 0; s + 1 < layers.size(); ++s) out << "<th>" << layers[s] << "</th>";
  out << "</tr></thead>\n<tbody>\n";
  for (size_t l = 1; l < layers.size(); ++l) {
    out << "<tr><td>" << layers[l] << "</td>";
    for (size_t s = 0; s < l; ++s) {
      const auto it = pooled.find({layers[s], layers[l]});
      if (it == pooled.end() || it->second.first == 0) {
        out << "<td>–</td>";
      } else {
        out << "<td class=\"" << band(it->second.second) << "\">" << fixed(it->second.second, 3) << "</td>";
      }
    }
    out << "</tr>\n";
  }
  out << "</tbody></table></div>\n<h3>Reuse plans — target: every layer's recall mean ≥ "
      << fixed(j.at("recall_target").get<double>(), 3) << "</h3>\n<table><tr><th>plan</th><th>layers with their own "
      << "indexer</th><th>lowest recall mean</th><th>meets the target</th></tr>\n";
  for (const auto& p : j.at("plans")) {
    const auto own = p.at("indexer_layers").get<std::vector<int>>();
    std::string list;
    for (int l : own) list += (list.empty() ? "" : ", ") + std::to_string(l);
    out << "<tr><td class=\"l\">" << escape(p.at("name").get<std::string>()) << "</td><td class=\"l\">" << own.size()
        << " of " << layers.size() << ": " << list << "</td><td>" << fixed(p.at("min_recall_mean").get<double>())
        << "</td><td>" << (p.at("meets_target").get<bool>() ? "yes" : "<b>no</b>") << "</td></tr>\n";
  }
  out << "</table>\n<p>" << (j.at("cheapest").is_null()
                                  ? std::string("No plan meets the target.")
                                  : "Cheapest plan meeting the target: <b>" + escape(j.at("cheapest").get<std::string>()) + "</b>.")
      << "</p>\n<p class=\"note\">From " << escape(d.options.crosslayer_json)
      << " (<code>hisa crosslayer</code>; every pair per sample is in that file).</p>\n</section>\n";
}

// The recommendation of `hisa sweep --json` (docs/commands/sweep.md), per pooling and forced mode.
void write_recommendation(std::ostream& out, const ReportData& d) {
  heading(out, 4, "recommendation");
  if (d.sweep.is_null()) {
    out << "<p>No sweep was given. Run <code>hisa sweep FILE... --json sweep.json</code> and pass "
           "<code>--sweep sweep.json</code> to show, per layer, the cheapest block size and budget that keep the "
           "recall targets.</p>\n</section>\n";
    return;
  }
  const auto& j = d.sweep;
  for (const auto& mode : j.at("recommendations")) {
    out << "<h3>pool " << escape(mode.at("pool_precision").get<std::string>()) << ", forced "
        << escape(mode.at("forced").get<std::string>()) << " — targets: recall mean ≥ "
        << fixed(mode.at("targets").at("recall_mean").get<double>(), 3) << ", p5 ≥ "
        << fixed(mode.at("targets").at("recall_p5").get<double>(), 3) << ", k = " << mode.at("topk").get<int64_t>()
        << "</h3>\n<table><tr><th>layer</th><th>B</th><th>m</th><th>recall mean</th><th>p5</th><th>min</th>"
           "<th>IoU</th><th>keys scored per query</th><th>meets targets</th></tr>\n";
    for (const auto& l : mode.at("layers")) {
      const bool meets = l.at("meets_targets").get<bool>();
      out << "<tr><td>" << l.at("layer").get<int>() << "</td><td>" << l.at("block_size").get<int64_t>() << "</td><td>"
          << l.at("blocks").get<int64_t>() << "</td><td>" << fixed(l.at("expected_recall_mean").get<double>())
          << "</td><td>" << fixed(l.at("expected_recall_p5").get<double>()) << "</td><td>"
          << fixed(l.at("expected_recall_min").get<double>()) << "</td><td>"
          << fixed(l.at("expected_iou_mean").get<double>()) << "</td><td>"
          << fixed(l.at("scored_keys_mean").get<double>(), 0) << "</td><td>" << (meets ? "yes" : "<b>no</b>")
          << "</td></tr>\n";
    }
    out << "</table>\n";
    const auto& u = mode.at("uniform");
    if (u.is_null()) {
      out << "<p>No single (B, m) of the grid meets the targets on every layer.</p>\n";
    } else {
      out << "<p>Best uniform setting for all layers: <b>B = " << u.at("block_size").get<int64_t>() << ", m = "
          << u.at("blocks").get<int64_t>() << "</b>, " << fixed(u.at("scored_keys_mean").get<double>(), 0)
          << " keys scored per query on average.</p>\n";
    }
  }
  out << "<p class=\"note\">From " << escape(d.options.sweep_json)
      << " (<code>hisa sweep</code>; its curves and aggregates by context length and task are in that file).</p>\n"
         "</section>\n";
}

void write_summary(std::ostream& out, const ReportData& d) {
  const AuditResult& r = d.audit;
  heading(out, 0, "summary");
  std::set<std::string> samples;
  for (const auto& l : r.layers) samples.insert(l.samples.begin(), l.samples.end());
  out << "<p class=\"lead\">" << escape(config_name(r.config)) << " and block-sparse (m=" << r.config.block_sparse_blocks()
      << ") against flat DSA top-" << r.config.topk << ", on " << total_queries(r) << " queries: " << r.layers.size()
      << " layers, " << samples.size() << " sample" << (samples.size() == 1 ? "" : "s") << ", " << r.files.size()
      << " file" << (r.files.size() == 1 ? "" : "s") << ".</p>\n";
  if (r.layers.empty()) {
    out << "<p>No layer was audited.</p></section>\n";
    return;
  }
  out << "<ul class=\"facts\">\n";
  out << "<li>Mean HISA IoU over all queries: <b>" << fixed(weighted_mean(r, [](const LayerStats& l) { return l.hisa.iou.mean; }))
      << "</b>, recall " << fixed(weighted_mean(r, [](const LayerStats& l) { return l.hisa.recall.mean; }))
      << "; block-sparse IoU " << fixed(weighted_mean(r, [](const LayerStats& l) { return l.block.iou.mean; }))
      << ".</li>\n";
  // Layers without queries have no IoU: they are neither faithful nor not, and never the least faithful.
  std::vector<const LayerStats*> with_queries;
  for (const auto& l : r.layers) {
    if (l.queries > 0) with_queries.push_back(&l);
  }
  if (with_queries.empty()) {
    out << "<li>No audited layer holds a query.</li>\n</ul>\n</section>\n";
    return;
  }
  std::vector<int> good, fair, poor;
  for (const LayerStats* lp : with_queries) {
    const LayerStats& l = *lp;
    (l.hisa.iou.mean >= kFaithful ? good : l.hisa.iou.mean >= kMixed ? fair : poor).push_back(l.layer);
  }
  out << "<li><span class=\"chip good\">faithful</span> mean IoU ≥ " << fixed(kFaithful, 2) << ": " << layers_phrase(good)
      << ". <span class=\"chip fair\">mixed</span> " << fixed(kMixed, 2) << "–" << fixed(kFaithful, 2) << ": "
      << layers_phrase(fair) << ". <span class=\"chip poor\">unfaithful</span> below " << fixed(kMixed, 2) << ": "
      << layers_phrase(poor) << ".</li>\n";
  const auto [lo_at, hi_at] = std::minmax_element(with_queries.begin(), with_queries.end(),
                                                  [](const LayerStats* x, const LayerStats* y) {
                                                    return x->hisa.iou.mean < y->hisa.iou.mean;
                                                  });
  const LayerStats *lo = *lo_at, *hi = *hi_at;
  out << "<li>Least faithful: layer " << lo->layer << ", mean IoU " << fixed(lo->hisa.iou.mean) << ", 5 % of its queries at or below "
      << fixed(lo->hisa.iou.p5) << ", worst " << fixed(lo->hisa.iou.min) << ". Most faithful: layer " << hi->layer
      << ", mean IoU " << fixed(hi->hisa.iou.mean) << ".</li>\n";
  std::vector<const LayerStats*> needle;
  for (const auto& l : r.layers) {
    if (l.needle_recall_flat_mean && l.hisa.needle_recall_mean) needle.push_back(&l);
  }
  if (!needle.empty()) {
    double flat = 0, hisa = 0, block = 0;
    const LayerStats* lowest = needle.front();
    for (const LayerStats* l : needle) {
      flat += *l->needle_recall_flat_mean;
      hisa += *l->hisa.needle_recall_mean;
      block += l->block.needle_recall_mean.value_or(0);
      if (*l->hisa.needle_recall_mean < *lowest->hisa.needle_recall_mean) lowest = l;
    }
    const double n = double(needle.size());
    out << "<li>Needle recall, mean over layers: DSA " << fixed(flat / n) << ", HISA " << fixed(hisa / n)
        << ", block-sparse " << fixed(block / n) << "; lowest for HISA: layer " << lowest->layer << " ("
        << fixed(*lowest->hisa.needle_recall_mean) << ").</li>\n";
  }
  const auto causes = all_miss_causes(r);
  int64_t misses = 0;
  for (int64_t c : causes) misses += c;
  out << "<li>HISA missed " << misses << " DSA tokens";
  if (misses > 0) {
    out << ":";
    for (int c = kMissCauses - 1; c >= 0; --c) {
      out << " " << escape(kCauseLabels[size_t(c)]) << " " << percent(double(causes[size_t(c)]) / double(misses))
          << (c > 0 ? "," : ".");
    }
  } else {
    out << ".";
  }
  out << " Certified exact (HISA = DSA proved by score bounds): "
      << percent(weighted_mean(r, [](const LayerStats& l) { return l.certified_share; })) << " of queries.</li>\n";
  out << "</ul>\n";
  std::vector<svg::BarGroup> groups;
  for (const auto& l : r.layers) groups.push_back({std::to_string(l.layer), {l.hisa.iou.mean, l.block.iou.mean}});
  svg::BarChartSpec spec;
  spec.frame = {std::clamp(int(r.layers.size()) * 26 + 80, 520, 1120), 240, "mean IoU with DSA per layer", "layer", "IoU"};
  spec.series_labels = {"HISA", "block-sparse"};
  spec.colors = {kHisaColor, kBlockColor};
  out << "<div class=\"grid\">" << svg::bar_chart(groups, spec) << "</div>\n</section>\n";
}

// The dump's topk_ref judged against the rule it follows (docs/definitions.md, "Judging topk_ref").
void write_ref_table(std::ostream& out, const AuditResult& r) {
  out << "<h3>topk_ref against its rule</h3>\n<p class=\"note\">The serving stack's own selection (the dump's "
         "<code>topk_ref</code>) against the exact selection of the rule it declares: its IoU, and each differing token "
         "as a tie swap (equal score at the cut), a near tie (within the tolerance of the cut), a block flip (a block "
         "near the block cut kept by one side only: pooling drift) or unexplained (a bug, unless the rule is "
         "misdeclared).</p>\n<div class=\"scroll\"><table>\n<thead><tr><th>layer</th><th>rule</th><th>IoU mean</th>"
         "<th>IoU min</th><th>tie swaps</th><th>near ties</th><th>block flips</th><th>unexplained</th>"
         "<th>queries with<br>unexplained</th></tr></thead>\n<tbody>\n";
  for (const auto& l : r.layers) {
    if (!l.ref_iou_mean) continue;
    out << "<tr><td>" << l.layer << "</td><td class=\"l\">" << escape(*l.ref_rule) << "</td><td class=\""
        << band(*l.ref_iou_mean) << "\">" << fixed(l.ref_iou_mean) << "</td><td class=\"" << band(*l.ref_iou_min)
        << "\">" << fixed(l.ref_iou_min) << "</td><td>" << *l.ref_tie_swaps << "</td><td>" << *l.ref_near_ties
        << "</td><td>" << *l.ref_block_flips << "</td><td class=\"" << (*l.ref_unexplained > 0 ? "poor" : "good")
        << "\">" << *l.ref_unexplained << "</td><td>" << *l.ref_queries_unexplained << "</td></tr>\n";
  }
  out << "</tbody></table></div>\n";
}

void write_layer_table(std::ostream& out, const ReportData& d) {
  const AuditResult& r = d.audit;
  heading(out, 1, "per-layer");
  const bool any_ref = std::any_of(r.layers.begin(), r.layers.end(), [](const LayerStats& l) { return l.ref_iou_mean.has_value(); });
  const bool any_needle = std::any_of(r.layers.begin(), r.layers.end(), [](const LayerStats& l) { return l.needle_recall_flat_mean.has_value(); });
  out << "<p class=\"note\">Each row: every audited query of the layer (all samples). IoU and recall are against DSA's "
         "top-k; coverage ratio is the softmax mass of the selection over DSA's (docs/definitions.md, \"Metrics\"). Cells: "
         "<span class=\"chip good\">≥ "
      << fixed(kFaithful, 2) << "</span> <span class=\"chip fair\">" << fixed(kMixed, 2) << "–" << fixed(kFaithful, 2)
      << "</span> <span class=\"chip poor\">&lt; " << fixed(kMixed, 2) << "</span></p>\n";
  out << "<div class=\"scroll\"><table>\n<thead><tr><th>layer</th><th>queries</th><th>HISA IoU<br>mean ± se</th><th>p5</th>"
         "<th>min</th><th>recall</th><th>coverage<br>ratio</th><th>exact<br>share</th><th>certified</th>"
         "<th>block-sparse<br>IoU</th><th>block-sparse<br>recall</th><th>block-sparse<br>cov. ratio</th>";
  if (any_needle) out << "<th>needle recall<br>DSA / HISA / block</th>";
  if (any_ref) out << "<th>ref IoU</th>";
  out << "</tr></thead>\n<tbody>\n";
  for (const auto& l : r.layers) {
    if (l.queries == 0) {  // nothing was compared: no numbers rather than zeros
      out << "<tr><td>" << l.layer << "</td><td>0</td><td class=\"l\" colspan=\"" << 10 + int(any_needle) + int(any_ref)
          << "\">no queries in the selected samples</td></tr>\n";
      continue;
    }
    out << "<tr><td>" << l.layer << "</td><td>" << l.queries << "</td><td class=\"" << band(l.hisa.iou.mean) << "\">"
        << fixed(l.hisa.iou.mean) << " ± " << fixed(l.hisa.iou.stderr_) << "</td><td class=\"" << band(l.hisa.iou.p5) << "\">"
        << fixed(l.hisa.iou.p5) << "</td><td class=\"" << band(l.hisa.iou.min) << "\">" << fixed(l.hisa.iou.min)
        << "</td><td class=\"" << band(l.hisa.recall.mean) << "\">" << fixed(l.hisa.recall.mean) << "</td><td>"
        << fixed(l.hisa.coverage_ratio.mean) << "</td><td>" << percent(l.hisa.exact_share) << "</td><td>"
        << percent(l.certified_share) << "</td><td class=\"" << band(l.block.iou.mean) << "\">" << fixed(l.block.iou.mean)
        << "</td><td>" << fixed(l.block.recall.mean) << "</td><td>" << fixed(l.block.coverage_ratio.mean) << "</td>";
    if (any_needle) {
      out << "<td>" << fixed(l.needle_recall_flat_mean, 3) << " / " << fixed(l.hisa.needle_recall_mean, 3) << " / "
          << fixed(l.block.needle_recall_mean, 3) << "</td>";
    }
    if (any_ref) out << "<td>" << fixed(l.ref_iou_mean) << "</td>";
    out << "</tr>\n";
  }
  out << "</tbody></table></div>\n";
  if (any_ref) write_ref_table(out, r);
  for (const auto& l : r.layers) {
    if (l.missing_samples.empty()) continue;
    out << "<p class=\"note\">Layer " << l.layer << " is absent from:";
    for (const auto& s : l.missing_samples) out << " " << escape(s);
    out << ".</p>\n";
  }
  out << "</section>\n";
}

void write_iou_distributions(std::ostream& out, const ReportData& d) {
  heading(out, 2, "iou");
  out << "<p class=\"note\">Per-query IoU with DSA in 20 bins: HISA as bars, block-sparse as a line. Mass near 1 means "
         "HISA reproduces DSA; a tail to the left is the queries it does not.</p>\n<div class=\"grid\">\n";
  for (size_t i = 0; i < d.audit.layers.size(); ++i) {
    const LayerStats& l = d.audit.layers[i];
    svg::HistogramSpec spec;
    spec.frame = {360, 210, "layer " + std::to_string(l.layer) + ": mean " + fixed(l.hisa.iou.mean, 3) + ", p5 " +
                                fixed(l.hisa.iou.p5, 3),
                  "IoU with DSA", "queries"};
    spec.label = "HISA";
    spec.outline_label = "block-sparse";
    spec.color = kHisaColor;
    spec.outline_color = kBlockColor;
    out << svg::histogram(d.layers[i].hisa_iou, d.layers[i].block_iou, spec) << "\n";
  }
  out << "</div>\n</section>\n";
}

// The m at which a curve is drawn: every m up to 64, then steps of about 4 %, and the last.
std::vector<int64_t> drawn_budgets(int64_t n) {
  std::vector<int64_t> ms;
  for (int64_t m = 1; m <= n; ++m) {
    if (m <= 64 || m == n || double(m) >= double(ms.back()) * 1.04) ms.push_back(m);
  }
  return ms;
}

void write_budget_curves(std::ostream& out, const ReportData& d) {
  const AuditResult& r = d.audit;
  const SelectionConfig& c = r.config;
  heading(out, 3, "budget");
  out << "<p class=\"note\">HISA's mean recall and IoU against DSA for every budget m at B = " << c.block_size
      << " (" << escape(std::string(forced_mode_name(c.forced))) << ", k = " << c.topk
      << "), from this one audit: the block scores J do not depend on m, HISA(B, m) keeps the blocks ranked below m "
         "in its keep order (with <code>--forced extra</code> also the two forced blocks), and a DSA token is in "
         "HISA's selection exactly when its block is kept. So these curves are what audits at each m would report, "
         "not an estimate. Below m = ⌈k/B⌉ = "
      << c.block_sparse_blocks()
      << " the kept blocks hold fewer than k tokens. This is one block size; comparing block sizes needs one "
         "report (or audit) per B.</p>\n<div class=\"grid\">\n";
  for (size_t i = 0; i < r.layers.size(); ++i) {
    const auto& curve = d.layers[i].budget;
    if (curve.empty()) continue;
    const int64_t n = int64_t(curve.size());
    svg::Series recall{"recall", kHisaColor, {}, {}, false}, iou{"IoU", kBlockColor, {}, {}, true};
    for (int64_t m : drawn_budgets(n)) {
      recall.x.push_back(double(m));
      recall.y.push_back(curve[size_t(m - 1)].recall);
      iou.x.push_back(double(m));
      iou.y.push_back(curve[size_t(m - 1)].iou);
    }
    svg::LineChartSpec spec;
    spec.frame = {360, 220, "layer " + std::to_string(r.layers[i].layer), "blocks kept, m", "mean over queries"};
    spec.x_min = 1;
    spec.x_max = double(std::max<int64_t>(2, n));
    spec.log2_x = true;
    spec.markers.push_back({double(c.blocks), "m=" + std::to_string(c.blocks)});
    if (c.block_sparse_blocks() != c.blocks) {
      spec.markers.push_back({double(c.block_sparse_blocks()), "k/B"});
    }
    out << svg::line_chart({recall, iou}, spec) << "\n";
  }
  out << "</div>\n<div class=\"scroll\"><table>\n<thead><tr><th>layer</th><th>eligible blocks<br>(most)</th>"
         "<th>recall at<br>m = "
      << c.blocks << "</th><th>IoU at<br>m = " << c.blocks
      << "</th><th>smallest m<br>recall ≥ 0.90</th><th>smallest m<br>recall ≥ 0.95</th><th>smallest m<br>recall ≥ "
         "0.99</th></tr></thead>\n<tbody>\n";
  for (size_t i = 0; i < r.layers.size(); ++i) {
    const auto& curve = d.layers[i].budget;
    if (curve.empty()) continue;
    const BudgetPoint at = curve[size_t(std::min<int64_t>(c.blocks, int64_t(curve.size())) - 1)];
    out << "<tr><td>" << r.layers[i].layer << "</td><td>" << curve.size() << "</td><td class=\"" << band(at.recall)
        << "\">" << fixed(at.recall) << "</td><td class=\"" << band(at.iou) << "\">" << fixed(at.iou) << "</td>";
    for (double target : {0.90, 0.95, 0.99}) {
      const int64_t m = smallest_budget_reaching(curve, target);
      out << "<td>" << (m > 0 ? std::to_string(m) : std::string("–")) << "</td>";
    }
    out << "</tr>\n";
  }
  out << "</tbody></table></div>\n</section>\n";
}

void write_miss_causes(std::ostream& out, const ReportData& d) {
  heading(out, 6, "causes");
  out << "<p class=\"note\">Every DSA token HISA misses lies in a pruned block; each gets the first cause that holds "
         "(docs/definitions.md, \"Misses and certificates\").</p>\n";
  std::vector<svg::StackedRow> rows;
  for (const auto& l : d.audit.layers) {
    svg::StackedRow row{"layer " + std::to_string(l.layer), {}};
    for (int64_t c : l.miss_causes) row.parts.push_back(double(c));
    rows.push_back(row);
  }
  out << "<div class=\"grid\">" << svg::stacked_share_bars(rows, kCauseLabels, kCauseColors, 900) << "</div>\n";
  out << "<table class=\"causes\"><thead><tr><th class=\"l\">cause</th><th class=\"l\">condition</th>"
         "<th class=\"l\">what would help</th></tr></thead><tbody>\n"
         "<tr><td class=\"l\"><span class=\"swatch\" style=\"background:" << kCauseColors[0] << "\"></span>near_tie</td>"
         "<td class=\"l\">the token's score is within 10<sup>−4</sup> (relative) of DSA's k-th score: rounding decides "
         "whether it is in DSA's top-k at all</td><td class=\"l\">nothing; not a HISA failure</td></tr>\n"
         "<tr><td class=\"l\"><span class=\"swatch\" style=\"background:" << kCauseColors[1] << "\"></span>forced</td>"
         "<td class=\"l\">the block would have been kept had the forced first and last blocks not used budget "
         "(in-budget mode)</td><td class=\"l\"><code>--forced extra</code>, or m + 2</td></tr>\n"
         "<tr><td class=\"l\"><span class=\"swatch\" style=\"background:" << kCauseColors[2] << "\"></span>near_cutoff</td>"
         "<td class=\"l\">the block ranks just past the budget: m ≤ rank &lt; m + ⌈m/4⌉</td><td class=\"l\">a larger m</td></tr>\n"
         "<tr><td class=\"l\"><span class=\"swatch\" style=\"background:" << kCauseColors[3] << "\"></span>dilution</td>"
         "<td class=\"l\">the block ranks far out although its best token is in DSA's top-k: the mean key hides it</td>"
         "<td class=\"l\">smaller blocks, or another pooling</td></tr>\n</tbody></table>\n</section>\n";
}

std::string causes_text(const std::array<int64_t, 4>& causes) {
  std::string out;
  for (int c = kMissCauses - 1; c >= 0; --c) {
    if (causes[size_t(c)] == 0) continue;
    if (!out.empty()) out += ", ";
    out += kCauseLabels[size_t(c)] + " " + std::to_string(causes[size_t(c)]);
  }
  return out.empty() ? "none" : out;
}

std::string explain_command(const std::string& file, const std::string& sample, int layer, int64_t query,
                            const SelectionConfig& c) {
  return "hisa explain " + shell_word(file) + " --sample " + shell_word(sample) + " --layer " + std::to_string(layer) +
         " --query " + std::to_string(query) + " " + config_flags(c);
}

void write_picture(std::ostream& out, const QueryPicture& p, const SelectionConfig& c) {
  out << "<figure class=\"query\"><figcaption><b>layer " << p.layer << "</b> · " << escape(p.sample) << " · query "
      << p.query << " (q_pos " << p.q_pos << "): IoU " << fixed(p.iou) << ", recall " << fixed(p.recall)
      << ", coverage ratio " << fixed(p.coverage_ratio) << "; misses: " << escape(causes_text(p.miss_causes))
      << "</figcaption>\n";
  svg::ScoreStripSpec strip;
  strip.width = kPictureColumns + 100;
  strip.first = p.k_start;
  strip.last = p.last;
  strip.column_max = p.column_max;
  strip.shaded = p.kept;
  strip.shaded_label = "blocks HISA kept";
  strip.ticks = {{"DSA, kept", "#2f7d3b", p.dsa_kept}, {"DSA, missed", "#c9483c", p.missed}, {"HISA only", kHisaColor, p.hisa_only}};
  out << svg::score_strip(strip) << "\n";
  // A query audited from memory (import hisa) has no file for `hisa explain` to read.
  if (!p.file.empty()) {
    out << "<div class=\"cmd\"><code>" << escape(explain_command(p.file, p.sample, p.layer, p.query, c)) << "</code></div>";
  }
  out << "</figure>\n";
}

void write_worst(std::ostream& out, const ReportData& d) {
  const AuditResult& r = d.audit;
  heading(out, 7, "worst");
  if (d.options.audit.worst <= 0) {
    out << "<p>Not requested (<code>--worst 0</code>).</p>\n</section>\n";
    return;
  }
  if (!d.pictures.empty()) {
    out << "<p class=\"note\">" << d.pictures.size()
        << " of the worst queries (each layer's worst first, the least faithful first), re-scored: the grey profile is the column maximum of the query's scores over "
           "its visible keys (a maximum, so a lone high token stays visible), shaded where HISA kept a block; the "
           "ticks are DSA's tokens HISA kept, DSA's tokens it missed, and the tokens only HISA holds. The command "
           "under each prints every miss with its block's story.</p>\n";
    for (const auto& p : d.pictures) write_picture(out, p, r.config);
  }
  // Worst layers first, the two worst open.
  std::vector<const LayerStats*> order;
  for (const auto& l : r.layers) order.push_back(&l);
  std::stable_sort(order.begin(), order.end(), [](const LayerStats* x, const LayerStats* y) { return x->hisa.iou.mean < y->hisa.iou.mean; });
  out << "<p class=\"note\">Per layer, least faithful first: the " << d.options.audit.worst
      << " worst queries by IoU, then coverage loss (as <code>hisa audit --worst</code>).</p>\n";
  for (size_t i = 0; i < order.size(); ++i) {
    const LayerStats& l = *order[i];
    out << "<details" << (i < 2 ? " open" : "") << "><summary>layer " << l.layer << " — mean IoU " << fixed(l.hisa.iou.mean)
        << ", " << l.worst.size() << " worst queries</summary>\n<div class=\"scroll\"><table><thead><tr>"
           "<th class=\"l\">sample</th><th>query</th><th>q_pos</th><th>IoU</th><th>recall</th><th>coverage ratio</th>"
           "<th>dilution</th><th>near_cutoff</th><th>forced</th><th>near_tie</th></tr></thead><tbody>\n";
    for (const auto& w : l.worst) {
      out << "<tr><td class=\"l\">" << escape(w.sample) << "</td><td>" << w.query << "</td><td>" << w.q_pos
          << "</td><td class=\"" << band(w.iou) << "\">" << fixed(w.iou) << "</td><td>" << fixed(w.recall) << "</td><td>"
          << fixed(w.coverage_ratio) << "</td>";
      for (MissCause c : {MissCause::MeanDilution, MissCause::NearCutoff, MissCause::DisplacedByForced, MissCause::NearTie}) {
        out << "<td>" << w.miss_causes[size_t(c)] << "</td>";
      }
      out << "</tr>\n";
    }
    out << "</tbody></table></div></details>\n";
  }
  out << "</section>\n";
}

void write_configuration(std::ostream& out, const ReportData& d) {
  const AuditResult& r = d.audit;
  const AuditOptions& o = d.options.audit;
  heading(out, 8, "config");
  auto row = [&](const std::string& key, const std::string& value) {
    out << "<tr><th class=\"l\">" << escape(key) << "</th><td class=\"l\">" << escape(value) << "</td></tr>\n";
  };
  out << "<table class=\"config\"><tbody>\n";
  if (!d.options.command_line.empty()) row("command", d.options.command_line);
  for (const auto& f : r.files) row("file", f);
  std::vector<int> layers;
  for (const auto& l : r.layers) layers.push_back(l.layer);
  std::set<std::string> samples;
  for (const auto& l : r.layers) samples.insert(l.samples.begin(), l.samples.end());
  std::string sample_list;
  for (const auto& s : samples) sample_list += (sample_list.empty() ? "" : ", ") + s;
  row("samples", sample_list);
  row("layers", compact_list(layers));
  row("queries per layer", o.max_queries > 0 ? "at most " + std::to_string(o.max_queries) + ", evenly spaced" : "all");
  row("k (DSA top-k)", std::to_string(r.config.topk));
  row("HISA block size B", std::to_string(r.config.block_size));
  row("HISA blocks kept m", std::to_string(r.config.blocks));
  row("forced blocks", std::string(forced_mode_name(r.config.forced)));
  row("pooled keys", std::string(pool_precision_name(r.config.pool)));
  row("block-sparse blocks ⌈k/B⌉", std::to_string(r.config.block_sparse_blocks()));
  row("engine", r.engine);
  row("worst queries per layer", std::to_string(o.worst));
  out << "</tbody></table>\n</section>\n";
}

constexpr const char* kStyle = R"(
body{font-family:system-ui,"DejaVu Sans",Arial,sans-serif;margin:0;color:#222;background:#fff;font-size:14px}
main{max-width:1160px;margin:0 auto;padding:12px 28px 60px}
h1{font-size:26px;margin:16px 0 2px}
h2{font-size:20px;border-bottom:2px solid #3b6fb6;padding-bottom:3px;margin:30px 0 10px}
nav{margin:6px 0 4px}nav a{margin-right:14px;color:#3b6fb6;text-decoration:none}
.sub{color:#555;margin:0}
.lead{font-size:15px}
ul.facts li{margin:4px 0}
table{border-collapse:collapse;font-size:13px;font-variant-numeric:tabular-nums;margin:6px 0}
th,td{padding:3px 9px;border-bottom:1px solid #e4e4e4;text-align:right;vertical-align:top;white-space:nowrap}
td.l{white-space:normal}
th{background:#f3f5f8;font-weight:600}
.l{text-align:left}
td.good,.chip.good{background:#d6efda}td.fair,.chip.fair{background:#fbe9c6}td.poor,.chip.poor{background:#f5cfcb}
.chip{padding:0 6px;border-radius:3px}
.swatch{display:inline-block;width:10px;height:10px;margin-right:6px;border-radius:2px}
.grid{display:flex;flex-wrap:wrap;gap:10px;margin:8px 0}
.scroll{overflow-x:auto}
svg.chart{background:#fff;border:1px solid #eaeaea;border-radius:3px}
svg text{font-size:11px;fill:#333}
svg text.title{font-size:12px;font-weight:600}
svg text.legend{font-size:10.5px;fill:#444}
svg text.marker{font-size:10px;fill:#555}
svg text.axis{font-size:11px;fill:#555}
code{background:#f3f3f3;padding:1px 4px;border-radius:2px;font-size:12px}
.note{color:#555;font-size:13px;max-width:980px}
figure.query{margin:14px 0 18px}
figure.query figcaption{margin-bottom:4px}
.cmd{margin-top:3px}
details{margin:6px 0}details summary{cursor:pointer;font-weight:600}
footer{color:#777;font-size:12px;margin-top:36px}
)";

}  // namespace

void write_html_report(std::ostream& out, const ReportData& d) {
  std::string title = "HISA fidelity report";
  if (d.audit.files.size() == 1) title += ": " + d.audit.files.front();
  out << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
      // The page loads nothing: the browser is told so, and enforces it.
      << "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n"
      << "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>" << escape(title)
      << "</title>\n<style>" << kStyle << "</style></head>\n<body><main>\n<h1>HISA fidelity report</h1>\n<p class=\"sub\">"
      << escape(config_name(d.audit.config)) << " against DSA top-" << d.audit.config.topk << " · "
      << escape(d.audit.files.size() == 1 ? d.audit.files.front() : std::to_string(d.audit.files.size()) + " files")
      << "</p>\n<nav>";
  const char* ids[] = {"summary", "per-layer", "iou", "budget", "recommendation", "crosslayer", "causes", "worst", "config"};
  for (size_t i = 0; i < report_headings().size(); ++i) {
    out << "<a href=\"#" << ids[i] << "\">" << escape(report_headings()[i]) << "</a>";
  }
  out << "</nav>\n";
  write_summary(out, d);
  write_layer_table(out, d);
  write_iou_distributions(out, d);
  write_budget_curves(out, d);
  write_recommendation(out, d);
  write_crosslayer(out, d);
  write_miss_causes(out, d);
  write_worst(out, d);
  write_configuration(out, d);
  out << "<footer>Written by <code>hisa report</code>. Definitions and formulas: the project's docs/definitions.md "
         "(\"Definitions\", \"Metrics\", \"Misses and certificates\"). This page is self-contained: inline CSS and SVG, no scripts.</footer>\n"
         "</main></body></html>\n";
}

}  // namespace hisa
