// Indexer scoring with wgmma (sm_90a): the same function and the same exactness argument as score.cu's
// mma.sync kernel (products of exact 16-bit values are exact in fp32, fp32 accumulation, ReLU·w·Σ_h and the
// key scale in registers), at a higher tensor-core rate. On request it also scores fp8 e4m3 codes on the fp8
// tensor cores (ValueType::E4M3: twice the rate, not exact; kernels.hpp).
//
// Layout: a CTA is one warpgroup and a 128-key tile (the mma.sync kernel's, so HISA's work lists serve both),
// two 64-row M tiles (one, a 64-key tile, for BF16x3 keys, whose K = 3·D' fills the registers) whose A
// fragments stay in registers for the whole query loop (m64nNk16, or m64nNk32 for fp8, A from registers);
// several CTAs share a multiprocessor (3 by registers, 4 for fp8), so one's epilogue overlaps another's MMAs,
// and inside a CTA the epilogue of the first M tile overlaps the MMAs of the second.
// A query's N = H' heads × K (D' dims) are B, staged in shared memory by cp.async in the K-major layout with the
// 128-byte swizzle: per 128-byte slice ("atom") of K (64 16-bit dims or 128 fp8 dims), head h's 128 bytes at
// h · 128, its 16-byte chunk c stored at chunk c ^ (h mod 8), so the 8 rows of a core matrix fall in distinct
// banks; atoms N · 128 bytes apart, 8-head groups 1024 bytes apart (SBO). Queries are double-buffered.
// Each thread's accumulators hold 2 keys × N/4 heads, so the head sum happens in registers and then across the
// 4 lanes of a quad, as in the mma.sync kernel.
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "cuda/cuda_check.hpp"
#include "cuda/device_util.cuh"
#include "cuda/kernels.hpp"
#include "cuda/score_common.cuh"

namespace hisa::cuda::detail {

namespace {

constexpr int kWgThreads = 128;  // one warpgroup
// The operand types of a launch (template argument kOp).
constexpr int kOpBF16 = 0, kOpF16 = 1, kOpE4M3 = 2;

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define HISA_WGMMA 1
#endif

#ifdef HISA_WGMMA
// A shared-memory matrix descriptor for the K-major 128-byte swizzle: start address, stride byte offset 1024
// (8 rows of 128 bytes), leading byte offset unused (1), layout type 1 in bits 62-63.
__device__ __forceinline__ uint64_t smem_descriptor_sw128(const void* p) {
  const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  return uint64_t((addr & 0x3FFFFu) >> 4) | (uint64_t(1) << 16) | (uint64_t(1024 >> 4) << 32) | (uint64_t(1) << 62);
}

// D (64 × N fp32, accumulated when `accumulate`) += A (64 × K, registers) · B (K × N, shared, descriptor); one
// k-step is 32 bytes of K: k16 for bf16/f16, k32 for e4m3 (whose A fragments have the 16-bit types' layout
// counted in 32-bit registers, so the same loads fill them). fp8 operands take no transpose argument.
#define HISA_WGMMA_RS_N32(INSTR, TAIL)                                                                              \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %21, 0;\n" INSTR                                                    \
               " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, {%16, %17, %18, %19}, %20, p" \
               TAIL ";\n}\n"                                                                                        \
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),    \
                 "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]) \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(accumulate))
#define HISA_WGMMA_RS_N64(INSTR, TAIL)                                                                               \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n" INSTR                                                     \
               " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, " \
               "%22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, %36, p" TAIL ";\n}\n"        \
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),     \
                 "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), \
                 "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]),           \
                 "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]),           \
                 "+f"(d[30]), "+f"(d[31])                                                                              \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(accumulate))

