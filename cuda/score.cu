// Indexer scoring on the GPU: I[t,s] = scale[s] · Σ_h w[t,h] · ReLU(q[t,h,:] · k[s,:]).
//
// Why both paths agree with the CPU engine (docs/definitions.md: fp32 accumulation, order not defined):
//  - Tensor-core path (BF16/F16): used only when the engine has checked that every q and k value is exactly
//    representable in the 16-bit type, so the tensor cores see the very values the CPU sees. A product of two
//    bf16 (8-bit significands) or two f16 (11-bit) values has at most 22 significant bits and is exact in
//    fp32, so every product equals the CPU's; the mma accumulates those products in fp32 (the order, and
//    the tensor core's internal rounding of partial sums, differ from Eigen's, which the Definitions leave
//    open). On exact inputs (small integers, dyadic values) every sum is exact and the scores are bit-identical.
//  - ReLU, the weights, the head sum and the key scale are applied in fp32 on CUDA cores, in registers; the
//    key scale multiplies after the head sum, as on the CPU (so fp8 dumps, whose e4m3 values are exact in
//    bf16, use the tensor cores with k_scale applied afterwards).
//  - fp32 path: everything on CUDA cores with fp32 FMAs, the dot product in dimension order.
// No [queries·heads, L] array exists: dot products live in registers (mma accumulators) or shared memory.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <cstdint>

#include "cuda/cuda_check.hpp"
#include "cuda/device_util.cuh"
#include "cuda/kernels.hpp"
#include "cuda/score_common.cuh"

