#include "analysis/sweep_recommendation.hpp"

#include <algorithm>

namespace hisa {

namespace {

constexpr size_t kHeaviestLayers = 5;

// True when a ranks before b as a setting: cheaper first, then the smaller block size, then the smaller m.
bool cheaper(const CurvePoint& a, int64_t block_a, const CurvePoint& b, int64_t block_b) {
  if (a.scored_keys_mean != b.scored_keys_mean) return a.scored_keys_mean < b.scored_keys_mean;
  if (block_a != block_b) return block_a < block_b;
  return a.blocks < b.blocks;
}

// The sample with the lowest recall mean at (variant, m) in one layer (the first of equals).
void worst_sample(const SweepGrid& r, const LayerSweep& l, size_t v, size_t j, std::string& label, CurvePoint& point) {
  bool any = false;
  for (size_t s = 0; s < r.samples.size(); ++s) {
    const CurvePoint& p = l.per_sample[s].points[v][j];
    if (p.queries == 0) continue;
    if (!any || p.recall_mean < point.recall_mean) label = r.samples[s].label, point = p, any = true;
  }
}

LayerRecommendation recommend_layer(const SweepGrid& r, const LayerSweep& l, size_t pool, size_t forced) {
  LayerRecommendation best;
  best.layer = l.layer;
  bool have = false;
  for (size_t b = 0; b < r.block_sizes.size(); ++b) {
    const size_t v = r.variant_index(b, pool, forced);
    const auto& curve = l.all.points[v];
    if (auto j = r.smallest_passing(curve)) {
      if (!best.meets_targets || cheaper(curve[*j], r.block_sizes[b], best.expected, best.block_size)) {
        best.meets_targets = true, have = true;
        best.variant = v, best.m_index = *j, best.block_size = r.block_sizes[b], best.expected = curve[*j];
      }
      continue;
    }
    if (best.meets_targets) continue;
    for (size_t j = 0; j < curve.size(); ++j) {  // nothing passes yet: the best recall, cheapest among equals
      const CurvePoint& p = curve[j];
      if (!have || p.recall_mean > best.expected.recall_mean ||
          (p.recall_mean == best.expected.recall_mean && cheaper(p, r.block_sizes[b], best.expected, best.block_size))) {
        have = true;
        best.variant = v, best.m_index = j, best.block_size = r.block_sizes[b], best.expected = p;
      }
    }
  }
  best.blocks = best.expected.blocks;
  worst_sample(r, l, best.variant, best.m_index, best.worst_sample, best.worst);
  return best;
}

// The (B, m) that meets the targets on every layer with the least total cost.
std::optional<UniformRecommendation> recommend_uniform(const SweepGrid& r, size_t pool, size_t forced) {
  std::optional<UniformRecommendation> best;
  for (size_t b = 0; b < r.block_sizes.size(); ++b) {
    const size_t v = r.variant_index(b, pool, forced);
    for (size_t j = 0; j < r.blocks.size(); ++j) {
      bool all_meet = true;
      double cost = 0;
      size_t layers_with_queries = 0;
      for (const auto& l : r.layers) {
        if (l.all.queries == 0) continue;  // nothing to meet, nothing to pay
        all_meet = all_meet && r.meets(l.all.points[v][j]);
        cost += l.all.points[v][j].scored_keys_mean;
        ++layers_with_queries;
      }
      if (!all_meet || layers_with_queries == 0) continue;
      cost /= double(layers_with_queries);
      // Strictly cheaper only: the grid is walked by block size, then m, so ties keep the smaller ones.
      if (best && cost >= best->scored_keys_mean) continue;
      UniformRecommendation u;
      u.block_size = r.block_sizes[b], u.blocks = r.blocks[j], u.block_index = b, u.m_index = j;
      u.scored_keys_mean = cost;
      bool first = true;
      for (const auto& l : r.layers) {
        const CurvePoint& p = l.all.points[v][j];
        if (l.all.queries == 0) continue;
        if (first || p.recall_mean < u.lowest.recall_mean) u.lowest_layer = l.layer, u.lowest = p;
        std::string label;
        CurvePoint worst;
        worst_sample(r, l, v, j, label, worst);
        if (first || worst.recall_mean < u.worst.recall_mean) u.worst_sample = label, u.worst_layer = l.layer, u.worst = worst;
        first = false;
      }
      best = u;
    }
  }
  return best;
}

}  // namespace

ModeRecommendation recommend_mode(const SweepGrid& r, size_t pool, size_t forced) {
  ModeRecommendation m;
  m.pool = r.pools[pool];
  m.forced = r.forced[forced];
  for (const auto& l : r.layers) m.layers.push_back(recommend_layer(r, l, pool, forced));
  m.uniform = recommend_uniform(r, pool, forced);
  std::vector<const LayerRecommendation*> met;
  for (size_t i = 0; i < m.layers.size(); ++i) {
    const LayerRecommendation& l = m.layers[i];
    if (l.meets_targets) {
      met.push_back(&l);
    } else if (r.layers[i].all.queries > 0) {  // a layer without queries is reported as such, not as unmet
      m.unmet.push_back(l.layer);
    }
  }
  std::stable_sort(met.begin(), met.end(), [](const LayerRecommendation* a, const LayerRecommendation* b) {
    return a->expected.scored_keys_mean > b->expected.scored_keys_mean;
  });
  for (size_t i = 0; i < std::min(kHeaviestLayers, met.size()); ++i) m.heaviest.push_back(met[i]->layer);
  for (size_t g = 0; g < r.groups.size(); ++g) {
    GroupCheck check;
    check.group = g;
    for (size_t i = 0; i < r.layers.size(); ++i) {
      const LayerRecommendation& rec = m.layers[i];
      const CurvePoint& p = r.layers[i].per_group[g].points[rec.variant][rec.m_index];
      check.recommended.push_back(p);
      if (p.queries > 0) ++check.layers_present;
      if (rec.meets_targets && r.meets(p)) ++check.layers_meeting;
      if (m.uniform) {
        check.uniform.push_back(r.layers[i].per_group[g].points[r.variant_index(m.uniform->block_index, pool, forced)]
                                                                [m.uniform->m_index]);
      }
    }
    m.groups.push_back(check);
  }
  return m;
}

}  // namespace hisa
