#include "metrics/ref_judge.hpp"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <unordered_map>

#include "metrics/parity.hpp"
#include "metrics/query_metrics.hpp"
#include "select/score_cpu.hpp"
#include "select/topk.hpp"

namespace hisa {

std::string_view ref_class_name(RefClass c) {
  switch (c) {
    case RefClass::TieSwap: return "tie swap";
    case RefClass::NearTie: return "near tie";
    case RefClass::BlockFlip: return "block flip";
    case RefClass::Unexplained: return "unexplained";
  }
  return "?";
}

RefLayer make_ref_layer(const LayerKeys& keys, const RefRule& rule, double tolerance) {
  RefLayer l;
  l.keys = &keys;
  l.rule = rule;
  l.tolerance = tolerance;
  if (rule.method != Method::Flat && !keys.on_device()) l.pooled = pool_keys(keys, rule.config.block_size, rule.config.pool);
  return l;
}

RefScorer host_ref_scorer(const RefLayer& l, const QueryBatch& b, int64_t i) {
  const LayerKeys& keys = *l.keys;
  RefScorer s;
  s.scores = [&keys, &b, i](const std::vector<int64_t>& positions) {
    std::vector<float> out(positions.size());
    score_positions(b.q_row(i, 0), b.w_row(i), b.heads, b.dim, keys.k.data(), keys.k_scale.data(), positions, out.data());
    return out;
  };
  s.token_magnitude = [&keys, &b, i](int64_t p) { return abs_score(b, i, keys.row(p), keys.k_scale[size_t(p)]); };
  s.block_magnitude = [&l, &b, i](int64_t blk) {
    const PooledKeys& p = l.pooled;
    return abs_score(b, i, p.k.data() + blk * p.dim, p.scale[size_t(blk)]);
  };
  return s;
}

RefScorer engine_ref_scorer(SelectionEngine& engine, const QueryBatch& b, int64_t i, int64_t block_size) {
  // Each engine call is a launch and a wait on a GPU: the magnitudes of every token scored, and of every eligible
  // block at the first one asked for, come in one call each and are kept for the query.
  struct Kept {
    std::unordered_map<int64_t, double> tokens;
    std::vector<double> blocks;
    BlockSpan span;
  };
  auto kept = std::make_shared<Kept>();
  kept->span = eligible_blocks(b.k_start[size_t(i)], b.q_pos[size_t(i)], block_size);
  auto score = [&engine, &b, i, kept](std::span<const int64_t> positions) {
    std::vector<float> out;
    std::vector<double> magnitudes;
    engine.score_positions(b, i, positions, false, out, &magnitudes);
    for (size_t n = 0; n < positions.size(); ++n) kept->tokens[positions[n]] = magnitudes[n];
    return out;
  };
  RefScorer s;
  s.scores = score;
  s.token_magnitude = [score, kept](int64_t p) {
    const auto known = kept->tokens.find(p);
    if (known != kept->tokens.end()) return known->second;
    const int64_t one[] = {p};
    score(one);
    return kept->tokens.at(p);
  };
  s.block_magnitude = [&engine, &b, i, kept](int64_t blk) {
    const BlockSpan& span = kept->span;
    if (blk < span.first || blk > span.last) throw std::out_of_range("engine_ref_scorer: block outside the query's eligible blocks");
    if (kept->blocks.empty()) {
      std::vector<int64_t> blocks(size_t(span.size()));
      for (int64_t j = 0; j < span.size(); ++j) blocks[size_t(j)] = span.first + j;
      std::vector<float> J;
      engine.score_positions(b, i, blocks, true, J, &kept->blocks);
    }
    return kept->blocks[size_t(blk - span.first)];
  };
  return s;
}

namespace {

bool holds(const std::vector<int64_t>& sorted, int64_t v) { return std::binary_search(sorted.begin(), sorted.end(), v); }

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.7g", v);
  return buf;
}

// The lowest-ranked of `positions` by `scores` (aligned with them): the selection's cut.
int64_t lowest_ranked(const std::vector<int64_t>& positions, const std::vector<float>& scores) {
  size_t c = 0;
  for (size_t i = 1; i < positions.size(); ++i) {
    if (ranks_before(scores[c], positions[c], scores[i], positions[i])) c = i;
  }
  return positions[c];
}

// The rule's block stage for one query, and which of its blocks topk_ref may have swapped for near-tied ones.
class BlockStage {
 public:
  BlockStage(const RefLayer& layer, const RefScorer& scorer, const QueryAudit& x, std::vector<int64_t> kept)
      : l_(layer), scorer_(scorer), x_(x), kept_(std::move(kept)),
        span_(eligible_blocks(x.k_start, x.q_pos, layer.rule.config.block_size)) {
    find_cut();
  }