namespace hisa::cuda {

namespace {

using namespace detail;

// ---------------------------------------------------------------------------------------------------------
// Tensor-core path. Keys are the MMA's M side: each warp owns 32 keys (two m16 tiles) and keeps their A
// fragments in registers for the whole query loop; (heads × dims) of one query are the N × K side, staged in
// shared memory (double-buffered with cp.async). Each thread's accumulators hold 2 heads of 4 keys, so
// ReLU·w and the head sum happen in registers, then across the 4 lanes of a quad.

constexpr int kMmaThreads = 128;  // 4 warps

template <bool kF16>
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (kF16) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

template <bool kF16, int KS>  // KS = D' / 16 k-steps of the mma
__global__ void __maxnreg__(168) score_mma_kernel(const ScoreLaunch a, int queries_per_cta) {
  constexpr int Dp = KS * 16;
  // Shared row stride in 16-bit elements: +8 (16 bytes) so the 8 head rows that one B fragment reads fall in
  // distinct banks (row stride ≡ 4 words mod 8).
  constexpr int ld = Dp + 8;
  extern __shared__ __align__(16) unsigned char smem[];
  const int Hp = a.heads;
  uint16_t* qs = reinterpret_cast<uint16_t*>(smem);                                   // [2][Hp][ld]
  float* ws = reinterpret_cast<float*>(smem + size_t(2) * Hp * ld * sizeof(uint16_t));  // [2][Hp]

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, c = lane & 3;
  const CtaWork work = cta_work(a, queries_per_cta, kMmaTile);
  if (work.begin >= work.end) return;  // before any load: sparse launches have many idle CTAs
  const int tile_lo = work.tile_lo, tile_hi = tile_lo + kMmaTile - 1, tile = tile_lo / kMmaTile;
  const int key0 = tile_lo + warp * 32;
  const uint16_t* keys = static_cast<const uint16_t*>(a.keys);
  const uint16_t* qg = static_cast<const uint16_t*>(a.q);

  // A fragments of the warp's two 16-key tiles: keys key0 + {0, 16} + {g, g+8}.
  uint32_t af[2][KS][4];
  load_key_fragments(af, keys, a.key_count, Dp, key0, 16, g, c);

  // Entries e of [work.begin, work.end) name queries: query e itself, or list_rows[e] with work lists.
  const int q_end = work.end;
  auto query = [&](int e) { return a.list_rows != nullptr ? a.list_rows[e] : e; };
  auto wanted = [&](int e) {
    const int i = query(e);
    return a.lo[i] <= tile_hi && a.hi[i] >= tile_lo &&
           (unit_wanted(a, i, 2 * tile) || unit_wanted(a, i, 2 * tile + 1));
  };
  auto next_from = [&](int e) {
    while (e < q_end && !wanted(e)) ++e;
    return e;
  };
  auto load = [&](int e, int buf) {
    const int i = query(e);
    const uint16_t* src = qg + size_t(i) * Hp * Dp;
    uint16_t* dst = qs + size_t(buf) * Hp * ld;
    constexpr int chunks = Dp / 8;  // 16-byte chunks per head row
    for (int idx = tid; idx < Hp * chunks; idx += kMmaThreads) {
      const int r = idx / chunks, ch = idx - r * chunks;
      cp_async16(dst + r * ld + ch * 8, src + size_t(r) * Dp + ch * 8);
    }
    for (int idx = tid; idx < Hp / 4; idx += kMmaThreads) cp_async16(ws + buf * Hp + idx * 4, a.w + size_t(i) * Hp + idx * 4);
    cp_async_commit();
  };

  int cur = next_from(work.begin), buf = 0;
  if (cur < q_end) load(cur, 0);
  while (cur < q_end) {
    const int nxt = next_from(cur + 1);
    if (nxt < q_end) {
      load(nxt, buf ^ 1);  // that buffer's last readers finished before the barrier ending the previous step
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const int qi = query(cur), qlo = a.lo[qi], qhi = a.hi[qi];
    if (key0 <= qhi && key0 + 31 >= qlo && unit_wanted(a, qi, key0 / kMaskUnit)) {  // warp-uniform
      const uint16_t* qb = qs + size_t(buf) * Hp * ld;
      const float* wb = ws + buf * Hp;
      float part[4] = {0.f, 0.f, 0.f, 0.f};  // keys (mt, row g / g+8): index mt*2 + r
      for (int nt = 0; nt < Hp / 8; ++nt) {
        float acc[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
        // B fragment (col-major 16x8): b0 = B[2c..2c+1][g], b1 = B[2c+8..][g]; B[d][n] = q[head nt*8+n][d].
        const uint16_t* qrow = qb + (nt * 8 + g) * ld + 2 * c;
#pragma unroll
        for (int ks = 0; ks < KS; ++ks) {
          const uint32_t b0 = *reinterpret_cast<const uint32_t*>(qrow + ks * 16);
          const uint32_t b1 = *reinterpret_cast<const uint32_t*>(qrow + ks * 16 + 8);
          mma_16816<kF16>(acc[0], af[0][ks], b0, b1);
          mma_16816<kF16>(acc[1], af[1][ks], b0, b1);
        }
        // Accumulator: d0, d1 = (key row g, heads 2c, 2c+1); d2, d3 = (key row g+8, same heads).
        const float w0 = wb[nt * 8 + 2 * c], w1 = wb[nt * 8 + 2 * c + 1];
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
          // One fused multiply-add per head (as the wgmma kernel): fewer instructions than w·x + w·y.
          part[mt * 2 + 0] = fmaf(w1, fmaxf(acc[mt][1], 0.f), fmaf(w0, fmaxf(acc[mt][0], 0.f), part[mt * 2 + 0]));
          part[mt * 2 + 1] = fmaf(w1, fmaxf(acc[mt][3], 0.f), fmaf(w0, fmaxf(acc[mt][2], 0.f), part[mt * 2 + 1]));
        }
      }
#pragma unroll
      for (int j = 0; j < 4; ++j) {  // the quad's 4 lanes hold disjoint heads of the same keys
        part[j] += __shfl_xor_sync(0xffffffffu, part[j], 1);
        part[j] += __shfl_xor_sync(0xffffffffu, part[j], 2);
      }
      // Every lane of the quad now has the 4 sums; lane c stores sum c, so the warp writes its 32 keys.
      const float v = c == 0 ? part[0] : c == 1 ? part[1] : c == 2 ? part[2] : part[3];
      const int s = key0 + (c >> 1) * 16 + g + (c & 1) * 8;
      if (s >= qlo && s <= qhi && s < a.key_count) {
        a.out[size_t(qi) * a.out_stride + (s - a.out_base)] = clean_score(v * a.scales[s]);
      }
    }
    __syncthreads();  // everyone is done with `buf` before it is refilled
    cur = nxt;
    buf ^= 1;
  }
}

// ---------------------------------------------------------------------------------------------------------
// fp32 path on CUDA cores: a CTA keeps 64 keys in shared memory and loops over its queries; heads are taken
// 32 at a time. Thread (kg, hg) computes keys kg + 16i and heads hg + 8j (i, j < 4); each dot product is a
// chain of fp32 FMAs in dimension order. Partial head sums of the 8 head groups meet in shared memory.

constexpr int kF32Threads = 128;
constexpr int kF32Tile = 64;  // = kMaskUnit
constexpr int kF32HeadPass = 32;

size_t f32_smem_bytes(int dim) { return size_t(kF32Tile + kF32HeadPass) * (dim + 1) * sizeof(float) + 8 * kF32Tile * sizeof(float); }

__global__ void __launch_bounds__(kF32Threads) score_f32_kernel(const ScoreLaunch a, int queries_per_cta) {
  extern __shared__ float fsm[];
  const int D = a.dim, H = a.heads, ld = D + 1;  // +1: consecutive keys in distinct banks
  float* ks = fsm;                             // [64][ld]
  float* qsh = ks + kF32Tile * ld;             // [32][ld]
  float* red = qsh + kF32HeadPass * ld;        // [8][64]
  const float* keys = static_cast<const float*>(a.keys);
  const float* q = static_cast<const float*>(a.q);
  const int tid = threadIdx.x, kg = tid & 15, hg = tid >> 4;
  const int tile = a.range_lo / kF32Tile + int(blockIdx.x);
  const int key0 = tile * kF32Tile;
  for (int idx = tid; idx < kF32Tile * D; idx += kF32Threads) {
    const int r = idx / D, d = idx - r * D, s = key0 + r;
    ks[r * ld + d] = s < a.key_count ? keys[size_t(s) * D + d] : 0.f;
  }
  const int q_begin = int(blockIdx.y) * queries_per_cta;
  const int q_end = min(a.queries, q_begin + queries_per_cta);
  for (int i = q_begin; i < q_end; ++i) {
    const int qlo = a.lo[i], qhi = a.hi[i];
    if (!(qlo <= key0 + kF32Tile - 1 && qhi >= key0 && unit_wanted(a, i, tile))) continue;  // CTA-uniform
    float part[4] = {0.f, 0.f, 0.f, 0.f};
    for (int hp0 = 0; hp0 < H; hp0 += kF32HeadPass) {
      __syncthreads();  // previous readers of qsh (and of red) are done; also orders the key tile's stores
      for (int idx = tid; idx < kF32HeadPass * D; idx += kF32Threads) {
        const int r = idx / D, d = idx - r * D, h = hp0 + r;
        qsh[r * ld + d] = h < H ? q[(size_t(i) * H + h) * D + d] : 0.f;
      }
      __syncthreads();
      float acc[4][4];
#pragma unroll
      for (int ii = 0; ii < 4; ++ii) {
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[ii][j] = 0.f;
      }
      for (int d = 0; d < D; ++d) {
        float kv[4], qv[4];
#pragma unroll
        for (int ii = 0; ii < 4; ++ii) kv[ii] = ks[(kg + 16 * ii) * ld + d];
#pragma unroll
        for (int j = 0; j < 4; ++j) qv[j] = qsh[(hg + 8 * j) * ld + d];
#pragma unroll
        for (int ii = 0; ii < 4; ++ii) {
#pragma unroll
          for (int j = 0; j < 4; ++j) acc[ii][j] = fmaf(kv[ii], qv[j], acc[ii][j]);
        }
      }
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int h = hp0 + hg + 8 * j;
        if (h < H) {
          const float wv = a.w[size_t(i) * H + h];
#pragma unroll
          for (int ii = 0; ii < 4; ++ii) part[ii] += wv * fmaxf(acc[ii][j], 0.f);
        }
      }
    }
#pragma unroll
    for (int ii = 0; ii < 4; ++ii) red[hg * kF32Tile + kg + 16 * ii] = part[ii];
    __syncthreads();
    if (tid < kF32Tile) {
      const int s = key0 + tid;
      if (s >= qlo && s <= qhi && s < a.key_count) {
        float total = 0.f;
        for (int h8 = 0; h8 < 8; ++h8) total += red[h8 * kF32Tile + tid];
        a.out[size_t(i) * a.out_stride + (s - a.out_base)] = clean_score(total * a.scales[s]);
      }
    }
  }
}

template <bool kF16, int KS>
void launch_mma(const ScoreLaunch& a, cudaStream_t stream) {
  const int tiles = tile_count(a, kMmaTile);
  const int qpc = queries_per_cta(a.queries, tiles);
  const size_t smem = size_t(2) * a.heads * (KS * 16 + 8) * sizeof(uint16_t) + size_t(2) * a.heads * sizeof(float);
  if (smem > optin_smem()) {
    throw CudaError("score kernel: " + std::to_string(a.heads) + " heads need " + std::to_string(smem) +
                    " bytes of shared memory, more than the device allows");
  }
  HISA_CUDA_CHECK(cudaFuncSetAttribute(score_mma_kernel<kF16, KS>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  const dim3 grid = a.list_rows != nullptr ? dim3(unsigned(std::max(a.cta_bound, 1)))
                                           : dim3(unsigned(tiles), unsigned((a.queries + qpc - 1) / qpc));
  score_mma_kernel<kF16, KS><<<grid, kMmaThreads, smem, stream>>>(a, qpc);
  HISA_CUDA_CHECK_LAUNCH("score_mma_kernel");
}

template <bool kF16>
void launch_mma_dim(const ScoreLaunch& a, cudaStream_t stream) {
  switch (a.dim / 16) {
    case 1: return launch_mma<kF16, 1>(a, stream);
    case 2: return launch_mma<kF16, 2>(a, stream);
    case 3: return launch_mma<kF16, 3>(a, stream);
    case 4: return launch_mma<kF16, 4>(a, stream);
    case 5: return launch_mma<kF16, 5>(a, stream);
    case 6: return launch_mma<kF16, 6>(a, stream);
    case 7: return launch_mma<kF16, 7>(a, stream);
    case 8: return launch_mma<kF16, 8>(a, stream);
    default: break;
  }
  throw CudaError("score kernel: padded head dim " + std::to_string(a.dim) + " is not a multiple of 16 in 16..128");
}

}  // namespace

const char* score_kernel_name(ScoreKernel k) {
  switch (k) {
    case ScoreKernel::CudaCores: return "fp32 CUDA cores";
    case ScoreKernel::MmaSync: return "mma.sync";
    case ScoreKernel::Wgmma: return "wgmma";
  }
  return "?";
}

const char* value_type_name(ValueType t) {
  switch (t) {
    case ValueType::F32: return "fp32";
    case ValueType::BF16: return "bf16";
    case ValueType::F16: return "f16";
    case ValueType::BF16x3: return "bf16x3 (split fp32 keys)";
    case ValueType::E4M3: return "fp8 e4m3";
  }
  return "?";
}

int score_tile_keys(ScoreKernel kernel, ValueType type) {
  switch (kernel) {
    case ScoreKernel::CudaCores: return kF32Tile;
    case ScoreKernel::MmaSync: return kMmaTile;
    case ScoreKernel::Wgmma: return type == ValueType::BF16x3 ? 64 : kWgmmaTile;
  }
  return kMmaTile;
}

ScoreDevice score_device(int device) {
  ScoreDevice d;
#ifdef HISA_CUDA_SM90A  // built without sm_90a machine code, the wgmma kernel's body is a trap
  int major = 0, minor = 0;
  HISA_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  HISA_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  d.wgmma = major == 9 && minor == 0;
#else
  (void)device;
#endif
  const char* v = std::getenv("HISA_NO_WGMMA");
  d.wgmma_16bit = d.wgmma && !(v != nullptr && *v != '\0' && *v != '0');
  return d;
}

bool wgmma_takes(ValueType type, int heads_padded, int dim) {
  if (heads_padded != 32 && heads_padded != 64) return false;
  switch (type) {
    case ValueType::F32: return false;
    case ValueType::BF16:
    case ValueType::F16: return dim == 64 || dim == 128;
    case ValueType::BF16x3: return dim == 3 * 64 || dim == 3 * 128;
    case ValueType::E4M3: return dim == kFp8Dim;
  }
  return false;
}

void launch_score(const ScoreLaunch& a, cudaStream_t stream) {
  if (a.queries <= 0 || a.range_hi < a.range_lo) return;
  if (a.list_rows != nullptr && a.list_tile_keys != score_tile_keys(a)) {
    throw CudaError("score kernel: work lists built for another tile size");
  }
  if ((a.type == ValueType::F32) != (a.kernel == ScoreKernel::CudaCores)) {
    throw CudaError(std::string("score kernel: ") + score_kernel_name(a.kernel) + " does not take " + value_type_name(a.type));
  }
  if (a.type != ValueType::F32 && (a.dim % 16 != 0 || a.heads % 8 != 0)) {
    throw CudaError("score kernel: tensor-core inputs must be padded");
  }
  if (a.kernel == ScoreKernel::Wgmma) {
    if (!wgmma_takes(a.type, a.heads, a.dim)) throw CudaError("score kernel: wgmma does not take this shape");
    return launch_wgmma(a, stream);
  }
  if (a.kernel == ScoreKernel::MmaSync) {
    if (a.type != ValueType::BF16 && a.type != ValueType::F16) {
      throw CudaError(std::string("score kernel: mma.sync does not take ") + value_type_name(a.type));
    }
    return a.type == ValueType::F16 ? launch_mma_dim<true>(a, stream) : launch_mma_dim<false>(a, stream);
  }
  const int tiles = a.range_hi / kF32Tile - a.range_lo / kF32Tile + 1;  // 64-key tiles from range_lo's
  const int qpc = queries_per_cta(a.queries, tiles);
  const size_t smem = f32_smem_bytes(a.dim);
  if (smem > optin_smem()) {
    throw CudaError("score kernel: head dim " + std::to_string(a.dim) + " needs " + std::to_string(smem) +
                    " bytes of shared memory, more than the device allows");
  }
  HISA_CUDA_CHECK(cudaFuncSetAttribute(score_f32_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  const dim3 grid(unsigned(tiles), unsigned((a.queries + qpc - 1) / qpc));
  score_f32_kernel<<<grid, kF32Threads, smem, stream>>>(a, qpc);
  HISA_CUDA_CHECK_LAUNCH("score_f32_kernel");
}

}  // namespace hisa::cuda
