// `hisa bench`: speed of the selection engine against the machine's own baselines.
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "core/atomic_file.hpp"
#include "core/error.hpp"
#include "bench/cpu_bench.hpp"
#include "bench/cuda_bench.hpp"
#include "bench/kernel_bench.hpp"
#include "cli/run_flags.hpp"
#include "select/config.hpp"

#ifdef HISA_HAVE_CUDA
#include "cuda/device_info.hpp"
#endif

namespace hisa::cli {

namespace {

struct BenchFlags {
  std::string device = "cpu";
  std::vector<int64_t> keys;  // empty: the device's default (cpu: one L, cuda: the sampled matrix)
  bool no_prefill = false;
  bool no_compressed = false;
  std::string json_out;
  CpuBenchOptions cpu;
  CudaBenchOptions gpu;
  KernelBenchOptions kernel;  // used when --kernel is given
  bool one_kernel = false;
  bool check = false;
};

int run_cpu(const BenchFlags& f) {
  if (f.one_kernel) throw UsageError("--kernel times a GPU kernel: it needs --device cuda");
  if (!f.json_out.empty()) throw UsageError("--json: written by --device cuda only");
  bool missed = false;
  for (int64_t L : f.keys.empty() ? std::vector<int64_t>{f.cpu.keys} : f.keys) {
    CpuBenchOptions o = f.cpu;
    o.keys = L;
    const CpuBenchResult r = run_cpu_bench(o);
    print_cpu_bench(std::cout, o, r);
    missed = missed || r.score_vs_gemm() < 0.5 || r.topk_vs_score() >= 0.1;
  }
  if (f.check && missed) {
    std::cerr << "hisa: bench targets missed\n";
    return 1;
  }
  return 0;
}

#ifdef HISA_HAVE_CUDA
int run_one_kernel(const BenchFlags& f) {
  const KernelBenchResult r = run_kernel_bench(f.kernel, [&](const KernelBenchResult& so_far) {
    if (so_far.rows.size() == 1) print_kernel_bench_header(std::cout, f.kernel, so_far);
    print_kernel_bench_row(std::cout, f.kernel, so_far.rows.back());
    std::cout.flush();
  });
  if (!f.json_out.empty()) {
    write_file_atomically(f.json_out, [&](std::ostream& out) { out << kernel_bench_json(f.kernel, r).dump(2) << "\n"; });
  }
  return 0;
}

int run_cuda(const BenchFlags& f) {
  if (f.check) throw UsageError("--check: the targets are defined for --device cpu only");
  check_outputs({{f.json_out, "--json", false}}, {});
  if (f.one_kernel) return run_one_kernel(f);
  // Each case is printed when it ends: the whole matrix takes a while, and a run cut short keeps its lines.
  const CudaBenchResult r = run_cuda_bench(f.gpu, [&](const CudaBenchResult& so_far) {
    if (so_far.cases.size() == 1) print_cuda_bench_header(std::cout, f.gpu, so_far);
    print_cuda_bench_case(std::cout, f.gpu, so_far, so_far.cases.back());
    std::cout.flush();
  });
  print_cuda_bench_summary(std::cout, f.gpu, r);
  if (!f.json_out.empty()) {
    write_file_atomically(f.json_out, [&](std::ostream& out) { out << cuda_bench_json(f.gpu, r).dump(2) << "\n"; });
  }
  return 0;
}
#endif

int run_bench_command(const BenchFlags& f) {
  std::string device = f.device;
#ifdef HISA_HAVE_CUDA
  if (device == "auto") {
    device = cuda::list_devices().empty() ? "cpu" : "cuda";
    if (device == "cpu") std::cerr << "hisa: no GPU found; benchmarking the CPU engine\n";
  }
  if (device == "cuda") return run_cuda(f);
#else
  if (device == "cuda") throw UsageError("--device cuda: this build has no CUDA support (built without nvcc)");
  if (device == "auto") std::cerr << "hisa: built without CUDA; benchmarking the CPU engine\n";
#endif
  return run_cpu(f);
}

}  // namespace

void setup_bench(CLI::App& app, int& status) {
  auto f = std::make_shared<BenchFlags>();
  CLI::App* sub = app.add_subcommand("bench", "Time scoring and top-k against the hardware's own baselines");
  sub->add_option("--device", f->device, "cpu, cuda or auto")->check(CLI::IsMember({"cpu", "cuda", "auto"}))->capture_default_str();
  sub->add_option("--keys", f->keys, "Keys L, a comma-separated list (cpu: one run per L, default 32768; cuda: sampled cases, default 8192,32768,65536,131072)")
      ->delimiter(',')->check(CLI::PositiveNumber);
  auto* prefill = sub->add_option("--prefill", f->gpu.prefill, "Full causal prefills at these L (cuda)")
                      ->delimiter(',')->check(CLI::PositiveNumber)->capture_default_str();
  sub->add_flag("--no-prefill", f->no_prefill, "No prefill cases (cuda)")->excludes(prefill);
  auto* compressed = sub->add_option("--compressed-topk", f->gpu.compressed_topk,
                                     "DeepSeek-V4 compressed cases (cuda): 1M tokens in rows of 4, one case per k")
                         ->delimiter(',')->check(int_range(1, kMaxSelectionSize))->capture_default_str();
  sub->add_flag("--no-compressed", f->no_compressed, "No compressed cases (cuda)")->excludes(compressed);
  sub->add_option("--heads", f->cpu.heads, "Heads H")->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("--dim", f->cpu.dim, "Head dim D")->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("--queries", f->cpu.queries, "Queries scored against every key (cuda default: 256)")->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("--topk", f->cpu.topk, "k")->capture_default_str()->check(int_range(1, kMaxSelectionSize));
  sub->add_option("--block-size", f->gpu.block_size, "HISA block size B (cuda)")->capture_default_str()
      ->check(int_range(1, kMaxSelectionSize));
  sub->add_option("--blocks", f->gpu.blocks, "HISA blocks m (cuda)")->capture_default_str()->check(int_range(1, kMaxSelectionSize));
  sub->add_option("--threads", f->cpu.threads, "Threads (default 0: all cores)")->check(thread_count());
  sub->add_option("--repeat", f->cpu.repeat, "Timed repetitions (cpu: best is reported, default 3; cuda: median, default 20, prefill cases max(2, repeat/5))")->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("--json", f->json_out, "Write every figure, the peaks and the targets as JSON to FILE (cuda)");
  sub->add_flag("--check", f->check, "Exit 1 when a target is missed (cpu)");
  auto* kernel = sub->add_option("--kernel", f->kernel.kernel,
                                 "Time one kernel family alone (cuda): score, topk, choice or masses, at each --keys L")
                     ->check(CLI::IsMember(kernel_bench_kernels()));
  sub->add_option("--dtype", f->kernel.dtype, "Element type for --kernel score: bf16, f16, fp32 or fp8 (fp8 tensor cores)")
      ->check(CLI::IsMember(kernel_bench_dtypes()))
      ->capture_default_str()
      ->needs(kernel);
  add_verbose_flag(sub);
  sub->callback([f, sub, &status] {
    // The shape flags are shared; the GPU's defaults differ only where the option was not given.
    if (!f->keys.empty()) f->gpu.keys = f->keys;
    if (f->no_prefill) f->gpu.prefill.clear();
    if (f->no_compressed) f->gpu.compressed_topk.clear();
    f->gpu.heads = f->cpu.heads;
    f->gpu.dim = f->cpu.dim;
    f->gpu.topk = f->cpu.topk;
    if (sub->count("--queries") > 0) f->gpu.queries = f->cpu.queries;
    if (sub->count("--repeat") > 0) f->gpu.repeat = f->cpu.repeat;
    // One kernel: the GPU matrix's shape, its sampled L's.
    f->one_kernel = sub->count("--kernel") > 0;
    f->kernel.keys = f->gpu.keys;
    f->kernel.queries = f->gpu.queries;
    f->kernel.heads = f->gpu.heads;
    f->kernel.dim = f->gpu.dim;
    f->kernel.topk = f->gpu.topk;
    f->kernel.block_size = f->gpu.block_size;
    f->kernel.blocks = f->gpu.blocks;
    f->kernel.repeat = f->gpu.repeat;
    status = run_bench_command(*f);
  });
}

}  // namespace hisa::cli
