#pragma once
// How the CPU paths group a batch's queries for scoring. Shared by the CPU engine and the sweep scorer so
// that both score a batch with the same GEMM shapes, and so produce the same fp32 scores bit for bit.
#include <cstdint>
#include <vector>

#include "io/dump_model.hpp"
#include "select/score_cpu.hpp"

namespace hisa {

struct QueryChunk {
  int64_t first = 0, count = 0;  // queries [first, first + count) of the batch
  int64_t lo = 0, hi = 0;        // key range [lo, hi] covering every query's visible range
};

// Groups consecutive queries while the shared key range wastes at most 1/8 of the work. The chunks come costliest
// first (queries × keys): a parallel loop over them then ends with the cheap ones, where ascending positions would
// leave the costliest chunk, the last one, to a single thread while the others wait.
std::vector<QueryChunk> make_query_chunks(const QueryBatch& b);

// A chunk's work: its queries times the keys they are scored against.
inline int64_t chunk_work(const QueryChunk& c) { return c.count * (c.hi - c.lo + 1); }

// Score inputs for queries [first, first + count) of the batch.
inline ScoreInputs score_inputs(const QueryBatch& b, int64_t first, int64_t count) {
  return {b.q.data() + first * b.heads * b.dim, b.w.data() + first * b.heads, count, b.heads, b.dim};
}

}  // namespace hisa
