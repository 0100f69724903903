// The CUDA engine's scoring context (cuda_scoring.hpp).
#include "cuda/cuda_scoring.hpp"

#include <algorithm>
#include <limits>
#include <stdexcept>

#include "core/stopwatch.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/cuda_engine.hpp"
#include "select/blocks.hpp"

namespace hisa::cuda {

void require_device(int device) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    count = 0;
  }
  if (device < 0 || device >= count) {
    throw UsageError("no CUDA device " + std::to_string(device) + " (" + std::to_string(count) + " found)");
  }
}

bool fp8_mma_available(int device) { return score_device(device).wgmma; }  // fp8 runs on wgmma only

KernelChoice choose_score_kernel(const Exactness& keys, const Exactness& queries, int64_t heads, int64_t dim,
                                 bool fp8_mma, const ScoreDevice& device) {
  const int hp = int(round_up(heads, 8)), dp = int(round_up(dim, 16));
  if (fp8_mma && dim <= kFp8Dim && device.wgmma && wgmma_takes(ValueType::E4M3, hp, kFp8Dim) && keys.e4m3() &&
      queries.e4m3()) {
    return {ValueType::E4M3, ScoreKernel::Wgmma};
  }
  if (dp > kMaxTensorCoreDim) return {};
  auto sixteen_bit = [&](ValueType t) {
    return KernelChoice{t, device.wgmma_16bit && wgmma_takes(t, hp, dp) ? ScoreKernel::Wgmma : ScoreKernel::MmaSync};
  };
  if (keys.bf16() && queries.bf16()) return sixteen_bit(ValueType::BF16);
  if (keys.f16() && queries.f16()) return sixteen_bit(ValueType::F16);
  if (queries.bf16() && keys.splittable() && device.wgmma && wgmma_takes(ValueType::BF16x3, hp, 3 * dp)) {
    return {ValueType::BF16x3, ScoreKernel::Wgmma};
  }
  return {};
}

void StageTimer::begin(cudaStream_t s, double* target) {
  if (n_ == pool_.size()) pool_.push_back(std::make_unique<Pair>());
  pool_[n_]->target = target;
  pool_[n_]->start.record(s);
}

void StageTimer::end(cudaStream_t s) { pool_[n_++]->stop.record(s); }

void StageTimer::collect() {
  for (size_t i = 0; i < n_; ++i) *pool_[i]->target += pool_[i]->stop.since(pool_[i]->start);
  n_ = 0;
}

std::string engine_name(int device, bool fp8_mma) {
  cudaDeviceProp prop{};
  HISA_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  return std::string("cuda (") + prop.name + (fp8_mma && fp8_mma_available(device) ? ", fp8 tensor cores)" : ")");
}

CudaScoring::CudaScoring(int device, bool fp8_mma)
    : device_(device), fp8_mma_(fp8_mma), score_device_(score_device(device)), name_(engine_name(device, fp8_mma)) {
  HISA_CUDA_CHECK(cudaSetDevice(device_));
  stream_.emplace();
}

void CudaScoring::use_device() const { HISA_CUDA_CHECK(cudaSetDevice(device_)); }

void CudaScoring::set_batch(const QueryBatch& b, int64_t key_count, bool assume_bf16) {
  use_device();
  batch_ = &b;
  used_fp8_mma_ = false;
  queries_.reset(b, stream(), assume_bf16);
  std::vector<int> lo(size_t(b.count)), hi(size_t(b.count));
  for (int64_t i = 0; i < b.count; ++i) {
    const int64_t ks = b.k_start[size_t(i)], qp = b.q_pos[size_t(i)];
    if (ks < 0 || qp < ks || qp >= key_count) throw std::invalid_argument("CUDA scoring: query outside the layer's keys");
    lo[size_t(i)] = int(ks);
    hi[size_t(i)] = int(qp);
  }
  lo_.upload(lo.data(), lo.size(), stream());
  hi_.upload(hi.data(), hi.size(), stream());
}

void CudaScoring::upload_block_ranges(int64_t B, DeviceArray<int>& lo, DeviceArray<int>& hi) {
  const QueryBatch& b = *batch_;
  std::vector<int> blo(size_t(b.count)), bhi(size_t(b.count));
  for (int64_t i = 0; i < b.count; ++i) {
    blo[size_t(i)] = int(b.k_start[size_t(i)] / B);
    bhi[size_t(i)] = int(b.q_pos[size_t(i)] / B);
  }
  lo.upload(blo.data(), blo.size(), stream());
  hi.upload(bhi.data(), bhi.size(), stream());
}

