#include "select/certified.hpp"

#include <omp.h>

#include <algorithm>
#include <numeric>
#include <queue>

#include "select/blocks.hpp"
#include "select/score_cpu.hpp"
#include "select/topk.hpp"

namespace hisa {

namespace {

struct Candidate {
  float score;
  int64_t position;
};

// Heap order: the worst candidate (by the top-k order) on top, so it is the one a better token evicts.
struct WorstOnTop {
  bool operator()(const Candidate& a, const Candidate& b) const {
    return ranks_before(a.score, a.position, b.score, b.position);
  }
};

void select_one(const LayerKeys& keys, const BlockBounds& bounds, const QueryBatch& b, int64_t i, int64_t topk,
                std::vector<int64_t>& out, int64_t& scored) {
  const int64_t B = bounds.block_size(), ks = b.k_start[size_t(i)], qp = b.q_pos[size_t(i)];
  const BlockSpan span = eligible_blocks(ks, qp, B);
  std::vector<float> bound(size_t(span.size()));
  for (int64_t blk = span.first; blk <= span.last; ++blk) bound[size_t(blk - span.first)] = bounds.score_bound(b, i, blk);
  std::vector<int64_t> order(size_t(span.size()));
  std::iota(order.begin(), order.end(), span.first);
  std::sort(order.begin(), order.end(), [&](int64_t x, int64_t y) {
    return ranks_before(bound[size_t(x - span.first)], x, bound[size_t(y - span.first)], y);
  });
  std::priority_queue<Candidate, std::vector<Candidate>, WorstOnTop> best;
  std::vector<float> scores(static_cast<size_t>(B));
  const ScoreInputs one{b.q_row(i, 0), b.w_row(i), 1, b.heads, b.dim};
  scored = 0;
  for (int64_t blk : order) {
    // A block whose bound is below the k-th score holds no token that can enter: the equal case must
    // still be scored, since a tie at a lower position would win.
    if (int64_t(best.size()) == topk && bound[size_t(blk - span.first)] < best.top().score) break;
    const TokenRange visible = visible_in_block(blk, B, ks, qp);
    const int64_t from = visible.first, n = visible.size();
    score_keys(one, keys.row(from), keys.k_scale.data() + from, n, scores.data(), 0);
    scored += n;
    for (int64_t j = 0; j < n; ++j) {
      const Candidate c{scores[size_t(j)], from + j};
      if (int64_t(best.size()) < topk) {
        best.push(c);
      } else if (ranks_before(c.score, c.position, best.top().score, best.top().position)) {
        best.pop();
        best.push(c);
      }
    }
  }
  out.clear();
  while (!best.empty()) out.push_back(best.top().position), best.pop();
  std::sort(out.begin(), out.end());
}

}  // namespace

CertifiedResult certified_select(const LayerKeys& keys, const BlockBounds& bounds, const QueryBatch& batch,
                                 int64_t topk, int threads) {
  CertifiedResult r;
  r.selections.resize(size_t(batch.count));
  r.keys_scored.assign(size_t(batch.count), 0);
#pragma omp parallel for schedule(dynamic, 4) num_threads(threads > 0 ? threads : omp_get_max_threads())
  for (int64_t i = 0; i < batch.count; ++i) {
    select_one(keys, bounds, batch, i, topk, r.selections[size_t(i)], r.keys_scored[size_t(i)]);
  }
  return r;
}

}  // namespace hisa
