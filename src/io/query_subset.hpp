#pragma once
// Which queries of a layer to audit, and reading a chosen subset in as few reads as possible.
#include <cstdint>
#include <span>
#include <vector>

#include "io/dump_reader.hpp"

namespace hisa {

// All indices when max_queries <= 0 or >= count; else max_queries evenly spaced ones, floor(j·count/N).
std::vector<int64_t> pick_queries(int64_t count, int64_t max_queries);

// Reads the queries at `indices` (ascending) as one batch; contiguous runs are read together.
QueryBatch read_query_subset(const LayerReader& layer, const std::vector<int64_t>& indices);

// Rows `rows` (ascending indices into b) of a batch, as a batch; `first` stays b's.
QueryBatch batch_rows(const QueryBatch& b, std::span<const int64_t> rows);
// The same without q and w (their values are left to the caller: a batch on a GPU gathers them there);
// std::out_of_range for a row outside b.
QueryBatch batch_rows_but_values(const QueryBatch& b, std::span<const int64_t> rows);
// The rows of b whose query sees at least one key row (QueryBatch::sees_rows), ascending.
std::vector<int64_t> rows_seeing_keys(const QueryBatch& b);

}  // namespace hisa