std::vector<Chunk> CudaScoring::plan(const QueryBatch& b, bool token_scores, int64_t smallest_block, int64_t topk,
                                     size_t max_chunk_bytes, size_t held_bytes, int64_t kept_blocks) {
  size_t free = 0, total = 0;
  HISA_CUDA_CHECK(cudaMemGetInfo(&free, &total));
  double budget = 0.5 * double(free + held_bytes + scores_.capacity_bytes());
  if (max_chunk_bytes > 0) budget = std::min(budget, double(max_chunk_bytes));
  const int64_t B = smallest_block;
  auto bytes = [&](int64_t rows, int64_t lo, int64_t hi) {
    const double score_cols = token_scores ? double(round_up(hi - lo + 1, 32)) : 0.0;
    const double j_cols = double(hi / B - lo / B + 1);
    const double mask_cols = double(mask_words(int(lo), int(hi)));
    // The GPU block choice (BlockChoice): per kept-block slot its index, segment and top-m candidate (20 bytes),
    // and a work-list entry per 64 keys at most.
    const double choice = kept_blocks > 0 ? (std::min(double(kept_blocks), j_cols) + 2.0) * 20.0 + double(hi - lo + 1) / 16.0 : 0.0;
    return double(rows) * ((score_cols + j_cols + mask_cols) * 4.0 + double(topk) * 16.0 + 64.0 + choice);
  };
  std::vector<Chunk> chunks;
  int64_t i = 0;
  while (i < b.count) {
    Chunk c{i, 1, int(b.k_start[size_t(i)]), int(b.q_pos[size_t(i)])};
    if (bytes(1, c.lo, c.hi) > budget) {
      throw CudaError("not enough free device memory for one query row of " + std::to_string(c.hi - c.lo + 1) + " keys");
    }
    while (c.first + c.count < b.count && c.count < kMaxChunkQueries) {
      const size_t j = size_t(c.first + c.count);
      const int lo = std::min<int>(c.lo, int(b.k_start[j])), hi = std::max<int>(c.hi, int(b.q_pos[j]));
      if (bytes(c.count + 1, lo, hi) > budget) break;
      c.lo = lo, c.hi = hi, ++c.count;
    }
    chunks.push_back(c);
    i += c.count;
  }
  return chunks;
}

KernelChoice CudaScoring::kernel_for(KeyStore& keys) {
  const QueryBatch& b = *batch_;
  const KernelChoice choice = choose_score_kernel(keys.exact(), queries_.exact(), b.heads, b.dim, fp8_mma_, score_device_);
  auto known = std::find_if(decisions_.begin(), decisions_.end(), [&](const Decision& d) { return d.keys == &keys; });
  if (known == decisions_.end()) known = decisions_.insert(decisions_.end(), Decision{&keys, 0, {}});
  if (known->generation != keys.generation() || !(known->choice == choice)) {
    known->generation = keys.generation();
    known->choice = choice;
    log_verbose(name_ + ": " + keys.what() + " (" + std::to_string(keys.count()) + " x D " + std::to_string(b.dim) +
                ") against " + std::to_string(b.heads) + " heads: " + score_kernel_name(choice.kernel) + " on " +
                value_type_name(choice.type) + ", " + std::to_string(choice.tile_keys()) + "-key tiles");
  }
  return choice;
}

ScoreLaunch operands_for(const KernelChoice& choice, KeyStore& keys, QueryStore& queries, const QueryBatch& b,
                         int64_t first, int64_t count, cudaStream_t s) {
  ScoreLaunch a;
  a.type = choice.type;
  a.kernel = choice.kernel;
  a.scales = keys.scales();
  if (a.type == ValueType::F32) {
    a.keys = keys.f32(s);
    a.q = queries.q_f32(s) + first * b.heads * b.dim;
    a.w = queries.w_f32(s) + first * b.heads;
    a.heads = int(b.heads);
    a.dim = int(b.dim);
  } else {
    const int64_t hp = round_up(b.heads, 8);
    a.keys = keys.lowp(a.type, s);
    a.q = queries.q_lowp(a.type, first, count, s) + first * hp * query_coded_dim(a.type, b.dim);
    a.w = queries.w_padded(s) + first * hp;
    a.heads = int(hp);
    // The kernels' K: codes per row (BF16x3: its three runs; E4M3: 128 one-byte codes).
    a.dim = a.type == ValueType::E4M3 ? kFp8Dim : int(coded_dim(a.type, b.dim));
  }
  return a;
}

int CudaScoring::tile_keys(KeyStore& keys) { return kernel_for(keys).tile_keys(); }

void CudaScoring::prefetch_queries(KeyStore& keys, const Chunk& c) {
  Stopwatch transfers(transfers_ms_, 1e3);
  operands_for(kernel_for(keys), keys, queries_, *batch_, c.first, c.count, stream());
}

