// `hisa bench`: speed of the selection engine against the machine's own baselines.
#include <iostream>
#include <memory>

#include "cli/commands.hpp"
#include "core/error.hpp"
#include "report/cpu_bench.hpp"

namespace hisa::cli {

namespace {

struct BenchFlags {
  std::string device = "cpu";
  CpuBenchOptions cpu;
  bool check = false;
};

int run_bench_command(const BenchFlags& f) {
  if (f.device != "cpu") throw UsageError("--device " + f.device + ": this build benchmarks the CPU engine only");
  CpuBenchResult r = run_cpu_bench(f.cpu);
  print_cpu_bench(std::cout, f.cpu, r);
  if (f.check && (r.score_vs_gemm() < 0.5 || r.topk_vs_score() >= 0.1)) {
    std::cerr << "hisa: bench targets missed\n";
    return 1;
  }
  return 0;
}

}  // namespace

void setup_bench(CLI::App& app, int& status) {
  auto f = std::make_shared<BenchFlags>();
  CLI::App* sub = app.add_subcommand("bench", "Time scoring and top-k against the hardware's own baselines");
  sub->add_option("--device", f->device, "cpu")->check(CLI::IsMember({"cpu", "cuda", "auto"}))->capture_default_str();
  sub->add_option("--keys", f->cpu.keys, "Keys L")->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("--heads", f->cpu.heads, "Heads H")->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("--dim", f->cpu.dim, "Head dim D")->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("--queries", f->cpu.queries, "Queries scored against every key")->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("--topk", f->cpu.topk, "k")->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("--threads", f->cpu.threads, "Threads (default: all cores)");
  sub->add_option("--repeat", f->cpu.repeat, "Timed repetitions (best is reported)")->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_flag("--check", f->check, "Exit 1 when a target is missed");
  sub->callback([f, &status] { status = run_bench_command(*f); });
}

}  // namespace hisa::cli