  const std::vector<int64_t>& kept() const { return kept_; }
  bool forced(int64_t blk) const { return blk == span_.first || blk == span_.last; }
  bool eligible(int64_t blk) const { return blk >= span_.first && blk <= span_.last; }
  float J(int64_t blk) const { return x_.block_scores[size_t(blk - span_.first)]; }
  std::optional<int64_t> cut() const { return cut_; }

  // A block whose J lies within the tolerance of the cut block's: one the rule could keep or drop under pooling
  // drift. Forced blocks never are.
  bool near_cut(int64_t blk) const {
    if (!cut_ || forced(blk) || !eligible(blk)) return false;
    return near_tie(J(blk), abs_J(blk), J(*cut_), abs_J(*cut_), l_.tolerance);
  }

  // The blocks topk_ref kept in place of the rule's, as far as its tokens show them: a kept block the rule's
  // selection draws tokens from and topk_ref none is dropped, a block only topk_ref draws from is added, each
  // only when near the cut; no more blocks are added than were dropped or could have been dropped unseen.
  // Returns the rule's kept blocks with those swaps; `over_budget` gets the added blocks beyond that count.
  std::vector<int64_t> swapped_for(const std::vector<int64_t>& E, const std::vector<int64_t>& R,
                                   std::vector<int64_t>& flipped, std::vector<int64_t>& over_budget) const {
    const int64_t B = l_.rule.config.block_size;
    auto blocks_of = [&](const std::vector<int64_t>& tokens) {
      std::vector<int64_t> out;
      for (int64_t s : tokens) {
        if (s >= x_.k_start && s <= x_.q_pos && (out.empty() || out.back() != s / B)) out.push_back(s / B);
      }
      return out;
    };
    const std::vector<int64_t> e_blocks = blocks_of(E), r_blocks = blocks_of(R);
    std::vector<int64_t> out, in, unseen;
    for (int64_t blk : kept_) {
      if (holds(r_blocks, blk) || !near_cut(blk)) continue;
      (holds(e_blocks, blk) ? out : unseen).push_back(blk);
    }
    for (int64_t blk : r_blocks) {
      if (!holds(kept_, blk) && near_cut(blk)) in.push_back(blk);
    }
    auto by_rank = [&](std::vector<int64_t> blocks) {  // best J first
      std::sort(blocks.begin(), blocks.end(), [&](int64_t a, int64_t c) { return ranks_before(J(a), a, J(c), c); });
      return blocks;
    };
    const size_t allowed = out.size() + unseen.size();
    if (in.size() > allowed) {
      // Keep the best-ranked additions; the rest exceed the rule's budget.
      const std::vector<int64_t> ranked = by_rank(in);
      over_budget.assign(ranked.begin() + std::ptrdiff_t(allowed), ranked.end());
      std::sort(over_budget.begin(), over_budget.end());
      in.assign(ranked.begin(), ranked.begin() + std::ptrdiff_t(allowed));
      std::sort(in.begin(), in.end());
    }
    if (in.size() > out.size()) {
      // Additions beyond the drops took the place of kept blocks neither side draws from: the lowest-ranked of those
      // leave the blocks too, so that topk_ref keeps as many blocks as the rule.
      const std::vector<int64_t> ranked = by_rank(unseen);
      out.insert(out.end(), ranked.end() - std::ptrdiff_t(in.size() - out.size()), ranked.end());
      std::sort(out.begin(), out.end());
    }
    std::vector<int64_t> result;
    std::set_difference(kept_.begin(), kept_.end(), out.begin(), out.end(), std::back_inserter(result));
    result.insert(result.end(), in.begin(), in.end());
    std::sort(result.begin(), result.end());
    std::set_union(out.begin(), out.end(), in.begin(), in.end(), std::back_inserter(flipped));
    return result;
  }

