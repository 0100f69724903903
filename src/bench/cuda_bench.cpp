// The CUDA bench's peaks, targets, text and JSON (report/cuda_bench.hpp). Built without CUDA too, so the
// output is tested on machines without a GPU.
#include "bench/cuda_bench.hpp"

#include <cstdio>
#include <utility>
#include <nlohmann/json.hpp>

namespace hisa {

namespace {

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

// "64K" for multiples of 1024, else the number.
std::string kilo(int64_t L) { return L % 1024 == 0 ? std::to_string(L / 1024) + "K" : std::to_string(L); }

std::string format(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

// 100·value/peak as "27.2 %", or "n/a" when the peak is unknown.
std::string percent(double value, double peak) { return peak > 0 ? format("%.1f %%", 100.0 * value / peak) : "n/a"; }
nlohmann::json percent_json(double value, double peak) {
  return peak > 0 ? nlohmann::json(100.0 * value / peak) : nlohmann::json(nullptr);
}
nlohmann::json known(double v) { return v > 0 ? nlohmann::json(v) : nlohmann::json(nullptr); }

BenchTarget target(std::string what, std::string unit, double goal, bool at_most = false) {
  BenchTarget t;
  t.what = std::move(what);
  t.unit = std::move(unit);
  t.target = goal;
  t.at_most = at_most;
  return t;
}

std::string hisa_name(const CudaBenchOptions& o) {
  return "HISA(B=" + std::to_string(o.block_size) + ", m=" + std::to_string(o.blocks) + ")";
}

// A target's figure with its unit: "128.40 ms", "238.0 TFLOP/s", "1.74x"; the goal itself as written ("45 ms").
std::string with_unit(const BenchTarget& t, double v, bool goal) {
  const std::string number = format(goal ? "%g" : t.unit == "TFLOP/s" || t.unit == "% of HBM" ? "%.1f" : "%.2f", v);
  return t.unit == "x" ? number + "x" : number + " " + t.unit;
}

}  // namespace

GpuPeaks datasheet_peaks(const std::string& name) {
  GpuPeaks p;
  // NVIDIA's datasheets give dense figures as half the "with sparsity" ones. NVL parts have lower clocks and
  // are not in the table.
  if (!contains(name, "NVL") && contains(name, "H200")) {
    p = {989.4, 1979.0, "NVIDIA datasheet, H200 SXM", 0, ""};
  } else if (!contains(name, "NVL") && contains(name, "H100") && (contains(name, "HBM3") || contains(name, "SXM"))) {
    p = {989.4, 1979.0, "NVIDIA datasheet, H100 SXM", 0, ""};
  } else if (contains(name, "H100") && contains(name, "PCIe")) {
    p = {756.0, 1513.0, "NVIDIA datasheet, H100 PCIe", 0, ""};
  } else {
    p.tensor_source = "unknown: " + name + " is not in the table of datasheet peaks";
  }
  return p;
}

std::vector<BenchTarget> bench_targets(const CudaBenchOptions& o, const CudaBenchResult& r) {
  // The lowest value over every case (fp8: every case with fp8 figures): a rate target is reached when every
  // case reaches it.
  auto lowest = [&](BenchTarget t, auto value, bool fp8 = false) {
    t.note = "no case run";
    for (const auto& c : r.cases) {
      if (fp8 && !c.has_fp8()) continue;
      const double v = value(c);
      if (!t.value || v < *t.value) {
        t.value = v;
        t.note = "lowest: " + c.shape() + " " + kilo(c.keys);
      }
    }
    if (fp8 && !t.value && !r.cases.empty()) t.note = "not measured: no fp8 tensor-core kernel for this GPU and shape";
    return t;
  };
  auto one = [&](BenchTarget t, bool prefill, int64_t L, auto value, bool fp8 = false) {
    for (const auto& c : r.cases) {
      if (c.prefill == prefill && c.keys == L && c.compress_ratio == 1 && (!fp8 || c.has_fp8())) t.value = value(c);
    }
    if (!t.value) {
      t.note = std::string("not measured: no ") + (prefill ? "prefill" : "sampled") + " case at L = " + std::to_string(L) +
               (fp8 ? " with fp8 figures" : "");
    }
    return t;
  };
  auto flat_ms = [](const CudaBenchCase& c) { return c.flat_ms(); };
  auto hisa_ms = [](const CudaBenchCase& c) { return c.hisa_ms(); };
  auto speedup = [](const CudaBenchCase& c) { return c.speedup(); };
  std::vector<BenchTarget> out;
  out.push_back(lowest(target("flat scoring, bf16 tensor cores", "TFLOP/s", 600),
                       [](const CudaBenchCase& c) { return c.score_tflops(); }));
  BenchTarget hbm = target("flat top-k", "% of HBM", 40);
  if (r.peaks.hbm_gbs > 0) {
    out.push_back(lowest(hbm, [&](const CudaBenchCase& c) { return 100.0 * c.topk_gbs() / r.peaks.hbm_gbs; }));
  } else {
    hbm.note = "not measured: HBM bandwidth unknown";
    out.push_back(hbm);
  }
  out.push_back(one(target("full causal flat at 64K", "ms", 60, true), true, 65536, flat_ms));
  out.push_back(one(target(hisa_name(o) + " over flat at 32K (sampled)", "x", 2.5), false, 32768, speedup));
  out.push_back(one(target(hisa_name(o) + " over flat at 128K (sampled)", "x", 4), false, 131072, speedup));
  out.push_back(one(target("full causal HISA at 64K", "ms", 20, true), true, 65536, hisa_ms));
  // The same targets on the fp8 tensor cores (an fp8 dump under --fp8-mma), tighter: DeepGEMM + fast_topk_v2's
  // 42.8 ms for the 64K prefill and SGLang HISA's 24.7 ms are fp8 figures.
  out.push_back(lowest(target("flat scoring, fp8 tensor cores (--fp8-mma)", "TFLOP/s", 1000),
                       [](const CudaBenchCase& c) { return c.fp8_tflops(); }, true));
  out.push_back(one(target("full causal flat at 64K, fp8 tensor cores", "ms", 40, true), true, 65536,
                    [](const CudaBenchCase& c) { return c.fp8_flat_ms(); }, true));
  out.push_back(one(target("full causal HISA at 64K, fp8 tensor cores", "ms", 15, true), true, 65536,
                    [](const CudaBenchCase& c) { return c.fp8_hisa_ms; }, true));
  return out;
}

void print_cuda_bench_header(std::ostream& out, const CudaBenchOptions& o, const CudaBenchResult& r) {
  out << "CUDA bench on " << r.gpu << " (" << r.multiprocessors << " SMs, " << format("%.1f", r.memory_gib)
      << " GiB): H = " << o.heads << ", D = " << o.dim << ", top-" << o.topk << ", " << hisa_name(o)
      << ", bf16 q and k, fp32 weights; then the same values rounded to fp8 e4m3 on an --fp8-mma engine\n";
  out << "  bf16 dense tensor peak: "
      << (r.peaks.bf16_tflops > 0 ? format("%.1f TFLOP/s", r.peaks.bf16_tflops) + " (fp8 " + format("%.0f", r.peaks.fp8_tflops) + "), "
                                  : std::string("n/a, "))
      << r.peaks.tensor_source << "\n";
  out << "  HBM bandwidth: " << (r.peaks.hbm_gbs > 0 ? format("%.0f GB/s", r.peaks.hbm_gbs) + ", " : std::string("n/a, "))
      << r.peaks.hbm_source << "\n";
  out << "  every case through the engine's select(): kernels by CUDA events, the whole call by the host clock; medians\n"
         "  after 2 warm-ups; TFLOP/s = 2*H*D*(visible keys) / scoring time, GB/s = 4 bytes*(visible keys) / top-k time;\n"
         "  speedup = flat kernels / HISA kernels\n";
}

void print_cuda_bench_case(std::ostream& out, const CudaBenchOptions& /*options*/, const CudaBenchResult& r,
                           const CudaBenchCase& c) {
  char line[512];
  if (c.prefill) {
    std::snprintf(line, sizeof line,
                  "prefill L = %lld: %lld queries, query i at position i sees keys [0, i] (%.4g visible in all); "
                  "median of %d (prefill cases repeat fewer times)\n",
                  (long long)c.keys, (long long)c.queries, c.visible, c.repeat);
  } else if (c.compress_ratio > 1) {
    std::snprintf(line, sizeof line,
                  "DeepSeek-V4 compressed, top-%lld: L = %lld rows of %lld tokens (%lld tokens); %lld queries at the "
                  "last token, each sees all L rows; median of %d\n",
                  (long long)c.topk, (long long)c.keys, (long long)c.compress_ratio, (long long)(c.keys * c.compress_ratio),
                  (long long)c.queries, c.repeat);
  } else {
    std::snprintf(line, sizeof line, "sampled L = %lld: %lld queries at position L-1, each sees all L keys; median of %d\n",
                  (long long)c.keys, (long long)c.queries, c.repeat);
  }
  out << line;
  const std::string f32 = c.f32_score_ms > 0 ? format("; fp32 CUDA-core path %.1f TFLOP/s", c.f32_tflops()) : "";
  std::snprintf(line, sizeof line, "  flat: scoring %.3f ms = %.1f TFLOP/s (%s of bf16 peak%s)\n", c.flat_score_ms,
                c.score_tflops(), percent(c.score_tflops(), r.peaks.bf16_tflops).c_str(), f32.c_str());
  out << line;
  std::snprintf(line, sizeof line,
                "        top-%lld %.3f ms = %.1f GB/s (%s of HBM); kernels %.3f ms; select() %.3f ms (%.2fx the kernels; "
                "from fp32 queries %.3f ms, %.2fx)\n",
                (long long)c.topk, c.flat_topk_ms, c.topk_gbs(), percent(c.topk_gbs(), r.peaks.hbm_gbs).c_str(),
                c.flat_ms(), c.flat_call_ms, c.flat_call_ms / c.flat_ms(), c.flat_call_f32_ms, c.flat_call_f32_ms / c.flat_ms());
  out << line;
  std::snprintf(line, sizeof line,
                "  HISA: block scores %.3f + block choice %.3f + token scores %.3f + top-k %.3f = %.3f ms, "
                "speedup %.2fx; select() %.3f ms (%.2fx the kernels; from fp32 queries %.3f ms, %.2fx)\n",
                c.hisa_blocks_ms, c.hisa_choice_ms, c.hisa_score_ms, c.hisa_topk_ms, c.hisa_ms(),
                c.speedup(), c.hisa_call_ms, c.hisa_call_ms / c.hisa_ms(), c.hisa_call_f32_ms, c.hisa_call_f32_ms / c.hisa_ms());
  out << line;
  if (c.has_fp8()) {
    std::snprintf(line, sizeof line,
                  "  fp8 tensor cores (--fp8-mma): flat scoring %.3f ms = %.1f TFLOP/s (%s of fp8 peak), top-k %.3f, "
                  "kernels %.3f ms; HISA kernels %.3f ms\n",
                  c.fp8_score_ms, c.fp8_tflops(), percent(c.fp8_tflops(), r.peaks.fp8_tflops).c_str(), c.fp8_topk_ms,
                  c.fp8_flat_ms(), c.fp8_hisa_ms);
  } else {
    std::snprintf(line, sizeof line, "  fp8 tensor cores (--fp8-mma): not measured (no fp8 kernel for this GPU and shape)\n");
  }
  out << line;
}

void print_cuda_bench_summary(std::ostream& out, const CudaBenchOptions& o, const CudaBenchResult& r) {
  char line[512];
  out << "\nsummary: flat and HISA kernel times in ms, speedup = flat / HISA; TFLOP/s and % of the bf16 peak of flat\n"
         "scoring; GB/s and % of HBM bandwidth of flat top-k; the fp8 tensor cores' flat and HISA kernel times and flat\n"
         "scoring TFLOP/s and % of the fp8 peak (-: not measured)\n";
  std::snprintf(line, sizeof line, "%-8s %7s %7s %9s %9s %8s %8s %7s %8s %7s %9s %9s %8s %7s\n", "shape", "L", "queries",
                "flat", "HISA", "speedup", "TFLOP/s", "% peak", "GB/s", "% HBM", "fp8 flat", "fp8 HISA", "TFLOP/s",
                "% peak");
  out << line;
  for (const auto& c : r.cases) {
    std::snprintf(line, sizeof line, "%-8s %7lld %7lld %9.3f %9.3f %7.2fx %8.1f %7s %8.1f %7s ", c.shape().c_str(),
                  (long long)c.keys, (long long)c.queries, c.flat_ms(), c.hisa_ms(), c.speedup(), c.score_tflops(),
                  percent(c.score_tflops(), r.peaks.bf16_tflops).c_str(), c.topk_gbs(),
                  percent(c.topk_gbs(), r.peaks.hbm_gbs).c_str());
    out << line;
    if (c.has_fp8()) {
      std::snprintf(line, sizeof line, "%9.3f %9.3f %8.1f %7s\n", c.fp8_flat_ms(), c.fp8_hisa_ms, c.fp8_tflops(),
                    percent(c.fp8_tflops(), r.peaks.fp8_tflops).c_str());
    } else {
      std::snprintf(line, sizeof line, "%9s %9s %8s %7s\n", "-", "-", "-", "-");
    }
    out << line;
  }
  out << "\ntargets (benchmarks, not tests)\n";
  for (const auto& t : bench_targets(o, r)) {
    out << "  " << t.what << ": ";
    const std::string goal = std::string("(target ") + (t.at_most ? "<= " : ">= ") + with_unit(t, t.target, true) + ")";
    if (!t.value) {
      out << t.note << " " << goal << "\n";
      continue;
    }
    out << with_unit(t, *t.value, false) << (t.note.empty() ? "" : ", " + t.note) << " " << goal << ": "
        << (t.reached() ? "reached" : "not reached") << "\n";
  }
}

nlohmann::json cuda_bench_json(const CudaBenchOptions& o, const CudaBenchResult& r) {
  using nlohmann::json;
  json cases = json::array();
  for (const auto& c : r.cases) {
    cases.push_back({{"shape", c.shape()},
                     {"keys", c.keys},
                     {"topk", c.topk},
                     {"compress_ratio", c.compress_ratio},
                     {"queries", c.queries},
                     {"repeat", c.repeat},
                     {"visible_keys", c.visible},
                     {"flops", c.flops},
                     {"topk_bytes", c.topk_bytes},
                     {"flat",
                      {{"scoring_ms", c.flat_score_ms},
                       {"scoring_tflops", c.score_tflops()},
                       {"scoring_percent_of_peak", percent_json(c.score_tflops(), r.peaks.bf16_tflops)},
                       {"fp32_scoring_ms", known(c.f32_score_ms)},
                       {"fp32_scoring_tflops", known(c.f32_tflops())},
                       {"topk_ms", c.flat_topk_ms},
                       {"topk_gb_per_s", c.topk_gbs()},
                       {"topk_percent_of_hbm", percent_json(c.topk_gbs(), r.peaks.hbm_gbs)},
                       {"kernels_ms", c.flat_ms()},
                       {"select_ms", c.flat_call_ms},
                       {"select_from_fp32_ms", c.flat_call_f32_ms}}},
                     {"fp8_mma",
                      c.has_fp8() ? json{{"flat_scoring_ms", c.fp8_score_ms},
                                         {"flat_scoring_tflops", c.fp8_tflops()},
                                         {"flat_scoring_percent_of_fp8_peak", percent_json(c.fp8_tflops(), r.peaks.fp8_tflops)},
                                         {"flat_topk_ms", c.fp8_topk_ms},
                                         {"flat_kernels_ms", c.fp8_flat_ms()},
                                         {"hisa_kernels_ms", c.fp8_hisa_ms}}
                                  : json(nullptr)},
                     {"hisa",
                      {{"block_scores_ms", c.hisa_blocks_ms},
                       {"block_choice_ms", c.hisa_choice_ms},
                       {"token_scores_ms", c.hisa_score_ms},
                       {"topk_ms", c.hisa_topk_ms},
                       {"kernels_ms", c.hisa_ms()},
                       {"select_ms", c.hisa_call_ms},
                       {"select_from_fp32_ms", c.hisa_call_f32_ms}}},
                     {"speedup", c.speedup()}});
  }
  json targets = json::array();
  for (const auto& t : bench_targets(o, r)) {
    targets.push_back({{"what", t.what},
                       {"unit", t.unit},
                       {"target", t.target},
                       {"at_most", t.at_most},
                       {"value", t.value ? json(*t.value) : json(nullptr)},
                       {"note", t.note},
                       {"reached", t.value ? json(t.reached()) : json(nullptr)}});
  }
  return {{"gpu", r.gpu},
          {"multiprocessors", r.multiprocessors},
          {"memory_gib", r.memory_gib},
          {"peaks",
           {{"bf16_dense_tflops", known(r.peaks.bf16_tflops)},
            {"fp8_dense_tflops", known(r.peaks.fp8_tflops)},
            {"tensor_source", r.peaks.tensor_source},
            {"hbm_gb_per_s", known(r.peaks.hbm_gbs)},
            {"hbm_source", r.peaks.hbm_source}}},
          {"options",
           {{"heads", o.heads},
            {"dim", o.dim},
            {"queries", o.queries},
            {"topk", o.topk},
            {"block_size", o.block_size},
            {"blocks", o.blocks},
            {"repeat", o.repeat},
            {"prefill_repeat", o.prefill_repeat()},
            {"seed", o.seed},
            {"compressed_topk", o.compressed_topk},
            {"compressed_tokens", o.compressed_tokens},
            {"compress_ratio", o.compress_ratio}}},
          {"cases", cases},
          {"targets", targets}};
}

}  // namespace hisa
