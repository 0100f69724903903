// `hisa synth -o OUT.h5`: writes a deterministic synthetic dump (profiles in datasets/SYNTH.md).
#include <algorithm>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <memory>

#include "cli/commands.hpp"
#include "core/atomic_file.hpp"
#include "core/error.hpp"
#include "synth/synth.hpp"

namespace hisa::cli {

namespace {

// Command-line form: the enumerations stay text until the callback, so bad values become UsageErrors.
struct SynthArgs {
  SynthOptions options;
  std::string profile = "niah";
  std::string queries = "sample:256";
  std::string dtype = "bf16";
  std::string scale_fmt = "fp32";
};

SynthOptions resolve(const SynthArgs& a) {
  SynthOptions o = a.options;
  auto profile = parse_profile(a.profile);
  if (!profile) {
    throw UsageError("--profile: unknown profile \"" + a.profile + "\" (niah, mixed, local, retrieval, spiky, random)");
  }
  o.profile = *profile;
  o.queries = parse_query_selection(a.queries);
  auto dtype = parse_element_type(a.dtype);
  if (!dtype) throw UsageError("--dtype: unknown element type \"" + a.dtype + "\" (bf16, f16, f32, fp8, fp4)");
  o.dtype = *dtype;
  if (a.scale_fmt != "fp32" && a.scale_fmt != "ue8m0") {
    throw UsageError("--scale-fmt: expected fp32 or ue8m0, got \"" + a.scale_fmt + "\"");
  }
  o.ue8m0 = a.scale_fmt == "ue8m0";
  return o;  // write_synth_dump checks the numbers
}

int run_synth(const SynthArgs& args) {
  const SynthOptions o = resolve(args);
  check_outputs({{o.output, "-o", false}}, {});
  write_synth_dump(o);
  std::string kinds;
  for (int layer = 0; layer < std::min(o.layers, 6); ++layer) {
    kinds += (layer ? ", " : "") + std::string(layer_kind_name(synth_layer_kind(o.profile, layer)));
  }
  if (o.layers > 6) kinds += ", ...";
  std::error_code ec;
  const auto bytes = std::filesystem::file_size(o.output, ec);
  std::cerr << "hisa synth: wrote " << o.output << ": profile " << profile_name(o.profile) << ", " << o.samples
            << " sample(s) x " << o.layers << " layer(s) (" << kinds << "), "
            << (o.compress_ratio == 1 ? "L " + std::to_string(o.seq_len)
                                      : std::to_string(o.seq_len) + " tokens in L " + std::to_string(o.seq_len / o.compress_ratio) +
                                            " rows of " + std::to_string(o.compress_ratio))
            << ", queries " << query_selection_text(o.queries) << ", H " << o.heads << ", D " << o.head_dim << ", "
            << element_type_name(o.dtype) << ", seed " << o.seed;
  if (!ec) std::cerr << ", " << std::fixed << std::setprecision(1) << double(bytes) / (1 << 20) << " MiB";
  std::cerr << "\n";
  return 0;
}

}  // namespace

void setup_synth(CLI::App& app, int& status) {
  auto a = std::make_shared<SynthArgs>();
  SynthOptions& o = a->options;
  CLI::App* sub = app.add_subcommand("synth", "Write a deterministic synthetic dump with indexer-like structure");
  sub->add_option("-o,--output", o.output, "Output file (HDF5, format v1); overwritten")->required();
  sub->add_option("--profile", a->profile, "niah, mixed, local, retrieval, spiky or random")->capture_default_str();
  sub->add_option("--seq-len", o.seq_len, "Keys per sample (L)")->capture_default_str();
  sub->add_option("--layers", o.layers, "Layers per sample")->capture_default_str();
  sub->add_option("--queries", a->queries, "all, last:N or sample:N (uniform, sorted, with the last position)")
      ->capture_default_str();
  sub->add_option("--heads", o.heads, "Indexer heads (H)")->capture_default_str();
  sub->add_option("--head-dim", o.head_dim, "Head dimension (D >= 64; dims 0..63 carry RoPE)")->capture_default_str();
  sub->add_option("--topk", o.index_topk, "index_topk attribute")->capture_default_str();
  sub->add_option("--dtype", a->dtype, "Element type of q and k: bf16, f16, f32, fp8 (e4m3 with scales) or fp4 (e2m1 with block scales)")
      ->capture_default_str();
  sub->add_option("--scale-fmt", a->scale_fmt, "fp8 scales: fp32 or ue8m0 (powers of two)")->capture_default_str();
  sub->add_option("--gzip", o.gzip_level, "gzip level 0-9 (0: uncompressed)")->capture_default_str();
  sub->add_option("--depth", o.depth_percent, "niah: needle depth in percent of its sequence")->capture_default_str();
  sub->add_option("--needle-len", o.needle_len, "niah: needle length in tokens")->capture_default_str();
  sub->add_option("--samples", o.samples, "Samples (sample_0, sample_1, ...)")->capture_default_str();
  sub->add_option("--packed", o.packed, "Equal-length packed sequences per sample (> 1 writes k_start)")
      ->capture_default_str();
  sub->add_option("--compress-ratio", o.compress_ratio,
                  "Tokens per key row (DeepSeek-V4's compressed indexer: 4); --seq-len counts tokens")
      ->capture_default_str();
  sub->add_option("--seed", o.seed, "Random seed; the same seed gives the same values")->capture_default_str();
  sub->add_option("--model", o.model, "model attribute")->capture_default_str();
  sub->callback([a, &status] { status = run_synth(*a); });
}

}  // namespace hisa::cli
