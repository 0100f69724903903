// `hisa bench`: speed of the selection engine against the machine's own baselines.
#include <iostream>
#include <memory>

#include "cli/commands.hpp"
#include "core/error.hpp"
#include "report/cpu_bench.hpp"
#include "report/cuda_bench.hpp"

#ifdef HISA_HAVE_CUDA
#include "cuda/device_info.hpp"
#endif

namespace hisa::cli {

namespace {

struct BenchFlags {
  std::string device = "cpu";
  CpuBenchOptions cpu;
  CudaBenchOptions gpu;
  bool check = false;
};

int run_cpu(const BenchFlags& f) {
  CpuBenchResult r = run_cpu_bench(f.cpu);
  print_cpu_bench(std::cout, f.cpu, r);
  if (f.check && (r.score_vs_gemm() < 0.5 || r.topk_vs_score() >= 0.1)) {
    std::cerr << "hisa: bench targets missed\n";
    return 1;
  }
  return 0;
}

int run_bench_command(const BenchFlags& f) {
  std::string device = f.device;
#ifdef HISA_HAVE_CUDA
  if (device == "auto") {
    device = cuda::list_devices().empty() ? "cpu" : "cuda";
    if (device == "cpu") std::cerr << "hisa: no GPU found; benchmarking the CPU engine\n";
  }
  if (device == "cuda") {
    if (f.check) throw UsageError("--check: the targets are defined for --device cpu only");
    CudaBenchResult r = run_cuda_bench(f.gpu);
    print_cuda_bench(std::cout, f.gpu, r);
    return 0;
  }
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
  sub->add_option("--keys", f->cpu.keys, "Keys L")->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("--heads", f->cpu.heads, "Heads H")->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("--dim", f->cpu.dim, "Head dim D")->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("--queries", f->cpu.queries, "Queries scored against every key (cuda default: 256)")->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("--topk", f->cpu.topk, "k")->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("--block-size", f->gpu.block_size, "HISA block size B (cuda)")->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("--blocks", f->gpu.blocks, "HISA blocks m (cuda)")->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("--threads", f->cpu.threads, "Threads (default: all cores)");
  sub->add_option("--repeat", f->cpu.repeat, "Timed repetitions (cpu: best is reported, default 3; cuda: median, default 20)")->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_flag("--check", f->check, "Exit 1 when a target is missed (cpu)");
  sub->callback([f, sub, &status] {
    // The shape flags are shared; the GPU's defaults differ only where the option was not given.
    f->gpu.keys = f->cpu.keys;
    f->gpu.heads = f->cpu.heads;
    f->gpu.dim = f->cpu.dim;
    f->gpu.topk = f->cpu.topk;
    if (sub->count("--queries") > 0) f->gpu.queries = f->cpu.queries;
    if (sub->count("--repeat") > 0) f->gpu.repeat = f->cpu.repeat;
    status = run_bench_command(*f);
  });
}

}  // namespace hisa::cli
