#pragma once
// What `hisa sweep` needs from a scoring backend, per query: DSA's selection and, for every pooled-key
// variant (block size, pooling precision), the block scores J over the query's eligible blocks. Ranking
// and the curves are computed from these on the host (select/sweep_curve.hpp), so a GPU backend only has to
// implement this interface; it never ships a full score row back.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "io/dump_model.hpp"
#include "select/config.hpp"

namespace hisa {

struct PoolVariant {
  int64_t block_size = 128;
  PoolPrecision precision = PoolPrecision::Fp32;
};

struct SweepScores {
  int64_t q_pos = 0, k_start = 0;
  std::vector<int64_t> flat;           // DSA's selection, ascending
  std::vector<std::vector<float>> J;   // per pool variant: J of the eligible blocks, index 0 = ⌊k_start/B⌋
};

// Wall-clock seconds a backend spent, by phase, since it was made.
struct ScoringTimes {
  double pooling = 0;       // pooled keys of every variant
  double token_scores = 0;  // every visible score of a query and DSA's top-k
  double block_scores = 0;  // J of every variant
};

class SweepScorer {
 public:
  virtual ~SweepScorer() = default;
  virtual std::string name() const = 0;
  // Hands over a layer's keys (kept by reference until the next call), k and the pooled-key variants.
  virtual void set_layer(const LayerKeys& keys, int64_t topk, std::span<const PoolVariant> variants) = 0;
  virtual void score(const QueryBatch& batch, std::vector<SweepScores>& out) = 0;
  virtual ScoringTimes times() const = 0;
};

// The CPU backend: the CPU engine's chunking, scoring and top-k, so DSA's selection and J are the engine's
// bit for bit. threads <= 0: OpenMP's default; results never depend on the thread count.
std::unique_ptr<SweepScorer> make_cpu_sweep_scorer(int threads);
// The backend for one entry of resolve_devices() (select/engine.hpp): the CPU for -1, else that GPU.
std::unique_ptr<SweepScorer> make_sweep_scorer_on(int device, int threads, bool fp8_mma = false);

}  // namespace hisa
