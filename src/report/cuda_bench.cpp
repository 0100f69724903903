#include "report/cuda_bench.hpp"

#include <cstdio>

namespace hisa {

void print_cuda_bench(std::ostream& out, const CudaBenchOptions& o, const CudaBenchResult& r) {
  char line[256];
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
  std::snprintf(line, sizeof line,
                "  HISA(B=%lld, m=%lld): block scores %.3f ms, host block stage %.3f ms, token scores %.3f ms "
                "(%.1f %% of key units), top-k %.3f ms\n",
                (long long)o.block_size, (long long)o.blocks, r.hisa_blocks_ms, r.hisa_host_ms, r.hisa_score_ms,
                100.0 * r.kept_fraction, r.hisa_topk_ms);
  out << line;
  std::snprintf(line, sizeof line, "  HISA total                                   %9.3f ms  = %.2f x flat\n", r.hisa_ms(),
                r.hisa_ms() / r.flat_ms());
  out << line;
  std::snprintf(line, sizeof line,
                "  engine select() end to end (host clock, with uploads and host work): flat %.3f ms, hisa %.3f ms\n",
                r.engine_flat_ms, r.engine_hisa_ms);
  out << line;
}

}  // namespace hisa
