#pragma once
// What an engine's audit() returns per query, and the parts of it every engine computes on the host the same way,
// so the engines differ only in how they score and select.
#include <cmath>
#include <cstdint>
#include <vector>

#include "io/dump_model.hpp"

namespace hisa {

// Everything the audit needs about one query, computed from one set of scores so that the comparisons
// between DSA, HISA and block-sparse are never disturbed by rounding.
struct QueryAudit {
  int64_t q_pos = 0, k_start = 0;   // q_pos: the last key row the query may see (QueryBatch::q_pos)
  int64_t token_pos = 0;             // the query's token position (q_pos on an uncompressed layer)
  int64_t visible = 0;               // q_pos - k_start + 1
  std::vector<int64_t> flat;         // DSA's selection, ascending
  std::vector<float> flat_scores;    // I[t,s] for each position in `flat`
  std::vector<int64_t> hisa;         // HISA(B, m), ascending
  std::vector<float> hisa_scores;    // I[t,s] for each position in `hisa`
  std::vector<int64_t> hisa_blocks;  // blocks HISA kept, ascending
  // Per eligible block (index 0 = block ⌊k_start/B⌋): pooled score J and best visible token score. Used to
  // explain misses. (A block's score bound, for certificates, is computed where it is needed: select/bounds.hpp.)
  std::vector<float> block_scores, block_best;
  std::vector<int64_t> block;        // block-sparse baseline, ascending
  float kth_score = 0;               // DSA's k-th score (lowest kept), -inf when every key is kept
  float row_max = 0;                 // M = max visible score
  // Softmax masses Σ e^{I[t,s] - M}: over the visible keys, and over each selection.
  double mass_visible = 0, mass_flat = 0, mass_hisa = 0, mass_block = 0;
};

// One term e^{I - M} of a softmax mass, M the row's maximum. A score equal to M counts 1 even when M is infinite
// (scores that overflowed): the mass of a row with +inf scores is on those scores, and a row of -inf scores
// (NaN scores are -inf) weighs them alike, where e^{inf - inf} would make every coverage NaN.
inline double softmax_term(float score, float max) {
  return score == max ? 1.0 : std::exp(double(score) - double(max));
}

// The query's position fields (q_pos, token_pos, k_start, visible) from row `query` of the batch.
void set_query_position(QueryAudit& a, const QueryBatch& b, int64_t query);
// DSA's k-th score from a.flat_scores: the lowest kept, or -inf when the query sees at most k keys.
float kth_score(const QueryAudit& a, int64_t topk);

}  // namespace hisa