 private:
  double abs_J(int64_t blk) const { return scorer_.block_magnitude(blk); }

  // The lowest-ranked block the rule chose by J: the m-th best of all eligible blocks (extra), or the
  // (m − #forced)-th best of the others (in-budget). None when every eligible block is kept or only forced ones.
  void find_cut() {
    const SelectionConfig& c = l_.rule.config;
    if (span_.size() <= c.blocks) return;
    std::vector<int64_t> candidates;
    for (int64_t blk = span_.first; blk <= span_.last; ++blk) {
      if (c.forced == ForcedMode::Extra || !forced(blk)) candidates.push_back(blk);
    }
    const int64_t forced_count = span_.first == span_.last ? 1 : 2;
    const int64_t need = c.forced == ForcedMode::Extra ? c.blocks : c.blocks - forced_count;
    if (need <= 0 || need > int64_t(candidates.size())) return;
    std::nth_element(candidates.begin(), candidates.begin() + (need - 1), candidates.end(),
                     [&](int64_t a, int64_t b) { return ranks_before(J(a), a, J(b), b); });
    cut_ = candidates[size_t(need - 1)];
  }

  const RefLayer& l_;
  const RefScorer& scorer_;
  const QueryAudit& x_;
  std::vector<int64_t> kept_;
  BlockSpan span_;
  std::optional<int64_t> cut_;
};

// Tie swaps exchange one token for another: tied or near-tied tokens on one side beyond those on the other side
// have no partner (a selection that drops ties, or holds more than k), and are unexplained.
void unpaired_ties_unexplained(std::vector<RefDifference>& diffs) {
  auto tied = [](const RefDifference& d) { return d.cls == RefClass::TieSwap || d.cls == RefClass::NearTie; };
  int64_t in_ref = 0, in_rule = 0;
  for (const auto& d : diffs) {
    if (tied(d)) (d.in_ref ? in_ref : in_rule)++;
  }
  if (in_ref == in_rule) return;
  const bool excess_in_ref = in_ref > in_rule;
  int64_t excess = std::abs(in_ref - in_rule);
  for (auto it = diffs.rbegin(); it != diffs.rend() && excess > 0; ++it) {
    if (!tied(*it) || it->in_ref != excess_in_ref) continue;
    it->cls = RefClass::Unexplained;
    it->why = excess_in_ref ? "a tie with no partner: topk_ref holds more tokens at the cut than the rule selects"
                            : "a tie with no partner: topk_ref holds fewer tokens than the rule selects";
    --excess;
  }
}

}  // namespace

void set_ref_metrics(const RefJudgement& j, QueryMetrics& m) {
  m.ref_iou = j.iou;
  m.ref_tie_swaps = j.tie_swaps;
  m.ref_near_ties = j.near_ties;
  m.ref_block_flips = j.block_flips;
  m.ref_unexplained = j.unexplained;
}

