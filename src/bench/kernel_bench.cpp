// `hisa bench --kernel`'s text and JSON (bench/kernel_bench.hpp). Built without CUDA too, so the output is
// tested on machines without a GPU.
#include "bench/kernel_bench.hpp"

#include <cstdio>
#include <nlohmann/json.hpp>

namespace hisa {

const std::vector<std::string>& kernel_bench_kernels() {
  static const std::vector<std::string> k = {"score", "topk", "choice", "masses"};
  return k;
}

const std::vector<std::string>& kernel_bench_dtypes() {
  static const std::vector<std::string> d = {"bf16", "f16", "fp32", "fp8"};
  return d;
}

std::string kernel_bench_unit(const KernelBenchOptions& o) { return o.kernel == "score" ? "TFLOP/s" : "GB/s"; }

void print_kernel_bench_header(std::ostream& out, const KernelBenchOptions& o, const KernelBenchResult& r) {
  out << "kernel bench on " << r.gpu << ": " << o.kernel << ", " << o.queries << " queries";
  if (o.kernel == "score") out << ", H = " << o.heads << ", D = " << o.dim << ", " << o.dtype;
  if (o.kernel == "topk" || o.kernel == "masses") out << ", k = " << o.topk;
  if (o.kernel == "choice" || o.kernel == "masses") out << ", B = " << o.block_size << ", m = " << o.blocks;
  out << "; median of " << o.repeat << " launches after 2 warm-ups (CUDA events)\n";
  char line[160];
  std::snprintf(line, sizeof line, "%9s %10s %10s %8s  %s\n", "L", "ms", kernel_bench_unit(o).c_str(), "% peak", "kernel");
  out << line;
}

void print_kernel_bench_row(std::ostream& out, const KernelBenchOptions&, const KernelBenchRow& row) {
  char line[256];
  char peak[16] = "n/a";
  if (row.percent_of_peak > 0) std::snprintf(peak, sizeof peak, "%.1f", row.percent_of_peak);
  std::snprintf(line, sizeof line, "%9lld %10.4f %10.1f %8s  %s\n", (long long)row.keys, row.ms, row.rate, peak,
                row.ran.c_str());
  out << line;
}

nlohmann::json kernel_bench_json(const KernelBenchOptions& o, const KernelBenchResult& r) {
  nlohmann::json j;
  j["gpu"] = r.gpu;
  j["kernel"] = o.kernel;
  j["shape"] = {{"queries", o.queries}, {"heads", o.heads},           {"dim", o.dim},       {"topk", o.topk},
                {"block_size", o.block_size}, {"blocks", o.blocks}, {"dtype", o.dtype}, {"repeat", o.repeat}};
  j["unit"] = kernel_bench_unit(o);
  j["rows"] = nlohmann::json::array();
  for (const auto& row : r.rows) {
    j["rows"].push_back({{"keys", row.keys},
                         {"ran", row.ran},
                         {"ms", row.ms},
                         {"rate", row.rate},
                         {"percent_of_peak", row.percent_of_peak > 0 ? nlohmann::json(row.percent_of_peak) : nlohmann::json(nullptr)}});
  }
  return j;
}

}  // namespace hisa
