#include "select/query_audit.hpp"

#include <algorithm>
#include <limits>

namespace hisa {

void set_query_position(QueryAudit& a, const QueryBatch& b, int64_t query) {
  a.q_pos = b.q_pos[size_t(query)];
  a.token_pos = b.token_position(query);
  a.k_start = b.k_start[size_t(query)];
  a.visible = a.q_pos - a.k_start + 1;
}

float kth_score(const QueryAudit& a, int64_t topk) {
  if (a.visible <= topk) return -std::numeric_limits<float>::infinity();
  return *std::min_element(a.flat_scores.begin(), a.flat_scores.end());
}

}  // namespace hisa
