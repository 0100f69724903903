#include "io/query_subset.hpp"

#include <stdexcept>
#include <string>

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
  out.compress_ratio = sh.compress_ratio;
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
    out.token_pos.insert(out.token_pos.end(), run.token_pos.begin(), run.token_pos.end());
    out.topk_ref.insert(out.topk_ref.end(), run.topk_ref.begin(), run.topk_ref.end());
    out.count += run.count;
    i = end;
  }
  return out;
}

QueryBatch batch_rows_but_values(const QueryBatch& b, std::span<const int64_t> rows) {
  QueryBatch out;
  out.first = b.first;
  out.count = int64_t(rows.size());
  out.heads = b.heads;
  out.dim = b.dim;
  out.ref_width = b.ref_width;
  out.ref_declaration = b.ref_declaration;
  out.compress_ratio = b.compress_ratio;
  out.device = b.device;
  const size_t rw = size_t(b.ref_width);
  for (int64_t r : rows) {
    if (r < 0 || r >= b.count) throw std::out_of_range("batch rows: row " + std::to_string(r) + " of " + std::to_string(b.count));
    const size_t i = size_t(r);
    out.q_pos.push_back(b.q_pos[i]);
    out.k_start.push_back(b.k_start[i]);
    if (!b.token_pos.empty()) out.token_pos.push_back(b.token_pos[i]);
    if (rw > 0) out.topk_ref.insert(out.topk_ref.end(), b.topk_ref.begin() + ptrdiff_t(i * rw), b.topk_ref.begin() + ptrdiff_t((i + 1) * rw));
  }
  return out;
}

QueryBatch batch_rows(const QueryBatch& b, std::span<const int64_t> rows) {
  // Rows of a batch on a GPU are gathered there (cuda/device_layer.hpp's DeviceLayer::rows).
  if (b.on_device()) throw std::logic_error("batch_rows: the batch's q and w live on a GPU");
  QueryBatch out = batch_rows_but_values(b, rows);
  const size_t qw = size_t(b.heads * b.dim), ww = size_t(b.heads);
  out.q.reserve(rows.size() * qw);
  out.w.reserve(rows.size() * ww);
  for (int64_t r : rows) {
    const size_t i = size_t(r);
    out.q.insert(out.q.end(), b.q.begin() + ptrdiff_t(i * qw), b.q.begin() + ptrdiff_t((i + 1) * qw));
    out.w.insert(out.w.end(), b.w.begin() + ptrdiff_t(i * ww), b.w.begin() + ptrdiff_t((i + 1) * ww));
  }
  return out;
}

std::vector<int64_t> rows_seeing_keys(const QueryBatch& b) {
  std::vector<int64_t> out;
  for (int64_t i = 0; i < b.count; ++i) {
    if (b.sees_rows(i)) out.push_back(i);
  }
  return out;
}

}  // namespace hisa