template <int kOp>
__device__ __forceinline__ void wgmma_rs(float (&d)[16], const uint32_t (&a)[4], uint64_t desc, int accumulate) {
  if constexpr (kOp == kOpBF16) {
    HISA_WGMMA_RS_N32("wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16", ", 1, 1, 0");
  } else if constexpr (kOp == kOpF16) {
    HISA_WGMMA_RS_N32("wgmma.mma_async.sync.aligned.m64n32k16.f32.f16.f16", ", 1, 1, 0");
  } else {
    HISA_WGMMA_RS_N32("wgmma.mma_async.sync.aligned.m64n32k32.f32.e4m3.e4m3", ", 1, 1");
  }
}
template <int kOp>
__device__ __forceinline__ void wgmma_rs(float (&d)[32], const uint32_t (&a)[4], uint64_t desc, int accumulate) {
  if constexpr (kOp == kOpBF16) {
    HISA_WGMMA_RS_N64("wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16", ", 1, 1, 0");
  } else if constexpr (kOp == kOpF16) {
    HISA_WGMMA_RS_N64("wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16", ", 1, 1, 0");
  } else {
    HISA_WGMMA_RS_N64("wgmma.mma_async.sync.aligned.m64n64k32.f32.e4m3.e4m3", ", 1, 1");
  }
}
#undef HISA_WGMMA_RS_N32
#undef HISA_WGMMA_RS_N64

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int kPending>  // until at most kPending committed groups are still running
__device__ __forceinline__ void wgmma_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory"); }
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
#endif

