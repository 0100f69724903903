// How the CPU paths group a batch's queries (select/query_chunks.hpp): every query in exactly one chunk, each chunk's
// key range covering its queries' visible ranges, and the costliest chunks first.
#include <gtest/gtest.h>

#include <vector>

#include "select/query_chunks.hpp"

namespace hisa {
namespace {

// A batch of `count` queries at the given positions, with visible ranges starting at k_start.
QueryBatch batch_at(std::vector<int64_t> q_pos, std::vector<int64_t> k_start, int64_t heads = 16) {
  QueryBatch b;
  b.count = int64_t(q_pos.size());
  b.heads = heads;
  b.dim = 4;
  b.q_pos = std::move(q_pos);
  b.k_start = std::move(k_start);
  return b;
}

void expect_a_partition(const QueryBatch& b, const std::vector<QueryChunk>& chunks) {
  std::vector<int> seen(size_t(b.count), 0);
  for (const QueryChunk& c : chunks) {
    ASSERT_GE(c.count, 1);
    for (int64_t i = c.first; i < c.first + c.count; ++i) {
      ++seen[size_t(i)];
      EXPECT_LE(c.lo, b.k_start[size_t(i)]);
      EXPECT_GE(c.hi, b.q_pos[size_t(i)]);
    }
  }
  for (int s : seen) EXPECT_EQ(1, s);
}

TEST(QueryChunks, ACausalPrefillIsPartitionedCostliestFirst) {
  std::vector<int64_t> q_pos, k_start;
  for (int64_t t = 0; t < 4096; t += 16) {
    q_pos.push_back(t);
    k_start.push_back(0);
  }
  const QueryBatch b = batch_at(q_pos, k_start);
  const auto chunks = make_query_chunks(b);
  expect_a_partition(b, chunks);
  ASSERT_GT(chunks.size(), 2u);
  for (size_t i = 1; i < chunks.size(); ++i) EXPECT_GE(chunk_work(chunks[i - 1]), chunk_work(chunks[i])) << i;
  // Later positions see more keys: the costliest chunk lies in the second half of the prefill.
  EXPECT_GE(chunks.front().hi, 2048);
}

TEST(QueryChunks, AChunkHoldsAtMost512RowsOfHeads) {
  const QueryBatch b = batch_at(std::vector<int64_t>(100, 1000), std::vector<int64_t>(100, 0), 64);
  const auto chunks = make_query_chunks(b);
  expect_a_partition(b, chunks);
  for (const QueryChunk& c : chunks) EXPECT_LE(c.count * b.heads, 512);
}

TEST(QueryChunks, EmptyAndSingleBatches) {
  EXPECT_TRUE(make_query_chunks(batch_at({}, {})).empty());
  const QueryBatch one = batch_at({5}, {2});
  const auto chunks = make_query_chunks(one);
  ASSERT_EQ(1u, chunks.size());
  EXPECT_EQ(2, chunks[0].lo);
  EXPECT_EQ(5, chunks[0].hi);
  EXPECT_EQ(4, chunk_work(chunks[0]));
}

}  // namespace
}  // namespace hisa