RefJudgement judge_ref_row(const RefLayer& l, const QueryBatch& b, int64_t i, const QueryAudit& x,
                           std::span<const int32_t> ref_row, const RefScorer* given) {
  const RefRule& rule = l.rule;
  const SelectionConfig& c = rule.config;
  const int64_t B = c.block_size;
  const std::vector<int64_t> R = ref_positions(ref_row);

  // The rule's selection E and kept blocks.
  std::vector<int64_t> E, kept;
  if (rule.method == Method::Flat) {
    E = x.flat;
  } else if (rule.method == Method::Hisa) {
    E = x.hisa;
    kept = x.hisa_blocks;
  } else {
    keep_blocks(x.block_scores, eligible_blocks(x.k_start, x.q_pos, B), c.blocks, c.forced, kept);
    tokens_in_blocks(kept, B, x.k_start, x.q_pos, E);
  }
  RefJudgement j;
  j.iou = iou_of(intersection_size(E, R), int64_t(E.size()), int64_t(R.size()));
  if (E == R) return j;

  if (given == nullptr && (b.on_device() || l.keys->on_device())) {
    throw std::invalid_argument("judge_ref_row: operands on a GPU are judged with engine_ref_scorer");
  }
  std::optional<RefScorer> own;
  if (given == nullptr) own = host_ref_scorer(l, b, i);
  const RefScorer& scorer = given != nullptr ? *given : *own;
  auto scores_of = [&](const std::vector<int64_t>& positions) { return scorer.scores(positions); };
  auto abs_of = [&](int64_t s) { return scorer.token_magnitude(s); };

  // The rule's token stage on the given kept blocks: E2 and its cut (hisa: the top k of their visible tokens, by
  // recomputed scores; block-sparse: all of them, no cut).
  auto token_stage = [&](const std::vector<int64_t>& blocks, std::vector<int64_t>& sel, std::optional<int64_t>& cut_at) {
    std::vector<int64_t> cands;
    tokens_in_blocks(blocks, B, x.k_start, x.q_pos, cands);
    if (rule.method == Method::Block) {
      sel = cands;
      return;
    }
    // The engines' top-k, with their tie rule; the cut is the lowest-ranked token it keeps.
    const std::vector<float> s = scores_of(cands);
    topk_positions(s, cands, c.topk, sel);
    if (sel.size() == cands.size() || sel.empty()) return;
    std::vector<float> kept_scores;
    for (size_t n = 0, m = 0; n < cands.size() && m < sel.size(); ++n) {
      if (cands[n] == sel[m]) kept_scores.push_back(s[n]), ++m;
    }
    cut_at = lowest_ranked(sel, kept_scores);
  };
  // Whether topk_ref is what the rule selects on the swapped blocks: as many visible tokens as E2, and wherever E2
  // and topk_ref differ outside E △ R (a token the swap predicts that topk_ref lacks, or the reverse), only ties or
  // near ties at E2's cut. Else the swaps explain nothing (a selection that merely lacks tokens is not pooling drift).
  auto swaps_hold = [&](const std::vector<int64_t>& e, const std::vector<int64_t>& r, const std::vector<int64_t>& e2,
                        const std::optional<int64_t>& cut_at) {
    const auto visible_count = std::count_if(r.begin(), r.end(), [&](int64_t p) { return p >= x.k_start && p <= x.q_pos; });
    if (visible_count != int64_t(e2.size())) return false;
    std::vector<int64_t> d2, d, extra;
    std::set_symmetric_difference(e2.begin(), e2.end(), r.begin(), r.end(), std::back_inserter(d2));
    std::set_symmetric_difference(e.begin(), e.end(), r.begin(), r.end(), std::back_inserter(d));
    std::set_difference(d2.begin(), d2.end(), d.begin(), d.end(), std::back_inserter(extra));
    if (extra.empty()) return true;
    if (!cut_at) return false;
    const float cs = scores_of({*cut_at})[0];
    const double ca = abs_of(*cut_at);
    const std::vector<float> es = scores_of(extra);
    for (size_t n = 0; n < extra.size(); ++n) {
      if (!near_tie(es[n], abs_of(extra[n]), cs, ca, l.tolerance)) return false;
    }
    return true;
  };

  // The block stage, with topk_ref's near-tied swaps, and the rule's token stage on those blocks (E2).
  std::optional<BlockStage> blocks;
  std::vector<int64_t> kept2 = kept, flipped, over_budget;
  if (rule.method != Method::Flat) {
    blocks.emplace(l, scorer, x, kept);
    kept2 = blocks->swapped_for(E, R, flipped, over_budget);
    if (blocks->cut()) {
      j.cut_block = blocks->cut();
      j.cut_J = blocks->J(*blocks->cut());
    }
  }
  std::vector<int64_t> E2;
  std::optional<int64_t> cut;  // the lowest-ranked token of E2, when E2 leaves a candidate out
  if (!flipped.empty()) {
    token_stage(kept2, E2, cut);
    if (!swaps_hold(E, R, E2, cut)) flipped.clear(), over_budget.clear(), kept2 = kept, E2.clear(), cut.reset();
  }
  if (flipped.empty()) {  // the rule's own selection, with the engine's order for its cut
    E2 = E;
    if (rule.method == Method::Flat && x.visible > int64_t(E.size()) && !E.empty()) cut = lowest_ranked(E, x.flat_scores);
    if (rule.method == Method::Hisa && !E.empty()) {
      int64_t candidates = 0;
      for (const TokenRange& r : visible_runs(kept, B, x.k_start, x.q_pos)) candidates += r.size();
      if (candidates > int64_t(E.size())) cut = lowest_ranked(E, x.hisa_scores);
    }
  }
  float cut_score = 0;
  double cut_abs = 0;
  if (cut) {
    cut_score = scores_of({*cut})[0];
    cut_abs = abs_of(*cut);
    j.cut_position = cut;
    j.cut_score = cut_score;
  }

  std::vector<int64_t> differ;
  std::set_symmetric_difference(E.begin(), E.end(), R.begin(), R.end(), std::back_inserter(differ));
  std::vector<int64_t> visible_differ;
  for (int64_t p : differ) {
    if (p >= x.k_start && p <= x.q_pos) visible_differ.push_back(p);
  }
  const std::vector<float> differ_scores = scores_of(visible_differ);
  size_t next_score = 0;
  for (int64_t p : differ) {
    RefDifference d;
    d.position = p;
    d.in_ref = !holds(E, p);
    if (p < x.k_start || p > x.q_pos) {
      d.why = "outside the query's visible range [" + std::to_string(x.k_start) + ", " + std::to_string(x.q_pos) + "]";
      j.differences.push_back(std::move(d));
      continue;
    }
    const float score = differ_scores[next_score++];
    d.score = score;
    if (blocks) {
      d.block = p / B;
      if (blocks->eligible(d.block)) d.block_J = blocks->J(d.block);
    }
    auto block_text = [&] { return "block " + std::to_string(d.block) + " (J " + number(*d.block_J) + ")"; };
    if (holds(E2, p) == d.in_ref) {
      // The rule on topk_ref's near-tied blocks agrees with topk_ref here.
      d.cls = RefClass::BlockFlip;
      d.why = holds(flipped, d.block)
                  ? block_text() + " kept by one side only, its J within the tolerance of the cut block's"
                  : "displaced within kept blocks by the tokens of a block kept by one side only";
    } else if (blocks && d.in_ref && !holds(kept2, d.block)) {
      d.why = holds(over_budget, d.block) ? block_text() + " is near the cut, but topk_ref keeps more blocks than the rule allows"
                                          : block_text() + " is not among the blocks the rule keeps";
    } else {
      if (rule.method == Method::Block) {
        d.why = "block-sparse keeps every visible token of the blocks it keeps";
      } else if (!cut) {
        d.why = "the rule keeps every candidate";
      } else if (score == cut_score) {
        d.cls = RefClass::TieSwap;
        d.why = "score equals the cut's exactly";
      } else if (near_tie(score, abs_of(p), cut_score, cut_abs, l.tolerance)) {
        d.cls = RefClass::NearTie;
        d.why = "score within the tolerance of the cut's";
      } else {
        d.why = "score " + number(score) + ", the cut's " + number(cut_score);
      }
      if (d.cls == RefClass::Unexplained && blocks && !d.in_ref && blocks->forced(d.block) &&
          std::none_of(R.begin(), R.end(), [&](int64_t s) { return s / B == d.block; })) {
        d.why = "its block " + std::to_string(d.block) + " is forced, and topk_ref holds none of its tokens";
      }
    }
    j.differences.push_back(std::move(d));
  }
  unpaired_ties_unexplained(j.differences);
  for (const auto& d : j.differences) {
    switch (d.cls) {
      case RefClass::TieSwap: ++j.tie_swaps; break;
      case RefClass::NearTie: ++j.near_ties; break;
      case RefClass::BlockFlip: ++j.block_flips; break;
      case RefClass::Unexplained: ++j.unexplained; break;
    }
  }
  return j;
}

}  // namespace hisa