// KS 32-byte k-steps (K = 16·KS 16-bit values or 32·KS fp8 values), N = H' heads, MT 64-key M tiles per CTA, kParts = 3 for BF16x3 (K = 3 · the query row).
// fp8's kernel is held to 128 registers, so 4 CTAs share a multiprocessor (9 % faster at 128K than 3); the
// others need up to 168, and 3 fit.
template <int kOp, int KS, int N, int MT, int kParts>
__global__ void __launch_bounds__(kWgThreads, kOp == kOpE4M3 ? 4 : 2) score_wgmma_kernel(const ScoreLaunch a, int queries_per_cta) {
#ifdef HISA_WGMMA
  // Rows are handled as 16-bit units (an fp8 row of 128 codes is 64 of them).
  constexpr int Dp = KS * 16, kChunks = Dp / 8;  // K extent in 16-bit units (3·D' for BF16x3); 16-byte chunks per head row
  static_assert(Dp % 64 == 0, "the 128-byte swizzle takes K in 64-dim atoms");
  constexpr int kTile = 64 * MT;
  constexpr int kQElems = N * Dp, kAtomBytes = N * 128;  // one 64-dim slice of K for all heads
  constexpr int kRowDims = Dp / kParts, kRowChunks = kRowDims / 8;  // a query row in device memory
  extern __shared__ __align__(128) unsigned char smem_raw[];
  // The swizzle pattern repeats every 1024 bytes of shared address: buffers start on such a boundary.
  unsigned char* smem = smem_raw + ((1024 - (static_cast<uint32_t>(__cvta_generic_to_shared(smem_raw)) & 1023)) & 1023);
  uint16_t* qs = reinterpret_cast<uint16_t*>(smem);                                        // [2][kQElems]
  float* ws = reinterpret_cast<float*>(smem + size_t(2) * kQElems * sizeof(uint16_t));  // [2][N]

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, c = lane & 3;
  const CtaWork work = cta_work(a, queries_per_cta, kTile);
  if (work.begin >= work.end) return;  // before any load: sparse launches have many idle CTAs
  const int tile_lo = work.tile_lo, tile_hi = tile_lo + kTile - 1;
  const int wg_lo = tile_lo;
  const uint16_t* keys = static_cast<const uint16_t*>(a.keys);
  const uint16_t* qg = static_cast<const uint16_t*>(a.q);

  // A fragments of M tile mt: keys wg_lo + 64mt + 16warp + {g, g+8} (warp w of the warpgroup owns rows 16w..).
  uint32_t af[MT][KS][4];
  load_key_fragments(af, keys, a.key_count, Dp, wg_lo + warp * 16, 64, g, c);

  // Units of the tile that lie in the launch's range (the mask covers only those).
  const int last_unit = min(tile_hi, a.range_hi) / kMaskUnit;
  auto query = [&](int e) { return a.list_rows != nullptr ? a.list_rows[e] : e; };
  auto units_wanted = [&](int i, int from_unit, int to_unit) {
    for (int u = from_unit; u <= min(to_unit, last_unit); ++u) {
      if (unit_wanted(a, i, u)) return true;
    }
    return false;
  };
  auto wanted = [&](int e) {
    const int i = query(e);
    return a.lo[i] <= tile_hi && a.hi[i] >= tile_lo && units_wanted(i, tile_lo / kMaskUnit, tile_hi / kMaskUnit);
  };
  auto next_from = [&](int e) {
    while (e < work.end && !wanted(e)) ++e;
    return e;
  };
  // Chunk idx of a query's B tile: head h = idx / kChunks, 16-byte chunk ch = idx % kChunks of its row; 8
  // consecutive threads fill one 128-byte swizzled row. When the warpgroup covers whole groups of 8 heads per
  // pass (kChunks divides 128 / 8), a thread's chunk ch and h mod 8 are the same in every pass: its places in
  // shared memory and in the row are fixed offsets, computed once, and a pass adds a constant to both.
  constexpr bool kFixedPlaces = kWgThreads % (8 * kChunks) == 0 && (N * kChunks) % kWgThreads == 0;
  constexpr int kPasses = (N * kChunks + kWgThreads - 1) / kWgThreads, kHeadsPerPass = kWgThreads / kChunks;
  const int my_h = tid / kChunks, my_ch = tid % kChunks;
  const int my_byte = (my_ch >> 3) * kAtomBytes + my_h * 128 + (((my_ch & 7) ^ (my_h & 7)) << 4);
  const int my_src = my_h * kRowDims + (my_ch % kRowChunks) * 8;
  auto load = [&](int e, int buf) {
    const int i = query(e);
    const uint16_t* src = qg + size_t(i) * N * kRowDims;
    unsigned char* dst = reinterpret_cast<unsigned char*>(qs + size_t(buf) * kQElems);
    if constexpr (kFixedPlaces) {
#pragma unroll
      for (int p = 0; p < kPasses; ++p) {
        cp_async16(dst + my_byte + p * kHeadsPerPass * 128, src + my_src + p * kHeadsPerPass * kRowDims);
      }
    } else {
      for (int idx = tid; idx < N * kChunks; idx += kWgThreads) {
        const int h = idx / kChunks, ch = idx - h * kChunks;
        const int byte = (ch >> 3) * kAtomBytes + h * 128 + (((ch & 7) ^ (h & 7)) << 4);
        cp_async16(dst + byte, src + size_t(h) * kRowDims + (ch % kRowChunks) * 8);
      }
    }
    if (tid < N / 4) cp_async16(ws + buf * N + tid * 4, a.w + size_t(i) * N + tid * 4);
    cp_async_commit();
  };

  int cur = next_from(work.begin), buf = 0;
  if (cur < work.end) load(cur, 0);
  while (cur < work.end) {
    const int nxt = next_from(cur + 1);
    if (nxt < work.end) {
      load(nxt, buf ^ 1);  // that buffer's last readers finished before the barrier ending the previous step
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    fence_proxy_async();  // the copies become visible to the tensor cores' (async proxy) reads
    __syncthreads();
    const int qi = query(cur), qlo = a.lo[qi], qhi = a.hi[qi];
    if (wg_lo <= qhi && tile_hi >= qlo && units_wanted(qi, wg_lo / kMaskUnit, tile_hi / kMaskUnit)) {
      // warpgroup-uniform
      const uint16_t* qb = qs + size_t(buf) * kQElems;
      const float* wb = ws + buf * N;
      float acc[MT][N / 2];
      wgmma_fence();
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int ks = 0; ks < KS; ++ks) {
          // k-step ks: atom ks / 4, 32 bytes per step inside it.
          const unsigned char* b = reinterpret_cast<const unsigned char*>(qb) + (ks >> 2) * kAtomBytes + (ks & 3) * 32;
          wgmma_rs<kOp>(acc[mt], af[mt][ks], smem_descriptor_sw128(b), ks > 0);
        }
        wgmma_commit();
      }
      // Accumulator j of an M tile: n8 block j/4, key row g (+8 for j%4 >= 2), head 8(j/4) + 2c + j%2. The
      // first M tile's head sums run while the tensor cores finish the second.
      float part[2 * MT];  // (mt, row g / g+8): index mt*2 + r
      // One fused multiply-add per head and key after the ReLU (two chains per key row, so each FMA waits on
      // the one before it in its chain only), and each head pair's weights read as one 8-byte load: the
      // epilogue is what limits the kernel (tests/bench/NOTES.md), and the plain expression compiled to a
      // multiply, a fused multiply-add and an add per two heads.
      auto head_sums = [&](int mt, const float (&d)[N / 2]) {
        float p0 = 0.f, p1 = 0.f, q0 = 0.f, q1 = 0.f;
#pragma unroll
        for (int nb = 0; nb < N / 8; ++nb) {
          const float2 w = *reinterpret_cast<const float2*>(wb + nb * 8 + 2 * c);
          p0 = fmaf(w.x, fmaxf(d[nb * 4 + 0], 0.f), p0);
          q0 = fmaf(w.y, fmaxf(d[nb * 4 + 1], 0.f), q0);
          p1 = fmaf(w.x, fmaxf(d[nb * 4 + 2], 0.f), p1);
          q1 = fmaf(w.y, fmaxf(d[nb * 4 + 3], 0.f), q1);
        }
        part[mt * 2] = p0 + q0;
        part[mt * 2 + 1] = p1 + q1;
      };
      if constexpr (MT == 2) {
        wgmma_wait<1>();
        head_sums(0, acc[0]);
        wgmma_wait<0>();
        head_sums(1, acc[1]);
      } else {
        wgmma_wait<0>();
        head_sums(0, acc[0]);
      }
#pragma unroll
      for (int j = 0; j < 2 * MT; ++j) {  // the quad's 4 lanes hold disjoint heads of the same keys
        part[j] += __shfl_xor_sync(0xffffffffu, part[j], 1);
        part[j] += __shfl_xor_sync(0xffffffffu, part[j], 2);
      }
      // Lane c of the quad stores sum c: M tile c/2, key row g + 8(c%2).
      float v = part[0];
#pragma unroll
      for (int j = 1; j < 2 * MT; ++j) v = c == j ? part[j] : v;
      const int s = wg_lo + (c >> 1) * 64 + warp * 16 + g + (c & 1) * 8;
      if (c < 2 * MT && s >= qlo && s <= qhi && s < a.key_count && unit_wanted(a, qi, s / kMaskUnit)) {
        a.out[size_t(qi) * a.out_stride + (s - a.out_base)] = clean_score(v * a.scales[s]);
      }
    }
    __syncthreads();  // everyone is done with `buf` before it is refilled
    cur = nxt;
    buf ^= 1;
  }
