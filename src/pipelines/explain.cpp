#include "pipelines/explain.hpp"

#include <algorithm>

#include "core/error.hpp"
#include "io/dump_reader.hpp"
#include "select/blocks.hpp"
#include "select/engine.hpp"

namespace hisa {

namespace {

// --ref: the query's topk_ref judged against its rule's exact selection, by the same CPU engine.
void judge_ref(Explanation& e, const QueryBatch& b, const LayerKeys& keys) {
  const ExplainOptions& o = e.options;
  if (b.ref_width == 0) {
    throw OptionError("ref", "{ref}: " + o.file + ": /" + o.sample + "/layer_" + std::to_string(o.layer) +
                                 " has no topk_ref to judge");
  }
  const RefRule rule = resolve_ref_rule(b.ref_declaration, o.ref_overrides, e.config);
  QueryAudit exact = e.audit;
  if (!audit_covers(rule, e.config)) {
    auto engine = make_cpu_engine(1);
    engine->set_layer(keys, rule.config);
    std::vector<QueryAudit> audits;
    engine->audit(b, audits);
    exact = audits.front();
  }
  const RefLayer layer = make_ref_layer(keys, rule, o.ref_overrides.tolerance);
  e.ref_rule = rule;
  e.ref = judge_ref_row(layer, b, 0, exact, {b.topk_ref.data(), size_t(b.ref_width)});
  set_ref_metrics(*e.ref, e.metrics);
}

}  // namespace

void explain_with(SelectionEngine& engine, Explanation& e, const QueryBatch& b, int64_t compress_ratio,
                  std::optional<NeedleRange> needle) {
  std::vector<QueryAudit> audits;
  engine.audit(b, audits);
  e.audit = audits.front();
  e.compress_ratio = compress_ratio;
  std::vector<std::vector<float>> bounds;
  engine.block_bounds(b, bounds);
  e.block_bounds = std::move(bounds.front());
  const int64_t first_block = e.audit.k_start / e.config.block_size;
  e.metrics = compute_query_metrics(e.audit, e.options.query, needle, &e.config,
                                    [&](int64_t block) { return e.block_bounds[size_t(block - first_block)]; });
  e.misses = diagnose_misses(e.audit, e.config);
  std::set_difference(e.audit.hisa.begin(), e.audit.hisa.end(), e.audit.flat.begin(), e.audit.flat.end(),
                      std::back_inserter(e.extras));
  // The engine's score row of the lone query: the CPU engine's is the scoring call its audit makes, so the
  // picture shows the scores it used; the CUDA engine's sums in fp32 (cuda/block_bounds.cu), up to rounding those.
  engine.score_row(b, 0, e.row);
}

void explain_loaded(Explanation& e, const LayerKeys& keys, const QueryBatch& b, std::optional<NeedleRange> needle) {
  auto engine = make_cpu_engine(1);
  engine->set_layer(keys, e.config);
  explain_with(*engine, e, b, keys.compress_ratio, needle);
}

Explanation explain_query(const ExplainOptions& o) {
  DumpReader reader(o.file, o.reader);
  LayerReader lr = reader.open_layer(o.sample, o.layer);
  if (o.query < 0 || o.query >= lr.shape().queries) {
    throw OptionError("query", "{query} " + std::to_string(o.query) + " is outside [0, " + std::to_string(lr.shape().queries) +
                     ") for " + o.file + ": " + lr.group_path() +
                     (lr.shape().queries == 0 ? " (the layer holds no queries)" : ""));
  }
  Explanation e;
  e.options = o;
  e.config = o.config;
  e.config.topk = o.topk.value_or(reader.attributes().index_topk);
  e.config.validate();
  LayerKeys keys = lr.read_keys();
  QueryBatch b = lr.read_queries(o.query, 1);
  if (!b.sees_rows(0)) {
    throw InputError(o.file, lr.group_path() + "/q_pos",
                     "query " + std::to_string(o.query) + " at token " + std::to_string(b.token_position(0)) +
                         " sees no key row yet (compress_ratio " + std::to_string(b.compress_ratio) +
                         "): its selection is empty, there is nothing to explain");
  }
  std::optional<NeedleRange> needle;
  const auto& attrs = reader.sample(o.sample).attributes;
  if (attrs.has_needle()) needle = needle_rows({*attrs.needle_begin, *attrs.needle_end}, keys.compress_ratio);
  explain_loaded(e, keys, b, needle);
  if (o.ref) judge_ref(e, b, keys);
  return e;
}

}  // namespace hisa
