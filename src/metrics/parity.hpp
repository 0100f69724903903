#pragma once
// Parity of two engines' selections on the same query (docs/cuda.md, "Parity"): differences are allowed
// only between near-tied candidates. A position in got △ want is explained when its reference score s(p) lies
// within tolerance · (|p| + |c|) (kParityTolerance unless said) of the reference cut-off score s(c) — c the lowest-ranked position of
// `want` — where |p| is the score computed with absolute values everywhere, Σ_h |w|·Σ_d |q·k| · |scale|, the
// magnitude that bounds how far any fp32 summation order can move the score.
#include <cmath>
#include <cstdint>
#include <functional>
#include <span>

#include "io/dump_model.hpp"
#include "select/blocks.hpp"
#include "select/engine.hpp"
#include "select/score_cpu.hpp"  // abs_score

namespace hisa {

inline constexpr double kParityTolerance = 1e-5;
// The tolerance when the CUDA engine scores fp8 operands on the fp8 tensor cores (--fp8-mma): Hopper's fp8 MMA
// adds products with a narrower accumulator than fp32 (docs/cuda.md, "fp8 tensor cores").
inline constexpr double kFp8MmaParityTolerance = 1.0 / 1024;
inline double parity_tolerance(bool fp8_mma) { return fp8_mma ? kFp8MmaParityTolerance : kParityTolerance; }

// The near-tie rule above: scores a and b (with magnitudes abs_a, abs_b) lie within tolerance · (|a| + |b|).
inline bool near_tie(double a, double abs_a, double b, double abs_b, double tolerance) {
  return std::fabs(a - b) <= tolerance * (abs_a + abs_b);
}

// The positions of got △ want (both ascending) that are not near-ties by the rule above, plus any difference
// in size; 0 when they are equal.
int64_t unexplained_differences(std::span<const int64_t> got, std::span<const int64_t> want,
                                const std::function<double(int64_t)>& score, const std::function<double(int64_t)>& abs,
                                double tolerance = kParityTolerance);

// One query's comparison of an engine's audit (`got`, e.g. the CUDA engine's) with the CPU engine's (`want`),
// both on the same layer and config: DSA's tokens; HISA's kept blocks, and HISA's tokens when the blocks agree.
// Blocks are judged by the CPU's J with the same rule (|J| from the pooled keys).
struct QueryParity {
  bool flat_differ = false, hisa_differ = false;
  int64_t unexplained = 0;  // differing tokens (DSA, HISA) and blocks that are not near-ties
};
QueryParity compare_query(const QueryAudit& got, const QueryAudit& want, const QueryBatch& b, int64_t i, const LayerKeys& keys,
                          const PooledKeys& pooled, const SelectionConfig& config, double tolerance = kParityTolerance);

}  // namespace hisa
