#pragma once
// One interface for selection; the CPU engine (cpu_engine.cpp) and, when built, the CUDA engine
// (cuda/cuda_engine.cu) implement it. An engine audits (DSA, HISA and block-sparse side by side), selects with
// one method, and scores what `hisa sweep` needs, and it reports where its time went.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "io/dump_model.hpp"
#include "select/blocks.hpp"
#include "select/config.hpp"
#include "select/query_audit.hpp"

namespace hisa {

// A pooled-key variant the sweep scores J for: block size and pooling precision.
struct PoolVariant {
  int64_t block_size = 128;
  PoolPrecision precision = PoolPrecision::Fp32;
};

// What `hisa sweep` needs of one query: DSA's selection and, per pool variant, J over its eligible blocks. The
// ranking and the curves are computed from these on the host (analysis/sweep_points.hpp), so a score row never
// leaves the engine.
struct SweepScores {
  int64_t q_pos = 0, k_start = 0;
  std::vector<int64_t> flat;           // DSA's selection, ascending
  std::vector<std::vector<float>> J;   // per pool variant: J of the eligible blocks, index 0 = ⌊k_start/B⌋
};

// What every engine's sweep does alike: each variant's pooled keys (variants in parallel; vector order = variant
// order; threads <= 0: OpenMP's default), and the batch's SweepScores with each query's position fields and one
// empty J per variant.
std::vector<PooledKeys> pool_variants(const LayerKeys& keys, std::span<const PoolVariant> variants, int threads = 0);
void start_sweep_scores(const QueryBatch& batch, size_t variants, std::vector<SweepScores>& out);

// Where an engine spent its time since it was made, in seconds. GPU stages are timed by CUDA events (summed over
// query chunks), host stages by the host clock. An engine leaves at 0 the stages it does not time apart (the
// CPU engine interleaves an audit's stages per query chunk on every core, so there only `calls` and `pooling`
// are measured; its sweep times token scores, with DSA's top-k, and block scores).
struct StageTimes {
  double calls = 0;         // audit(), select() and sweep(), whole calls
  double pooling = 0;       // pooled keys and their upload (set_layer, set_sweep_layer)
  double token_scores = 0;  // token scores I[t,s]
  double block_scores = 0;  // pooled block scores J
  double block_choice = 0;  // HISA's kept blocks and the token stage's segment lists
  double topk = 0;          // exact top-k
  double masses = 0;        // softmax masses and per-block best scores (audit)
  // CUDA, timed on the host: the operands' exactness checks and conversions and their copies to the GPU, and the
  // copies of results back (after the kernels they wait for have finished). 0 on the CPU.
  double transfers = 0;
};
StageTimes operator+(const StageTimes& a, const StageTimes& b);
StageTimes operator-(const StageTimes& a, const StageTimes& b);

class SelectionEngine {
 public:
  virtual ~SelectionEngine() = default;
  virtual std::string name() const = 0;

  // Hands the engine a layer's keys (kept by reference until the next set_layer or set_sweep_layer) and the
  // selection rule, for audit() and select().
  virtual void set_layer(const LayerKeys& keys, const SelectionConfig& config) = 0;
  // Flat, HISA and block-sparse selections and softmax masses for every query of the batch.
  virtual void audit(const QueryBatch& batch, std::vector<QueryAudit>& out) = 0;
  // One method's selections, ascending positions, for every query of the batch.
  virtual void select(const QueryBatch& batch, Method method, std::vector<std::vector<int64_t>>& out) = 0;
  // For each query of the batch, an upper bound on every token score in each of its eligible blocks (index 0 =
  // block ⌊k_start/B⌋, B the config's block size): select/bounds.hpp's BlockBounds::score_bound, which
  // certificates and explanations compare with scores. The CPU engine evaluates exactly that; the CUDA engine
  // the same formulas where the operands are, in its own summation order (bounds either way; they may differ from
  // the CPU's in the last bit).
  virtual void block_bounds(const QueryBatch& batch, std::vector<std::vector<float>>& out) = 0;
  // Row i's scores I[t,s] for s = k_start .. q_pos (what `hisa explain` draws).
  virtual void score_row(const QueryBatch& batch, int64_t i, std::vector<float>& out) = 0;
  // Row i's scores at `positions` (any order, any key row), each summed in one order whatever the positions, so
  // that equal operands give equal scores; with magnitudes, also Σ_h |w|·Σ_d |q·k|·|scale| of each, in double
  // (near ties). pooled: the positions are blocks of the config's pooled keys and the scores their J. What judging
  // topk_ref re-computes (metrics/ref_judge.hpp): the CPU engine as score_positions and abs_score; the CUDA engine
  // where the operands are, in its own summation order.
  virtual void score_positions(const QueryBatch& batch, int64_t i, std::span<const int64_t> positions, bool pooled,
                               std::vector<float>& scores, std::vector<double>* magnitudes) = 0;

