#include "report/audit.hpp"

#include <algorithm>
#include <map>

#include "core/error.hpp"
#include "core/progress.hpp"
#include "io/dump_reader.hpp"
#include "io/query_subset.hpp"
#include "io/sample_selection.hpp"
#include "select/bounds.hpp"
#include "select/certified.hpp"
#include "select/engine.hpp"
#include "select/score_cpu.hpp"

namespace hisa {

namespace {

constexpr int64_t kQueryBatch = 256;  // queries decoded at once: bounds memory, keeps every core busy

}  // namespace

AuditResult run_audit(const AuditOptions& o, const std::function<void(const QueryRecord&)>& on_query) {
  if (o.files.empty()) throw UsageError("no input files");
  std::vector<DumpReader> readers;
  for (const auto& f : o.files) readers.emplace_back(f);

  AuditResult result;
  result.files = o.files;
  result.config = o.config;
  result.config.topk = resolve_topk(o.topk, readers);
  result.config.validate();
  if (o.method != Method::Hisa && o.method != Method::Certified) {
    throw UsageError("hisa audit compares HISA with DSA; --method takes hisa or certified");
  }
  auto engine = make_engine(o.device, o.threads);
  result.engine = engine->name();

  const std::vector<SampleSource> sources = select_samples(readers, o.samples);
  const std::vector<int> layers = select_layers(sources, o.layers);

  int64_t total_units = int64_t(layers.size() * sources.size()), done_units = 0;
  Progress progress(total_units, o.progress);
  std::vector<QueryAudit> audits;
  for (int layer : layers) {
    LayerAccumulator acc(layer, result.config.block_size, o.worst);
    for (const auto& src : sources) {
      const std::string sample_label = sources.size() > 1 && readers.size() > 1
                                           ? src.reader->path() + ":" + src.sample->name
                                           : src.sample->name;
      if (!std::binary_search(src.sample->layers.begin(), src.sample->layers.end(), layer)) {
        acc.add_missing_sample(sample_label);
        ++done_units;
        continue;
      }
      acc.add_sample(sample_label);
      progress.advance(done_units, "layer " + std::to_string(layer) + "  " + sample_label);
      LayerReader lr = src.reader->open_layer(src.sample->name, layer);
      LayerKeys keys = lr.read_keys();
      engine->set_layer(keys, result.config);
      BlockBounds bounds;
      if (o.method == Method::Certified) bounds = BlockBounds(keys, result.config.block_size);
      std::optional<NeedleRange> needle;
      if (src.sample->attributes.has_needle()) {
        needle = NeedleRange{*src.sample->attributes.needle_begin, *src.sample->attributes.needle_end};
      }
      const auto picked = pick_queries(lr.shape().queries, o.max_queries);
      for (size_t at = 0; at < picked.size(); at += kQueryBatch) {
        std::vector<int64_t> part(picked.begin() + at, picked.begin() + std::min(picked.size(), at + kQueryBatch));
        QueryBatch batch = read_query_subset(lr, part);
        engine->audit(batch, audits);
        CertifiedResult certified;
        if (o.method == Method::Certified) {
          certified = certified_select(keys, bounds, batch, result.config.topk, o.threads);
        }
        for (size_t i = 0; i < part.size(); ++i) {
          std::span<const int32_t> ref;
          if (batch.ref_width > 0) ref = {batch.topk_ref.data() + i * batch.ref_width, size_t(batch.ref_width)};
          QueryMetrics m = compute_query_metrics(audits[i], part[i], needle, ref, &result.config);
          if (!ref.empty()) {
            // Judge the tokens on which DSA and the dump's topk_ref differ by one CPU row of scores.
            std::vector<float> row;
            const QueryAudit& a = audits[i];
            compare_with_ref(a, ref, [&](int64_t s) {
              if (row.empty()) {
                row.resize(size_t(a.visible));
                const ScoreInputs one{batch.q_row(int64_t(i), 0), batch.w_row(int64_t(i)), 1, batch.heads, batch.dim};
                score_keys(one, keys.row(a.k_start), keys.k_scale.data() + a.k_start, a.visible, row.data(), a.visible);
              }
              return row[size_t(s - a.k_start)];
            }, m);
          }
          if (o.method == Method::Certified) {
            m.certified_keys_scored = certified.keys_scored[i];
            m.certified_equals_flat = certified.selections[i] == audits[i].flat;
          }
          acc.add(audits[i], m, sample_label);
          if (on_query) on_query({src.reader->path(), src.sample->name, layer, &audits[i], &m, &result.config});
        }
      }
      ++done_units;
    }
    result.layers.push_back(acc.finish());
  }
  progress.finish();
  return result;
}

}  // namespace hisa
