#pragma once
// Why HISA missed a DSA token, and when HISA's selection is certified exact. docs/definitions.md, "Misses and
// certificates" states each class's exact condition.
#include <array>
#include <cstdint>
#include <functional>
#include <string_view>
#include <vector>

#include "select/config.hpp"
#include "select/engine.hpp"

namespace hisa {

// Relative distance to the k-th score below which a miss counts as a numerical near-tie.
inline constexpr double kNearTieRelative = 1e-4;

enum class MissCause { NearTie, DisplacedByForced, NearCutoff, MeanDilution };
inline constexpr int kMissCauses = 4;
std::string_view miss_cause_name(MissCause c);  // near_tie, forced, near_cutoff, dilution

struct MissDiagnosis {
  int64_t position = 0, distance = 0;  // distance = q_pos - position
  int64_t dsa_rank = 0;                // 1 = DSA's best token
  float score = 0, margin = 0;         // margin = score - DSA's k-th score
  int64_t block = 0;
  float block_score = 0;               // J
  int64_t block_rank = 0;              // 0-based rank in HISA's keep order; kept when < the number kept
  float block_best = 0;                // best visible token score in the block
  double pooled_to_best = 0;           // J / block_best
  MissCause cause = MissCause::MeanDilution;
  int64_t replaced_by = -1;            // the HISA token paired with this miss (-1: none)
  float replaced_score = 0;
};

// The rank of every eligible block in HISA's keep order (forced first in in-budget mode, then by J,
// equal J by lower block); rank[i] belongs to block ⌊k_start/B⌋ + i.
std::vector<int64_t> block_keep_ranks(const QueryAudit& a, const SelectionConfig& c);

// How many of DSA's tokens HISA lacks have each cause (diagnose_misses' causes, without the rest of the story).
std::array<int64_t, kMissCauses> count_miss_causes(const QueryAudit& a, const SelectionConfig& c);

// One entry per DSA token HISA lacks, in DSA rank order.
std::vector<MissDiagnosis> diagnose_misses(const QueryAudit& a, const SelectionConfig& c);

// The score bound of an eligible block (select/bounds.hpp BlockBounds::score_bound for the query), by block index.
using BlockBound = std::function<float(int64_t block)>;

// True when no pruned block's score bound reaches HISA's k-th score, which proves HISA = DSA. Bounds are asked
// for only as far as needed, pruned blocks of higher J first: one that reaches the k-th score settles it.
bool certify_hisa(const QueryAudit& a, const SelectionConfig& c, const BlockBound& bound);

}  // namespace hisa