  // Hands over a layer's keys (kept by reference as for set_layer), k and the pooled-key variants, for sweep().
  // DSA's sets and J come from the same chunks and scoring calls as audit()'s, so they are audit()'s bit for bit.
  // An engine is prepared for one or the other: audit() and select() after set_sweep_layer, or sweep() after
  // set_layer, throw std::logic_error.
  virtual void set_sweep_layer(const LayerKeys& keys, int64_t topk, std::span<const PoolVariant> variants) = 0;
  virtual void sweep(const QueryBatch& batch, std::vector<SweepScores>& out) = 0;

  virtual StageTimes times() const = 0;
  // Whether the last audit(), select() or sweep() took some scores with less than fp32 accumulation (the CUDA
  // engine on the fp8 tensor cores, --fp8-mma): comparisons with the CPU then need kFp8MmaParityTolerance.
  virtual bool inexact_scores() const { return false; }
};

// threads <= 0: OpenMP's default. Results never depend on the thread count.
std::unique_ptr<SelectionEngine> make_cpu_engine(int threads);

// "cpu", "cuda" or "auto" (the GPU when one is usable, else the CPU with a note on stderr). fp8_mma: a CUDA
// engine scores fp8 operands on the fp8 tensor cores (faster, not exact; an OptionError with "cpu").
std::unique_ptr<SelectionEngine> make_engine(const std::string& device, int threads, bool fp8_mma = false);

// The devices a run's workers use, one worker each: CUDA device indices, or {-1} for one CPU worker.
// device is "cpu", "cuda" or "auto" as for make_engine; gpus is "" (the first usable GPU), "all", or a list of
// indices such as "0,2,3" (OptionError for a device that does not exist or cannot run this build's kernels,
// and with device "cpu"). fp8_mma with "cpu" is an OptionError; when "auto" falls back to the CPU, its note says
// that the scores are then exact, and a GPU without the fp8 kernel gets a note on stderr saying so.
std::vector<int> resolve_devices(const std::string& device, const std::string& gpus, bool fp8_mma = false);
// Whether fp8_mma, when asked, takes effect on one entry of resolve_devices(): a GPU whose build has the fp8
// tensor-core kernel (used there for dumps of fp8 values with 32 or 64 padded heads and D <= 128); never on
// the CPU.
bool fp8_mma_in_effect(int device, bool fp8_mma);
// The name the engine for one entry of resolve_devices() reports ("cpu", "cuda (<GPU name>)", "cuda (<GPU
// name>, fp8 tensor cores)" when fp8_mma is asked and available), without making it.
std::string engine_name_on(int device, bool fp8_mma = false);
// The kind of engine on one entry of resolve_devices(), the same for every GPU: "cpu", "cuda" or "cuda (fp8
// tensor cores)". It names a run whose workers may sit on different GPUs, and keeps checkpoints of different
// kinds apart.
std::string engine_kind_on(int device, bool fp8_mma = false);
// The engine for one entry of resolve_devices(): the CPU engine for -1, else the CUDA engine on that GPU.
std::unique_ptr<SelectionEngine> make_engine_on(int device, int threads, bool fp8_mma = false);

}  // namespace hisa
