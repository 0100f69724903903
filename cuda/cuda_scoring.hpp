#pragma once
// The CUDA engine's scoring context (cuda_engine.cu holds one): one device and stream, the batch's queries and
// visible ranges, the plan of query chunks sized from the free device memory, the choice of scoring kernel, and
// the scoring and top-k launches with CUDA-event stage times. Host-only header.
#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cuda/block_choice.hpp"
#include "cuda/device_buffer.hpp"
#include "cuda/kernels.hpp"
#include "cuda/operands.hpp"
#include "io/dump_model.hpp"

namespace hisa::cuda {

inline constexpr int64_t kMaxChunkQueries = 4096;

// The kernel and element type one kind of keys is scored with against one batch's queries.
struct KernelChoice {
  ValueType type = ValueType::F32;
  ScoreKernel kernel = ScoreKernel::CudaCores;
  int tile_keys() const { return score_tile_keys(kernel, type); }
  bool operator==(const KernelChoice&) const = default;
};

// The one place the scoring kernel is chosen (docs/cuda.md has it as a table). With fp8_mma (opt-in), the fp8
// tensor cores when both sides are e4m3 values and the device and shape allow it. Otherwise tensor cores when both
// sides are exact in one 16-bit type and D fits (wgmma where the device offers it for the shape, else mma.sync),
// or when the queries are exact in bf16 and the keys split into three bf16 parts (BF16x3, wgmma only); fp32 CUDA
// cores otherwise.
KernelChoice choose_score_kernel(const Exactness& keys, const Exactness& queries, int64_t heads, int64_t dim,
                                 bool fp8_mma, const ScoreDevice& device);

// The type, kernel, keys (with their scales), queries and weights of a scoring launch of the batch's queries
// [first, first + count) against `keys`, in the forms the chosen kernel takes (uploaded when not yet done).
ScoreLaunch operands_for(const KernelChoice& choice, KeyStore& keys, QueryStore& queries, const QueryBatch& batch,
                         int64_t first, int64_t count, cudaStream_t s);

struct Chunk {
  int64_t first = 0, count = 0;  // queries [first, first + count) of the batch
  int lo = 0, hi = 0;            // keys [lo, hi] covering every visible range of the chunk
  int64_t stride() const { return round_up(int64_t(hi) - lo + 1, 32); }
};

// GPU stage times from reusable event pairs, added to their targets (ms) once the stream has been synchronised.
class StageTimer {
 public:
  void begin(cudaStream_t s, double* target);
  void end(cudaStream_t s);
  void collect();
  // Forgets the pairs recorded since the last collect() (the stream must have passed them).
  void discard() { n_ = 0; }

 private:
  struct Pair {
    Event start, stop;
    double* target = nullptr;
  };
  std::vector<std::unique_ptr<Pair>> pool_;
  size_t n_ = 0;
};

// Per batch: set_batch(), then plan() and, per chunk, the launches. Every launch is on stream() and, where it
// takes a `stage`, timed into *stage (ms) by timer().
class CudaScoring {
 public:
  // fp8_mma: score e4m3 operands on the fp8 tensor cores (not exact; kernels.hpp ValueType::E4M3).
  CudaScoring(int device, bool fp8_mma);
  const std::string& name() const { return name_; }
  int device() const { return device_; }
  cudaStream_t stream() const { return stream_->get(); }
  void synchronize() const { stream_->synchronize(); }
  void use_device() const;
  StageTimer& timer() { return timer_; }
  // Host milliseconds spent choosing the kernel (the exactness checks) and converting and uploading operands.
  double transfers_ms() const { return transfers_ms_; }

  // Checks the batch against the layer's keys and uploads each query's visible range [k_start, q_pos].
  // assume_bf16: QueryStore::reset's (launches may throw QueriesOffBf16Grid).
  void set_batch(const QueryBatch& b, int64_t key_count, bool assume_bf16 = false);
  // The batch's visible ranges on the device, one entry per query.
  const int* visible_lo() const { return lo_.data(); }
  const int* visible_hi() const { return hi_.data(); }
  // The batch's queries in the forms launches take.
  QueryStore& queries() { return queries_; }
  // Whether a launch since the last set_batch() scored on the fp8 tensor cores.
  bool used_fp8_mma() const { return used_fp8_mma_; }

