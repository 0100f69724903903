#include "select/query_chunks.hpp"

#include <algorithm>

namespace hisa {

std::vector<QueryChunk> make_query_chunks(const QueryBatch& b) {
  const int64_t max_queries = std::max<int64_t>(1, 512 / std::max<int64_t>(1, b.heads));
  std::vector<QueryChunk> chunks;
  int64_t i = 0;
  while (i < b.count) {
    QueryChunk c{i, 1, b.k_start[size_t(i)], b.q_pos[size_t(i)]};
    int64_t useful = c.hi - c.lo + 1;
    while (c.first + c.count < b.count && c.count < max_queries) {
      const size_t j = size_t(c.first + c.count);
      const int64_t lo = std::min(c.lo, b.k_start[j]), hi = std::max(c.hi, b.q_pos[j]);
      const int64_t next_useful = useful + (b.q_pos[j] - b.k_start[j] + 1);
      if ((hi - lo + 1) * (c.count + 1) * 8 > next_useful * 9) break;
      c.lo = lo, c.hi = hi, useful = next_useful, ++c.count;
    }
    chunks.push_back(c);
    i += c.count;
  }
  std::stable_sort(chunks.begin(), chunks.end(),
                   [](const QueryChunk& a, const QueryChunk& b) { return chunk_work(a) > chunk_work(b); });
  return chunks;
}

}  // namespace hisa
