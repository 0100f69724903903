#pragma once
// Per-query fidelity of HISA (H) and block-sparse (S) against flat DSA (D). Formulas in docs/definitions.md, "Metrics".
#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "select/engine.hpp"

namespace hisa {

// 0 for distance 0, else 1 + floor(log2(distance)): 1, 2-3, 4-7, ...
int distance_bucket(int64_t distance);
inline constexpr int kDistanceBuckets = 64;

// Where a set of positions (ascending) lies for one query: how many at each distance bucket from q_pos, in the
// sink block (the one holding k_start) and in the query's own block, and how many distinct blocks it touches.
struct PositionPattern {
  std::array<int64_t, kDistanceBuckets> buckets{};
  int top_bucket = -1;  // the highest bucket holding a position; -1: none
  int64_t tokens = 0, sink = 0, own = 0, blocks = 0;
};
PositionPattern position_pattern(const std::vector<int64_t>& positions, const QueryAudit& a, int64_t block_size);

struct SetComparison {
  double iou = 1;     // |X∩D| / |X∪D|
  double recall = 1;  // |X∩D| / |D|
  double coverage = 0;        // softmax mass of X / mass of the visible keys
  double coverage_ratio = 1;  // coverage(X) / coverage(D)
  std::optional<int64_t> first_miss_rank;  // best (1-based) DSA rank that X misses; none when X ⊇ D
  std::optional<double> needle_recall;     // share of the visible needle tokens X holds
};

struct QueryMetrics {
  int64_t query = 0;  // index in the layer
  int64_t q_pos = 0;
  int64_t visible = 0;
  double coverage_flat = 0;
  std::optional<double> needle_recall_flat;
  SetComparison hisa, block;
  // The dump's topk_ref judged against its rule's exact selection E (metrics/ref_judge.hpp): IoU with E as
  // sets, and the tokens of E △ topk_ref per class.
  std::optional<double> ref_iou;
  std::optional<int64_t> ref_tie_swaps, ref_near_ties, ref_block_flips, ref_unexplained;
  std::array<int64_t, 4> miss_causes{};  // HISA's misses per MissCause (metrics/diagnosis.hpp)
  bool certified = false;                // HISA's selection is proved equal to DSA's
  // --method certified: keys the branch-and-bound search scored, and whether it reproduced DSA.
  std::optional<int64_t> certified_keys_scored;
  std::optional<bool> certified_equals_flat;
  // With a config: where DSA's tokens and HISA's misses lie (the layer's coverage patterns).
  std::optional<PositionPattern> dsa_pattern, miss_pattern;
};

struct NeedleRange {
  int64_t begin = 0, end = 0;  // half-open
};
// The key rows holding any of the needle's tokens on a layer of compress_ratio c (the tokens themselves when c = 1).
inline NeedleRange needle_rows(NeedleRange tokens, int64_t c) {
  return c == 1 ? tokens : NeedleRange{tokens.begin / c, (tokens.end - 1) / c + 1};
}

// Size of the intersection of two ascending position lists, in one merge pass.
template <typename T>
int64_t count_common(std::span<const T> a, std::span<const T> b) {
  int64_t n = 0;
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (a[i] < b[j]) {
      ++i;
    } else if (b[j] < a[i]) {
      ++j;
    } else {
      ++n, ++i, ++j;
    }
  }
  return n;
}
inline int64_t intersection_size(std::span<const int64_t> a, std::span<const int64_t> b) { return count_common(a, b); }
// |X∩Y| / |X∪Y| from the sets' sizes and their intersection's; 1 when both are empty.
inline double iou_of(int64_t common, int64_t x, int64_t y) {
  const int64_t uni = x + y - common;
  return uni == 0 ? 1.0 : double(common) / double(uni);
}
// in[i] = whether x[i] is in y (both ascending), in one merge pass.
std::vector<char> membership(std::span<const int64_t> x, std::span<const int64_t> y);

// The valid entries of a topk_ref row (−1 padding and duplicates dropped), ascending.
std::vector<int64_t> ref_positions(std::span<const int32_t> topk_ref);

// DSA's ranks (1 = best) of its own positions, aligned with a.flat.
std::vector<int64_t> dsa_ranks(const QueryAudit& a);
// The best DSA rank among a.flat's entries i with held[i] false (the smallest of dsa_ranks over them), none when
// every entry is held; two linear passes instead of dsa_ranks' sort.
std::optional<int64_t> best_rank_not_held(const QueryAudit& a, const std::vector<char>& held);

// With a config, also the miss causes and the coverage patterns, and with a block bound too the certificate (they
// need the block size and budget; the certificate the blocks' score bounds, metrics/diagnosis.hpp).
QueryMetrics compute_query_metrics(const QueryAudit& a, int64_t query_index, std::optional<NeedleRange> needle,
                                   const SelectionConfig* config = nullptr,
                                   const std::function<float(int64_t block)>& block_bound = {});

}  // namespace hisa
