#pragma once
// Host-side launchers of the selection kernels (score.cu, topk.cu). Host-only header: plain pointers to
// device memory and a stream, no device code, no hisa_core types, so hisa_cuda depends on nothing else of
// the project. Positions on the device are int32 (the engine checks L < 2^31).
#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

namespace hisa::cuda {

// How key and query values are stored on the device for scoring.
//  F32:  fp32 values, scored on CUDA cores (any H, D).
//  BF16, F16: the exact 16-bit codes (uint16 bits) of values that the engine checked are representable,
//        padded to H' = round_up(H, 8) heads and D' = round_up(D, 16) dims with zeros (and zero weights for
//        the padded heads), scored on tensor cores (mma.sync m16n8k16 or wgmma, fp32 accumulation); D' <= 128.
//  BF16x3: keys that are not exact in bf16 (HISA's fp32 pooled means, fp32 dumps) against queries that are:
//        each key row is split into three bf16 rows whose sum is the fp32 value exactly (hi = bf16(v),
//        mid = bf16(v - hi), lo = v - hi - mid), stored as one row [hi | mid | lo] of 3·D' codes; queries are
//        bf16 codes [queries, H', D'] as for BF16, and the kernel reads each query row three times, so one
//        wgmma product over K = 3·D' sums products that are exact in fp32 (the tensor core's internal
//        rounding of partial sums, and of products too small to be normal, aside, as for BF16). dim is then
//        3·D'. Only on the wgmma kernel.
//  E4M3: fp8 e4m3fn codes (one byte each) of values the engine checked are e4m3 values, padded to H' heads
//        and 128 dims (dim = 128, in bytes), scored on Hopper's fp8 tensor cores (wgmma k32, fp32 output).
//        Not exact: the fp8 MMA adds products with a narrower internal accumulator than fp32, so scores move
//        by up to about 2^-13 of the summed magnitudes (docs/cuda.md, "fp8 tensor cores"). Only on request (the
//        engine's fp8_mma option), only on the wgmma kernel.
enum class ValueType { F32, BF16, F16, BF16x3, E4M3 };

// The kernel a score launch runs. The engine chooses it once per layer and kind of keys (cuda_scoring.hpp,
// choose_score_kernel); launch_score runs what it is told, after checking that the kernel takes the launch.
//  CudaCores: F32 on CUDA cores, 64-key tiles.
//  MmaSync:   BF16 or F16 on tensor cores with mma.sync m16n8k16, 128-key tiles.
//  Wgmma:     BF16, F16, BF16x3 or E4M3 on Hopper's warpgroup MMA (sm_90a), 128-key tiles (BF16x3: 64).
enum class ScoreKernel { CudaCores, MmaSync, Wgmma };
const char* score_kernel_name(ScoreKernel k);
const char* value_type_name(ValueType t);

// Keys of one scoring pass are processed in 64-key units; a mask (optional) says per query which units to
// score. Bit u - unit_base of query i's mask words.
inline constexpr int kMaskUnit = 64;
inline constexpr int kMaxTensorCoreDim = 128;

// I[i, s] = scale[s] · Σ_h w[i,h] · ReLU(q[i,h,:] · key[s,:]) for s ∈ [lo[i], hi[i]] (and, with a mask, in the
// query's masked units), written to out[i * out_stride + (s - out_base)]; NaN is written as -inf. Nothing
// else of out is touched. range_lo/range_hi bound every query's [lo, hi] (the launch covers those keys).
struct ScoreLaunch {
  ValueType type = ValueType::F32;
  ScoreKernel kernel = ScoreKernel::CudaCores;
  const void* keys = nullptr;  // [key_count, dim] of type
  const float* scales = nullptr;  // [key_count]
  int key_count = 0;
  const void* q = nullptr;     // [queries, heads, dim] of type
  const float* w = nullptr;    // [queries, heads]
  int queries = 0, heads = 0, dim = 0;  // padded values for BF16/F16
  const int* lo = nullptr;     // [queries]
  const int* hi = nullptr;     // [queries]
  int range_lo = 0, range_hi = -1;
  const uint32_t* mask = nullptr;  // [queries, mask_words] or null (every unit)
  int mask_words = 0;
  int unit_base = 0;           // must be (range_lo / 128) * 2
  float* out = nullptr;
  int64_t out_stride = 0;
  int out_base = 0;
  // Work lists (optional; tensor-core path only, the fp32 path scans every query): per tile t of the launch
  // (score_tile_keys() keys each, from (range_lo / 128) * 128 on) the queries list_rows[list_offsets[t] ..
  // list_offsets[t+1]) that need it, taken rows_per_cta at a time by CTAs cta_offsets[t] .. cta_offsets[t+1]
  // - 1. cta_bound CTAs are launched (at least cta_offsets[tiles]; the others exit at once), so sparse work
  // needs no host round trip.
  const int* list_offsets = nullptr;
  const int* list_rows = nullptr;
  const int* cta_offsets = nullptr;
  int rows_per_cta = 0;
  int cta_bound = 0;
  int list_tile_keys = 0;  // the tile size the lists were built for: score_tile_keys() of this launch
};
// Runs a.kernel; CudaError when that kernel does not take the launch's type and shape.
void launch_score(const ScoreLaunch& a, cudaStream_t stream);
// Keys per CTA tile of a kernel for a type: 64 (CudaCores), 128 (MmaSync, Wgmma), 64 (Wgmma with BF16x3).
// Tiles start at (range_lo / 128) * 128.
int score_tile_keys(ScoreKernel kernel, ValueType type);
inline int score_tile_keys(const ScoreLaunch& a) { return score_tile_keys(a.kernel, a.type); }
inline constexpr int kFp8Dim = 128;

// What a device offers the scoring kernels, read once per engine rather than per launch.
struct ScoreDevice {
  // The wgmma kernel runs here: this build has sm_90a machine code and the device has compute capability 9.0.
  bool wgmma = false;
  // And it is used for BF16 and F16 too (false with HISA_NO_WGMMA=1 in the environment, which keeps those on
  // mma.sync to compare the two kernels; BF16x3 and E4M3 have no other kernel).
  bool wgmma_16bit = false;
};
ScoreDevice score_device(int device);
// Whether the wgmma kernel takes a launch of this type with heads_padded (H') heads and dim units per row (the
// launch's dim: D' for BF16/F16, 3·D' for BF16x3, 128 for E4M3): H' in {32, 64}, D' in {64, 128}.
bool wgmma_takes(ValueType type, int heads_padded, int dim);
// The mask of a launch covers whole 128-key tiles: units [mask_unit_base, mask_unit_base + mask_units).
inline int mask_unit_base(int range_lo) { return (range_lo / (2 * kMaskUnit)) * 2; }
inline int mask_units(int range_lo, int range_hi) { return (range_hi / (2 * kMaskUnit)) * 2 + 2 - mask_unit_base(range_lo); }
inline int mask_words(int range_lo, int range_hi) { return (mask_units(range_lo, range_hi) + 31) / 32; }

// Exact top-k per row over a list of position segments [seg[2j], seg[2j+1]] (inclusive, ascending, disjoint)
// for j in [seg_offsets[r], seg_offsets[r+1]), scores read from scores[r * stride + (s - base)].
// Order: higher score first, equal scores by lower position (+0 == -0; scores must not be NaN). Writes the
// chosen positions ascending, with their scores, to out_pos/out_score[r * k + j] and their number (min(n, k))
// to out_count[r]. Deterministic: no result depends on thread scheduling.
struct TopkLaunch {
  const float* scores = nullptr;
  int64_t stride = 0;
  int base = 0;
  const int* segments = nullptr;
  const int* seg_offsets = nullptr;  // [rows + 1]
  int rows = 0;
  int k = 0;
  int* out_pos = nullptr;
  float* out_score = nullptr;
  int* out_count = nullptr;
};
void launch_topk(const TopkLaunch& a, cudaStream_t stream);

// Per row: M = max over the visible keys [lo, hi], then Σ e^{I - M} in double over the visible keys, over the
// positions of the lists a and b (rows of width `width`, `count` entries each; null lists give 0), and over
// segment list c. out_max[r] = M; out_mass[r*4 + {0,1,2,3}] = visible, a, b, c. Fixed reduction order.
struct MassLaunch {
  const float* scores = nullptr;
  int64_t stride = 0;
  int base = 0;
  const int* lo = nullptr;
  const int* hi = nullptr;
  int rows = 0;
  const int* a_pos = nullptr;
  const int* a_count = nullptr;
  const int* b_pos = nullptr;
  const int* b_count = nullptr;
  int width = 0;
  const int* c_segments = nullptr;
  const int* c_offsets = nullptr;
  float* out_max = nullptr;
  double* out_mass = nullptr;
};
void launch_masses(const MassLaunch& a, cudaStream_t stream);

// Per row r and each of its eligible blocks j (block ⌊lo[r]/B⌋ + j, up to ⌊hi[r]/B⌋): the best score among the
// block's visible keys [max(bB, lo), min(bB + B - 1, hi)], written to out[r * max_blocks + j].
struct BlockMaxLaunch {
  const float* scores = nullptr;
  int64_t stride = 0;
  int base = 0;
  const int* lo = nullptr;
  const int* hi = nullptr;
  int rows = 0;
  int block_size = 0;
  int max_blocks = 0;
  float* out = nullptr;
};
void launch_block_max(const BlockMaxLaunch& a, cudaStream_t stream);

// BlockBounds' per-block summary (select/bounds.hpp) of fp32 keys [key_count, dim] with their scales: the box
// per dimension (lo, hi, centre: [blocks, dim], bit for bit BlockBounds'), the ball's radius and the largest key
// norm, and the extreme scales ([blocks] each). block_bounds.cu.
struct BlockSummary {
  float* lo = nullptr;
  float* hi = nullptr;
  float* centre = nullptr;
  double* radius = nullptr;
  double* max_norm = nullptr;
  float* scale_min = nullptr;
  float* scale_max = nullptr;
};
struct BlockSummaryLaunch : BlockSummary {
  const float* keys = nullptr;
  const float* scales = nullptr;
  int64_t key_count = 0, blocks = 0;
  int dim = 0, block_size = 0;
};
void launch_block_summary(const BlockSummaryLaunch& a, cudaStream_t stream);

// Per row r (fp32 q [rows, heads, dim], w [rows, heads]) and each of its eligible blocks (block ⌊lo[r]/B⌋ + j
// up to ⌊hi[r]/B⌋, fewer than max_blocks): BlockBounds::score_bound, into out[offsets[r] + j]. The same
// formulas in double, summed over heads in another order: a bound as safe, equal to the CPU's but perhaps in
// the last bit.
struct BlockBoundLaunch {
  BlockSummary s;
  const float* q = nullptr;
  const float* w = nullptr;
  int rows = 0, heads = 0, dim = 0;
  const int* lo = nullptr;
  const int* hi = nullptr;
  const int64_t* offsets = nullptr;
  int block_size = 0, max_blocks = 0;
  float* out = nullptr;
};
void launch_block_bounds(const BlockBoundLaunch& a, cudaStream_t stream);

// One query's fp32 scores (q [heads, dim], w [heads]) against keys s = positions[n] (positions null: from + n),
// n < count: out[n] = scale[s] · Σ_h w[h] · ReLU(q[h]·key[s]), NaN as -inf (ScoreLaunch's score, summed in its
// own order, the same for every key); with magnitudes, also Σ_h |w[h]| · Σ_d |q[h,d]·key[s,d]| · |scale[s]| in
// double.
struct KeyScoresLaunch {
  const float* q = nullptr;
  const float* w = nullptr;
  int heads = 0, dim = 0;
  const float* keys = nullptr;
  const float* scales = nullptr;
  const int64_t* positions = nullptr;
  int64_t from = 0, count = 0;
  float* out = nullptr;
  double* magnitudes = nullptr;
};
void launch_key_scores(const KeyScoresLaunch& a, cudaStream_t stream);

// Whether this build's kernels can run on `device` (a compatible SASS or PTX image is embedded): empty when
// they can, else the CUDA error that loading them gives. Never throws.
std::string kernel_image_problem(int device);

}  // namespace hisa::cuda
