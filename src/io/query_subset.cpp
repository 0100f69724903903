#include "io/query_subset.hpp"

namespace hisa {

std::vector<int64_t> pick_queries(int64_t count, int64_t max_queries) {
  std::vector<int64_t> out;
  if (max_queries <= 0 || max_queries >= count) {
    for (int64_t i = 0; i < count; ++i) out.push_back(i);
    return out;
  }
  for (int64_t j = 0; j < max_queries; ++j) out.push_back(j * count / max_queries);
  return out;
}

QueryBatch read_query_subset(const LayerReader& layer, const std::vector<int64_t>& indices) {
  const LayerShape& sh = layer.shape();
  QueryBatch out;
  out.heads = sh.heads;
  out.dim = sh.dim;
  out.ref_width = sh.ref_width;
  out.ref_declaration = sh.ref_declaration;
  out.first = indices.empty() ? 0 : indices.front();
  size_t i = 0;
  while (i < indices.size()) {
    size_t end = i + 1;
    while (end < indices.size() && indices[end] == indices[end - 1] + 1) ++end;
    QueryBatch run = layer.read_queries(indices[i], int64_t(end - i));
    if (i == 0 && end == indices.size()) return run;  // one contiguous run: no copy
    out.q.insert(out.q.end(), run.q.begin(), run.q.end());
    out.w.insert(out.w.end(), run.w.begin(), run.w.end());
    out.q_pos.insert(out.q_pos.end(), run.q_pos.begin(), run.q_pos.end());
    out.k_start.insert(out.k_start.end(), run.k_start.begin(), run.k_start.end());
    out.topk_ref.insert(out.topk_ref.end(), run.topk_ref.begin(), run.topk_ref.end());
    out.count += run.count;
    i = end;
  }
  return out;
}

}  // namespace hisa
