#pragma once
// The project's single definition of top-k: higher score first, equal scores by lower position.
// Results are positions in ascending order.
#include <bit>
#include <cstdint>
#include <span>
#include <vector>

namespace hisa {

// True when (score a at position pa) ranks before (score b at position pb).
inline bool ranks_before(float a, int64_t pa, float b, int64_t pb) { return a > b || (a == b && pa < pb); }

// Order-preserving map from float to uint32 (larger float, larger key); -0 and +0 map alike, so keys compare as
// ranks_before compares scores.
inline uint32_t order_key(float x) {
  const uint32_t u = std::bit_cast<uint32_t>(x + 0.0f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// The k best of scores[i] at positions[i] (positions strictly ascending); all of them when there are at
// most k. Appends the chosen positions, ascending, to out. Scores must not be NaN (engines map NaN to -inf).
void topk_positions(std::span<const float> scores, std::span<const int64_t> positions, int64_t k,
                    std::vector<int64_t>& out);
// Same for a contiguous range: scores[i] belongs to position first_position + i.
void topk_range(std::span<const float> scores, int64_t first_position, int64_t k, std::vector<int64_t>& out);

// The k-th best score of a row (the cut-off), or -inf when the row holds fewer than k scores.
float kth_score(std::span<const float> scores, int64_t k);

}  // namespace hisa
