#include "report/cuda_bench.hpp"

#include <algorithm>
#include <cstdio>

namespace hisa {

void print_cuda_bench(std::ostream& out, const CudaBenchOptions& o, const CudaBenchResult& r) {
  char line[512];
  out << "CUDA bench on " << r.gpu << ": L = " << o.keys << " keys, H = " << o.heads << ", D = " << o.dim << ", "
      << o.queries << " queries (each sees all L keys), top-" << o.topk << ", bf16 values, median of " << o.repeat
      << "\n";
  std::snprintf(line, sizeof line, "  flat scoring, tensor cores (bf16 mma.sync)   %9.3f ms  %8.1f TFLOP/s\n",
                r.score_mma_ms, r.mma_tflops());
  out << line;
  std::snprintf(line, sizeof line, "  flat scoring, fp32 CUDA cores (same values)  %9.3f ms  %8.1f TFLOP/s\n",
                r.score_f32_ms, r.f32_tflops());
  out << line;
  std::snprintf(line, sizeof line, "  exact top-%-5lld per row                     %9.3f ms  %8.1f GB/s of scores (one read)\n",
                (long long)o.topk, r.topk_ms, r.topk_gbs());
  out << line;
  std::snprintf(line, sizeof line, "  flat total (scoring + top-k)                 %9.3f ms\n", r.flat_ms());
  out << line;
  out << "  through the engine's select(), medians of its stage times:\n";
  std::snprintf(line, sizeof line, "    flat: scoring + top-k kernels %.3f ms; whole call %.3f ms\n", r.engine_flat_gpu_ms,
                r.engine_flat_ms);
  out << line;
  std::snprintf(line, sizeof line,
                "    HISA(B=%lld, m=%lld): block scores %.3f ms + host block stage %.3f ms + token scores %.3f ms "
                "(m*B/L = %.1f %% of the keys) + top-k %.3f ms = %.3f ms (%.2f x flat kernels); whole call %.3f ms\n",
                (long long)o.block_size, (long long)o.blocks, r.hisa_blocks_ms, r.hisa_host_ms, r.hisa_score_ms,
                100.0 * std::min(1.0, double(o.block_size * o.blocks) / double(o.keys)), r.hisa_topk_ms, r.hisa_ms(),
                r.hisa_ms() / r.engine_flat_gpu_ms, r.engine_hisa_ms);
  out << line;
}

}  // namespace hisa