void CudaScoring::score(KeyStore& keys, const Chunk& c, const int* lo, const int* hi, int range_lo, int range_hi,
                        const BlockChoice* work, float* out, int64_t stride, int base, double* stage) {
  ScoreLaunch a;
  {
    Stopwatch transfers(transfers_ms_, 1e3);
    a = operands_for(kernel_for(keys), keys, queries_, *batch_, c.first, c.count, stream());
  }
  a.key_count = int(keys.count());
  a.queries = int(c.count);
  a.lo = lo + c.first;
  a.hi = hi + c.first;
  a.range_lo = range_lo;
  a.range_hi = range_hi;
  a.unit_base = mask_unit_base(range_lo);
  if (work != nullptr) {
    work->describe_work(a);
    if (a.type == ValueType::F32) a.list_rows = nullptr;  // the fp32 kernel scans every query against the mask
  }
  a.out = out;
  a.out_stride = stride;
  a.out_base = base;
  used_fp8_mma_ = used_fp8_mma_ || a.type == ValueType::E4M3;
  timer_.begin(stream(), stage);
  launch_score(a, stream());
  timer_.end(stream());
}

void CudaScoring::score_blocks(KeyStore& blocks, const Chunk& c, int64_t B, const int* lo, const int* hi,
                               DeviceArray<float>& j, double* stage) {
  const int jlo = int(c.lo / B), jhi = int(c.hi / B);
  const int64_t width = jhi - jlo + 1;
  j.resize(size_t(c.count * width));
  score(blocks, c, lo, hi, jlo, jhi, nullptr, j.data(), width, jlo, stage);
}

void CudaScoring::score_blocks_to_host(KeyStore& blocks, const Chunk& c, int64_t B, const int* lo, const int* hi,
                                       DeviceArray<float>& j, std::vector<float>& jh, double* stage) {
  score_blocks(blocks, c, B, lo, hi, j, stage);
  jh.resize(j.size());
  stream_->synchronize();  // the copy alone is timed
  Stopwatch transfers(transfers_ms_, 1e3);
  j.download(jh.data(), jh.size(), stream());
  stream_->synchronize();
}

void CudaScoring::score_tokens(KeyStore& tokens, const Chunk& c, double* stage, const BlockChoice* work) {
  scores_.resize(size_t(c.count * c.stride()));
  score(tokens, c, lo_.data(), hi_.data(), c.lo, c.hi, work, scores_.data(), c.stride(), c.lo, stage);
}

void CudaScoring::run_topk(const Chunk& c, int k, const DeviceArray<int>& segs, const DeviceArray<int>& offs,
                           DeviceArray<int>& pos, DeviceArray<float>& sc, DeviceArray<int>& cnt, double* stage) {
  pos.resize(size_t(c.count) * size_t(k));
  sc.resize(size_t(c.count) * size_t(k));
  cnt.resize(size_t(c.count));
  TopkLaunch t;
  t.scores = scores_.data();
  t.stride = c.stride();
  t.base = c.lo;
  t.segments = segs.data();
  t.seg_offsets = offs.data();
  t.rows = int(c.count);
  t.k = k;
  t.out_pos = pos.data();
  t.out_score = sc.data();
  t.out_count = cnt.data();
  timer_.begin(stream(), stage);
  launch_topk(t, stream());
  timer_.end(stream());
}

void CudaScoring::upload_segments(const std::vector<int>& segs, const std::vector<int>& offsets,
                                  DeviceArray<int>& dsegs, DeviceArray<int>& doffs) {
  static const int none[2] = {0, -1};  // an empty list still gets an allocation
  if (segs.empty()) {
    dsegs.upload(none, 2, stream());
  } else {
    dsegs.upload(segs.data(), segs.size(), stream());
  }
  doffs.upload(offsets.data(), offsets.size(), stream());
}

void append_visible_segments(const QueryBatch& b, const Chunk& c, std::vector<int>& segs, std::vector<int>& offs) {
  for (int64_t i = 0; i < c.count; ++i) {
    segs.push_back(int(b.k_start[size_t(c.first + i)]));
    segs.push_back(int(b.q_pos[size_t(c.first + i)]));
    offs.push_back(int(segs.size() / 2));
  }
}

void append_segments(const std::vector<int64_t>& kept, int64_t k_start, int64_t q_pos, int64_t B, std::vector<int>& segs) {
  for (const TokenRange& run : visible_runs(kept, B, k_start, q_pos)) {
    segs.push_back(int(run.first));
    segs.push_back(int(run.last));
  }
}

}  // namespace hisa::cuda