  // Each query's eligible blocks [k_start / B, q_pos / B], uploaded to lo/hi.
  void upload_block_ranges(int64_t B, DeviceArray<int>& lo, DeviceArray<int>& hi);
  // Consecutive queries per chunk, as many as the device memory budget allows (half of what is free now plus
  // what is already held for chunks, at most max_chunk_bytes when not 0): a score row per query when
  // token_scores, J rows of block size at least smallest_block, top-k output, and the GPU block choice's
  // buffers for kept_blocks (m) blocks per query when not 0. held_bytes: what the caller holds for chunks.
  std::vector<Chunk> plan(const QueryBatch& b, bool token_scores, int64_t smallest_block, int64_t topk,
                          size_t max_chunk_bytes, size_t held_bytes, int64_t kept_blocks = 0);

  // Keys per tile of the kernel that scores the chunk's queries against `keys` (work lists are built for it).
  int tile_keys(KeyStore& keys);
  // Starts the upload of the chunk's queries in the form their scoring against `keys` takes (host batches; a
  // no-op when already there), so that it runs while the GPU scores the chunk before: the encoding is host work
  // that would otherwise wait for that chunk's results. May throw QueriesOffBf16Grid (set_batch's assume_bf16).
  void prefetch_queries(KeyStore& keys, const Chunk& c);
  // Block scores J of the chunk's queries against pooled keys of block size B (lo/hi: each query's eligible
  // blocks), computed into j: row i holds blocks [c.lo / B, c.hi / B].
  void score_blocks(KeyStore& blocks, const Chunk& c, int64_t B, const int* lo, const int* hi, DeviceArray<float>& j,
                    double* stage);
  // The same, then copied to jh, synchronised.
  void score_blocks_to_host(KeyStore& blocks, const Chunk& c, int64_t B, const int* lo, const int* hi,
                            DeviceArray<float>& j, std::vector<float>& jh, double* stage);
  // The chunk's queries' visible scores into scores() (row stride c.stride(), column 0 = key c.lo): all of them,
  // or with `work` those of the kept blocks.
  void score_tokens(KeyStore& tokens, const Chunk& c, double* stage, const BlockChoice* work = nullptr);
  const float* scores() const { return scores_.data(); }
  // Exact top-k of scores() over each row's segments, into pos/sc/cnt.
  void run_topk(const Chunk& c, int k, const DeviceArray<int>& segs, const DeviceArray<int>& offs,
                DeviceArray<int>& pos, DeviceArray<float>& sc, DeviceArray<int>& cnt, double* stage);
  void upload_segments(const std::vector<int>& segs, const std::vector<int>& offsets, DeviceArray<int>& dsegs,
                       DeviceArray<int>& doffs);

 private:
  // The kernel for `keys` against this batch (choose_score_kernel), said on stderr with --verbose when it is
  // first made for these keys or changes with a batch.
  KernelChoice kernel_for(KeyStore& keys);
  // One scoring launch over [range_lo, range_hi]; with `work`, only the keys of its kept blocks.
  void score(KeyStore& keys, const Chunk& c, const int* lo, const int* hi, int range_lo, int range_hi,
             const BlockChoice* work, float* out, int64_t stride, int base, double* stage);

  struct Decision {
    const KeyStore* keys = nullptr;
    uint64_t generation = 0;
    KernelChoice choice;
  };

  int device_;
  bool fp8_mma_;
  ScoreDevice score_device_;
  bool used_fp8_mma_ = false;
  std::string name_;
  std::optional<Stream> stream_;  // created after cudaSetDevice
  const QueryBatch* batch_ = nullptr;
  QueryStore queries_;
  DeviceArray<int> lo_, hi_;
  DeviceArray<float> scores_;
  StageTimer timer_;
  double transfers_ms_ = 0;
  std::vector<Decision> decisions_;
};

// UsageError when CUDA device `device` does not exist.
void require_device(int device);

// Each of the chunk's queries' visible range [k_start, q_pos] as one segment: segs gets the pairs, offs (which
// starts at {0}) each row's end.
void append_visible_segments(const QueryBatch& b, const Chunk& c, std::vector<int>& segs, std::vector<int>& offs);

// Visible positions of the kept blocks as merged segments [a, z] (select/blocks.hpp visible_runs), appended to
// segs.
void append_segments(const std::vector<int64_t>& kept, int64_t k_start, int64_t q_pos, int64_t B, std::vector<int>& segs);

}  // namespace hisa::cuda