#else
  __trap();  // never launched: score_device() offers wgmma only on sm_90 devices, which run the sm_90a image
#endif
}

template <int kOp, int KS, int N, int MT, int kParts>
void launch(const ScoreLaunch& a, cudaStream_t stream) {
  const int tiles = tile_count(a, 64 * MT);
  // Split keys hold three times the registers' worth of key fragments: at least 8 queries per CTA repay loading
  // them (J has few tiles, so the general rule would give one query per CTA).
  const int qpc = std::max(queries_per_cta(a.queries, tiles), kParts == 3 ? 8 : 1);
  const size_t smem = 1024 + size_t(2) * N * KS * 16 * sizeof(uint16_t) + size_t(2) * N * sizeof(float);
  HISA_CUDA_CHECK(cudaFuncSetAttribute(score_wgmma_kernel<kOp, KS, N, MT, kParts>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  const dim3 grid = a.list_rows != nullptr ? dim3(unsigned(std::max(a.cta_bound, 1)))
                                           : dim3(unsigned(tiles), unsigned((a.queries + qpc - 1) / qpc));
  score_wgmma_kernel<kOp, KS, N, MT, kParts><<<grid, kWgThreads, smem, stream>>>(a, qpc);
  HISA_CUDA_CHECK_LAUNCH("score_wgmma_kernel");
}

template <int kOp, int N>
void launch_dim(const ScoreLaunch& a, cudaStream_t stream) {
  if (a.type == ValueType::BF16x3) {
    return a.dim == 384 ? launch<kOpBF16, 24, N, 1, 3>(a, stream) : launch<kOpBF16, 12, N, 1, 3>(a, stream);
  }
  if (a.type == ValueType::E4M3) return launch<kOpE4M3, kFp8Dim / 32, N, 2, 1>(a, stream);
  if (a.dim == 128) return launch<kOp, 8, N, 2, 1>(a, stream);
  return launch<kOp, 4, N, 2, 1>(a, stream);
}

template <int kOp>
void launch_heads(const ScoreLaunch& a, cudaStream_t stream) {
  if (a.heads == 64) return launch_dim<kOp, 64>(a, stream);
  return launch_dim<kOp, 32>(a, stream);
}

}  // namespace

void launch_wgmma(const ScoreLaunch& a, cudaStream_t stream) {
  return a.type == ValueType::F16 ? launch_heads<kOpF16>(a, stream) : launch_heads<kOpBF16>(a, stream);
}

}  // namespace hisa::cuda::detail
