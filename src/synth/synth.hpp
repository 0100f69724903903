#pragma once
// Deterministic synthetic indexer dumps (`hisa synth`): q, k, w with the structure real DSA indexers show —
// an attention sink, RoPE recency, topical spans, a retrievable needle and isolated spiky tokens — so HISA's
// behaviour can be studied without a model. The generative model is documented in datasets/SYNTH.md.
//
// Determinism: every random value comes from std::mt19937_64 streams seeded from (seed, sample, layer, row)
// through splitmix64, converted with our own uniform / Box-Muller code (std distributions are
// implementation-defined). Rows are independent, so the output does not depend on the thread count, and a
// query at position t has the same values whatever --queries mode selected it.
//
// Profiles and layer kinds:
//   local      recency (RoPE on dims 0..63) and the sink dominate: the top-k sits near the query.
//   retrieval  topical spans and the needle dominate: relevance is block-coherent, far keys matter.
//   spiky      isolated high-scoring tokens (~0.3 % of positions) over noise: what block means miss.
//   random     iid Gaussian q and k, w of both signs: no structure at all.
// Profile niah (default) and mixed cycle local, retrieval, spiky over the layers (niah adds a needle);
// profiles local, retrieval, spiky and random use one kind for every layer.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/numeric.hpp"
#include "io/dump_model.hpp"
#include "io/dump_writer.hpp"

namespace hisa {

enum class SynthProfile { Niah, Mixed, Local, Retrieval, Spiky, Random };
enum class LayerKind { Local, Retrieval, Spiky, Random };
enum class QueryMode { All, Last, Sample };

// Which query positions a layer holds: all, the last `count`, or a uniform random sample of `count`
// (sorted, always with the last position). A count of at least L means all positions.
struct QuerySelection {
  QueryMode mode = QueryMode::Sample;
  int64_t count = 256;
};

struct SynthOptions {
  std::string output;  // only write_synth_dump needs it
  SynthProfile profile = SynthProfile::Niah;
  int64_t seq_len = 32768;  // L: keys per sample (all packed sequences together)
  int layers = 4;
  QuerySelection queries;
  int64_t heads = 16;
  int64_t head_dim = 128;  // >= 64: dims 0..63 carry RoPE
  int64_t index_topk = 2048;
  ElementType dtype = ElementType::BF16;  // of q and k
  bool ue8m0 = false;                     // fp8 only: scales rounded up to powers of two
  int gzip_level = 0;
  double depth_percent = 50;  // niah: where the needle starts within its sequence
  int64_t needle_len = 32;
  int samples = 1;
  int64_t packed = 1;  // equal-length packed sequences; > 1 writes k_start
  // > 1: compressed layers (DeepSeek-V4): one key row per compress_ratio tokens, seq_len / compress_ratio rows. The
  // rows carry the structure an uncompressed dump of that many keys would; each query sits at a token of its row.
  int64_t compress_ratio = 1;
  uint64_t seed = 0;
  std::string model = "synthetic";
};

// Where the structure of one sample lies (identical for all layers of the sample).
struct SynthLayout {
  int64_t seq_len = 0;
  int64_t sequence_len = 0;             // length of each packed sequence
  std::vector<int64_t> span_begin;      // topical spans, ascending; span i ends where span i+1 begins
  std::vector<int> span_topic;          // topic of each span (adjacent spans differ)
  int64_t needle_begin = 0, needle_end = 0;  // half-open; empty without a needle
  std::vector<int64_t> spikes;          // isolated high-scoring key positions, ascending
  static constexpr int64_t kSinkTokens = 4;  // sink keys: the first positions of every packed sequence

  int64_t sequence_start(int64_t s) const { return s / sequence_len * sequence_len; }
  bool is_sink(int64_t s) const { return s - sequence_start(s) < kSinkTokens; }
  bool in_needle(int64_t s) const { return s >= needle_begin && s < needle_end; }
  bool has_needle() const { return needle_end > needle_begin; }
};

std::string_view profile_name(SynthProfile p);
std::optional<SynthProfile> parse_profile(std::string_view name);
std::string_view layer_kind_name(LayerKind k);
LayerKind synth_layer_kind(SynthProfile p, int layer);
// "all", "last:N" or "sample:N"; throws an OptionError for queries.
QuerySelection parse_query_selection(std::string_view text);
std::string query_selection_text(const QuerySelection& q);

// Throws an OptionError for the option of the first invalid value (named as the CLI's flags are, with _).
void validate_synth_options(const SynthOptions& o);

FileAttributes synth_file_attributes(const SynthOptions& o);
SampleAttributes synth_sample_attributes(const SynthOptions& o, int sample);
SynthLayout synth_layout(const SynthOptions& o, int sample);
std::vector<int64_t> synth_query_positions(const SynthOptions& o, int sample);

// One layer of one sample, in memory, with q and k already rounded to o.dtype (fp8: the e4m3 values, with
// k_scale and the q scales folded into w), i.e. exactly what a DumpReader returns for the written file.
LayerArrays synth_layer(const SynthOptions& o, int sample, int layer);

// Writes samples sample_0.. with layers layer_0.., one layer in memory at a time.
void write_synth_dump(const SynthOptions& o);

}  // namespace hisa
