#pragma once
// One interface for selection; the CPU engine and (when built) the CUDA engine implement it.
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io/dump_model.hpp"
#include "select/config.hpp"

namespace hisa {

// Everything the audit needs about one query, computed from one set of scores so that the comparisons
// between DSA, HISA and block-sparse are never disturbed by rounding.
struct QueryAudit {
  int64_t q_pos = 0, k_start = 0;
  int64_t visible = 0;               // q_pos - k_start + 1
  std::vector<int64_t> flat;         // DSA's selection, ascending
  std::vector<float> flat_scores;    // I[t,s] for each position in `flat`
  std::vector<int64_t> hisa;         // HISA(B, m), ascending
  std::vector<float> hisa_scores;    // I[t,s] for each position in `hisa`
  std::vector<int64_t> hisa_blocks;  // blocks HISA kept, ascending
  // Per eligible block (index 0 = block ⌊k_start/B⌋): pooled score J, best visible token score, and an
  // upper bound on every token score in the block (select/bounds.hpp). Used to explain and certify.
  std::vector<float> block_scores, block_best, block_bounds;
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

class SelectionEngine {
 public:
  virtual ~SelectionEngine() = default;
  virtual std::string name() const = 0;
  // Hands the engine a layer's keys (kept by reference until the next call) and the selection options.
  virtual void set_layer(const LayerKeys& keys, const SelectionConfig& config) = 0;
  // Flat, HISA and block-sparse selections and softmax masses for every query of the batch.
  virtual void audit(const QueryBatch& batch, std::vector<QueryAudit>& out) = 0;
  // One method's selections, ascending positions, for every query of the batch.
  virtual void select(const QueryBatch& batch, Method method, std::vector<std::vector<int64_t>>& out) = 0;
  // Whether the last audit() or select() took some scores with less than fp32 accumulation (the CUDA engine on
  // the fp8 tensor cores, --fp8-mma): comparisons with the CPU then need kFp8MmaParityTolerance.
  virtual bool inexact_scores() const { return false; }
};

// threads <= 0: OpenMP's default. Results never depend on the thread count.
std::unique_ptr<SelectionEngine> make_cpu_engine(int threads);

}  // namespace hisa

namespace hisa {
// "cpu", "cuda" or "auto" (the GPU when one is usable, else the CPU with a note on stderr). fp8_mma: a CUDA
// engine scores fp8 operands on the fp8 tensor cores (faster, not exact; UsageError with "cpu").
std::unique_ptr<SelectionEngine> make_engine(const std::string& device, int threads, bool fp8_mma = false);

// The devices a run's workers use, one worker each: CUDA device indices, or {-1} for one CPU worker.
// device is "cpu", "cuda" or "auto" as for make_engine; gpus is "" (the first usable GPU), "all", or a list of
// indices such as "0,2,3" (UsageError for a device that does not exist or cannot run this build's kernels,
// and with --device cpu). fp8_mma with "cpu" is a UsageError; when "auto" falls back to the CPU, its note says
// that the scores are then exact, and a GPU without the fp8 kernel gets a note on stderr saying so.
std::vector<int> resolve_devices(const std::string& device, const std::string& gpus, bool fp8_mma = false);
// Whether --fp8-mma, when asked (fp8_mma), takes effect on one entry of resolve_devices(): a GPU whose build has
// the fp8 tensor-core kernel (used there for dumps of fp8 values with 32 or 64 padded heads and D <= 128); never
// on the CPU.
bool fp8_mma_in_effect(int device, bool fp8_mma);
// The name the engine for one entry of resolve_devices() reports ("cpu", "cuda (<GPU name>)", "cuda (<GPU
// name>, fp8 tensor cores)" when fp8_mma is asked and available), without making it.
std::string engine_name_on(int device, bool fp8_mma = false);
// The engine for one entry of resolve_devices(): the CPU engine for -1, else the CUDA engine on that GPU.
std::unique_ptr<SelectionEngine> make_engine_on(int device, int threads, bool fp8_mma = false);
}  // namespace hisa
