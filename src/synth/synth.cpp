// The synthetic dump generator (synth.hpp). About 600 lines in one file: the layer model, the keys, queries and
// weights, the options' validation and the writer follow datasets/SYNTH.md section by section, and splitting
// them would scatter one specification.
#include "synth/synth.hpp"

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <numbers>
#include <numeric>
#include <random>
#include <sstream>

#include "core/atomic_file.hpp"
#include "core/error.hpp"

namespace hisa {

namespace {

// ---------------------------------------------------------------------------------------------------------
// Random numbers. std::mt19937_64's output is fixed by the standard; the distributions are not, so the
// conversions are ours.

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// What a random stream is for, so that no two purposes ever share one.
enum Stream : uint64_t { kLayoutStream = 1, kQueryPositionStream, kModelStream, kKeyStream, kQueryStream };

uint64_t derive_seed(uint64_t seed, std::initializer_list<uint64_t> parts) {
  uint64_t h = splitmix64(seed);
  for (uint64_t p : parts) h = splitmix64(h ^ splitmix64(p));
  return h;
}

class Rng {
 public:
  explicit Rng(uint64_t seed) : engine_(seed) {}
  double uniform() { return double(engine_() >> 11) * 0x1.0p-53; }  // [0, 1) from 53 random bits
  uint64_t below(uint64_t n) {                                       // [0, n), unbiased by rejection
    const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = engine_();
    while (x >= limit);
    return x % n;
  }
  double normal() {  // Box-Muller; the second value of each pair serves the next call
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const double r = std::sqrt(-2.0 * std::log(1.0 - uniform()));  // 1 - u lies in (0, 1]
    const double a = 2.0 * std::numbers::pi * uniform();
    spare_ = r * std::sin(a);
    has_spare_ = true;
    return r * std::cos(a);
  }
  double lognormal(double sigma) { return std::exp(sigma * normal()); }

 private:
  std::mt19937_64 engine_;
  double spare_ = 0.0;
  bool has_spare_ = false;
};

// ---------------------------------------------------------------------------------------------------------
// The generative model (datasets/SYNTH.md). Keys are built before LayerNorm as unit-variance noise plus
// structured directions, normalised (norm sqrt(D), like the indexer's k_norm), then rotated by RoPE.
// Queries are noise plus the directions they look for, rotated by RoPE. Directions of the content part
// live in dims 64..D-1 (the indexer's non-RoPE part); with D = 64 they share the RoPE dims.

constexpr int64_t kRopeDims = 64;
constexpr int kRopePairs = 32;
constexpr int kTopics = 16;             // topic pool per layer; spans draw from it, so topics recur
constexpr int kOtherTopics = 2;         // topics a query attends to besides its own span's
constexpr int64_t kMinSpan = 64, kMaxSpan = 1024;
constexpr double kSpikeRate = 0.003;    // share of positions that are isolated spiky tokens
constexpr double kLateFraction = 0.75;  // queries past this share of their sequence retrieve the needle
constexpr double kSinkQueryShare = 0.9; // queries that attend to the sink
constexpr double kNegativeHeadShare = 0.1;

// Coefficients of one layer kind. Keys: multiples of a unit-RMS direction added to unit-variance noise
// before LayerNorm. Queries: multiples of the same directions (times per-head gains) plus noise.
struct KindParams {
  double k_rope, k_topic, k_needle, k_sink, k_spike;
  double q_rope, q_own_topic, q_other_topic, q_needle, q_sink, q_spike, q_noise;
};

KindParams kind_params(LayerKind kind) {
  switch (kind) {
    case LayerKind::Local:  // recency and sink dominate
      return {1.5, 0.6, 1.0, 3.0, 2.0, 0.8, 0.15, 0.05, 0.0, 1.0, 0.0, 0.4};
    case LayerKind::Retrieval:  // topics and the needle dominate
      return {0.5, 1.2, 2.0, 3.0, 2.0, 0.1, 0.25, 0.35, 1.2, 0.6, 0.05, 0.4};
    case LayerKind::Spiky:  // isolated tokens over noise
      return {0.5, 0.4, 1.0, 3.0, 3.0, 0.1, 0.05, 0.05, 0.0, 0.4, 0.6, 0.8};
    case LayerKind::Random: break;
  }
  return {};
}

struct HeadModel {
  double weight = 1.0;  // signed base weight
  double rope = 1, topic = 1, needle = 1, sink = 1, spike = 1;  // gains on the kind's query coefficients
  bool negative() const { return weight < 0; }
};

// The "weights" of one layer: fixed directions and head behaviour, shared by every sample.
struct LayerModel {
  LayerKind kind = LayerKind::Random;
  KindParams p{};
  int64_t dim = 0, content_offset = 0, content_dims = 0;
  std::vector<double> u;       // [64] RoPE vector (before rotation)
  std::vector<double> topics;  // [kTopics, content_dims]
  std::vector<double> needle, sink, spike;
  std::vector<HeadModel> heads;
  const double* topic(int i) const { return topics.data() + int64_t(i) * content_dims; }
};

// A random direction with unit RMS per component.
std::vector<double> random_direction(Rng& rng, int64_t n) {
  std::vector<double> v(static_cast<size_t>(n));
  double sum = 0;
  for (auto& x : v) {
    x = rng.normal();
    sum += x * x;
  }
  const double scale = std::sqrt(double(n) / sum);
  for (auto& x : v) x *= scale;
  return v;
}

double rope_theta(int pair) { return std::pow(10000.0, -2.0 * pair / double(kRopeDims)); }

// The RoPE vector: pair i gets energy e_i and a random phase. q(t)·k(s) in these dims is then
// sum_i e_i cos((t-s) theta_i): the pairs of mid wavelength (i = 4..28) make a sharp peak at t = s that
// decorrelates within a few hundred tokens, and extra energy on the slowest pairs (i >= 27, wavelengths of
// 10K-47K tokens) keeps a broad, smooth bump over the last ~2K tokens without adding per-token noise far
// away: recency.
std::vector<double> rope_vector(Rng& rng) {
  std::vector<double> u(static_cast<size_t>(kRopeDims));
  double energy = 0;
  for (int i = 0; i < kRopePairs; ++i) {
    const double e = ((i >= 4 && i <= 28) ? 1.0 : 0.3) + (i >= 27 ? 3.0 : 0.0);
    const double phase = 2.0 * std::numbers::pi * rng.uniform();
    u[size_t(i)] = std::sqrt(e) * std::cos(phase);
    u[size_t(i + kRopePairs)] = std::sqrt(e) * std::sin(phase);
    energy += e;
  }
  const double scale = std::sqrt(kRopeDims / energy);
  for (auto& x : u) x *= scale;
  return u;
}

LayerModel layer_model(const SynthOptions& o, int layer) {
  LayerModel m;
  m.kind = synth_layer_kind(o.profile, layer);
  m.p = kind_params(m.kind);
  m.dim = o.head_dim;
  m.content_offset = o.head_dim > kRopeDims ? kRopeDims : 0;
  m.content_dims = o.head_dim - m.content_offset;
  Rng rng(derive_seed(o.seed, {kModelStream, uint64_t(layer)}));
  m.u = rope_vector(rng);
  for (int i = 0; i < kTopics; ++i) {
    auto t = random_direction(rng, m.content_dims);
    m.topics.insert(m.topics.end(), t.begin(), t.end());
  }
  m.needle = random_direction(rng, m.content_dims);
  m.sink = random_direction(rng, m.content_dims);
  m.spike = random_direction(rng, m.content_dims);
  // A fixed number of negative heads (not a coin per head) so small H still behaves predictably.
  const int64_t negatives = std::llround(kNegativeHeadShare * double(o.heads));
  std::vector<int64_t> order(size_t(o.heads));
  std::iota(order.begin(), order.end(), 0);
  for (int64_t i = 0; i < negatives; ++i) {
    std::swap(order[size_t(i)], order[size_t(i + int64_t(rng.below(uint64_t(o.heads - i))))]);
  }
  m.heads.resize(size_t(o.heads));
  for (auto& h : m.heads) {
    h.weight = rng.lognormal(0.3);
    h.rope = rng.lognormal(0.35);
    h.topic = rng.lognormal(0.35);
    h.needle = rng.lognormal(0.35);
    h.sink = rng.lognormal(0.35);
    h.spike = rng.lognormal(0.35);
  }
  for (int64_t i = 0; i < negatives; ++i) {
    m.heads[size_t(order[size_t(i)])].weight *= -0.5;
  }
  return m;
}

// Half-split RoPE (dim i pairs with i + 32) at one position, on dims 0..63. Built once per row and
// applied to all heads of a query.
struct RopeRotation {
  double cos[kRopePairs], sin[kRopePairs];
  explicit RopeRotation(int64_t position) {
    for (int i = 0; i < kRopePairs; ++i) {
      const double angle = double(position) * rope_theta(i);
      cos[i] = std::cos(angle);
      sin[i] = std::sin(angle);
    }
  }
  void apply(double* x) const {
    for (int i = 0; i < kRopePairs; ++i) {
      const double a = x[i], b = x[i + kRopePairs];
      x[i] = a * cos[i] - b * sin[i];
      x[i + kRopePairs] = a * sin[i] + b * cos[i];
    }
  }
};

void layer_norm(double* x, int64_t n) {
  double mean = 0, var = 0;
  for (int64_t d = 0; d < n; ++d) mean += x[d];
  mean /= double(n);
  for (int64_t d = 0; d < n; ++d) var += (x[d] - mean) * (x[d] - mean);
  const double inv = 1.0 / std::sqrt(var / double(n) + 1e-6);
  for (int64_t d = 0; d < n; ++d) x[d] = (x[d] - mean) * inv;
}

void add_scaled(double* x, const double* direction, int64_t n, double scale) {
  for (int64_t d = 0; d < n; ++d) x[d] += scale * direction[d];
}

// Per-position facts of a sample, expanded from the layout for quick lookup.
struct KeyRoles {
  std::vector<int> topic;      // topic of the span; -1 inside the needle
  std::vector<uint8_t> spike;  // 1 at isolated spiky tokens
};

KeyRoles key_roles(const SynthLayout& lay) {
  KeyRoles r;
  r.topic.assign(size_t(lay.seq_len), 0);
  r.spike.assign(size_t(lay.seq_len), 0);
  for (size_t i = 0; i < lay.span_begin.size(); ++i) {
    const int64_t end = i + 1 < lay.span_begin.size() ? lay.span_begin[i + 1] : lay.seq_len;
    std::fill(r.topic.begin() + lay.span_begin[i], r.topic.begin() + end, lay.span_topic[i]);
  }
  std::fill(r.topic.begin() + lay.needle_begin, r.topic.begin() + lay.needle_end, -1);
  for (int64_t s : lay.spikes) r.spike[size_t(s)] = 1;
  return r;
}

void make_key(const LayerModel& m, const SynthLayout& lay, const KeyRoles& roles, int64_t s, Rng& rng, double* x) {
  const KindParams& p = m.p;
  for (int64_t d = 0; d < m.dim; ++d) x[d] = rng.normal();
  add_scaled(x, m.u.data(), kRopeDims, p.k_rope);
  double* c = x + m.content_offset;
  const int topic = roles.topic[size_t(s)];
  if (topic >= 0) add_scaled(c, m.topic(topic), m.content_dims, p.k_topic);
  else add_scaled(c, m.needle.data(), m.content_dims, p.k_needle);
  if (lay.is_sink(s)) add_scaled(c, m.sink.data(), m.content_dims, p.k_sink);
  if (roles.spike[size_t(s)]) add_scaled(c, m.spike.data(), m.content_dims, p.k_spike * rng.lognormal(0.25));
  layer_norm(x, m.dim);
  RopeRotation(s - lay.sequence_start(s)).apply(x);
}

// One query row: H heads of q (into x, [H, D]) and their weights (into w).
void make_query(const LayerModel& m, const SynthLayout& lay, const KeyRoles& roles, int64_t t, Rng& rng, double* x,
                double* w) {
  const KindParams& p = m.p;
  const int64_t D = m.dim, H = int64_t(m.heads.size());
  const int64_t local = t - lay.sequence_start(t);
  const bool late = lay.has_needle() && lay.sequence_start(t) == lay.sequence_start(lay.needle_begin) &&
                    double(local) >= kLateFraction * double(lay.sequence_len);
  const bool sink = rng.uniform() < kSinkQueryShare;
  int other[kOtherTopics];
  double other_weight[kOtherTopics];
  for (int i = 0; i < kOtherTopics; ++i) {
    other[i] = int(rng.below(kTopics));
    other_weight[i] = 0.5 + rng.uniform();
  }
  const int own = roles.topic[size_t(t)];
  const double inv_scale = 1.0 / std::sqrt(double(H) * double(D));  // H^-1/2 and the softmax scale D^-1/2
  const RopeRotation rotation(local);
  for (int64_t h = 0; h < H; ++h) {
    const HeadModel& hm = m.heads[size_t(h)];
    double* q = x + h * D;
    for (int64_t d = 0; d < D; ++d) q[d] = p.q_noise * rng.normal();
    double* c = q + m.content_offset;
    // Negative heads only push down some topics: they spread scores without cancelling the structure.
    for (int i = 0; i < kOtherTopics; ++i) {
      add_scaled(c, m.topic(other[i]), m.content_dims, p.q_other_topic * hm.topic * other_weight[i]);
    }
    if (!hm.negative()) {
      add_scaled(q, m.u.data(), kRopeDims, p.q_rope * hm.rope);
      if (own >= 0) add_scaled(c, m.topic(own), m.content_dims, p.q_own_topic * hm.topic);
      if (late) add_scaled(c, m.needle.data(), m.content_dims, p.q_needle * hm.needle);
      if (sink) add_scaled(c, m.sink.data(), m.content_dims, p.q_sink * hm.sink);
      add_scaled(c, m.spike.data(), m.content_dims, p.q_spike * hm.spike);
    }
    rotation.apply(q);
    w[h] = hm.weight * rng.lognormal(0.2) * inv_scale;
  }
}

void make_random_query(const SynthOptions& o, Rng& rng, double* x, double* w) {
  const double inv_scale = 1.0 / std::sqrt(double(o.heads) * double(o.head_dim));
  for (int64_t i = 0; i < o.heads * o.head_dim; ++i) x[i] = rng.normal();
  for (int64_t h = 0; h < o.heads; ++h) w[h] = rng.normal() * inv_scale;
}

// Power of two at or above x (x > 0): the ue8m0 scale format.
float round_up_pow2(float x) {
  int e;
  const float m = std::frexp(x, &e);  // x = m * 2^e, m in [0.5, 1)
  return std::ldexp(1.0f, m == 0.5f ? e - 1 : e);
}

// fp8 quantisation of one row as the DSA reference does it: scale = max(amax, 1e-4) / 448.
float quantize_fp8_row(float* x, int64_t n, bool ue8m0) {
  float amax = 0.0f;
  for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  float scale = std::max(amax, 1e-4f) / 448.0f;
  if (ue8m0) scale = round_up_pow2(scale);
  for (int64_t i = 0; i < n; ++i) x[i] = round_to(ElementType::FP8_E4M3, x[i] / scale);
  return scale;
}

// fp4 quantisation as DeepSeek-V4 does it: each block of 32 values scaled by a power of two (ue8m0) so that its
// largest magnitude fits e2m1's 6, then rounded to e2m1. The values become code · scale, which the writer stores
// exactly.
void quantize_fp4(std::vector<float>& x) {
  for (size_t b = 0; b + size_t(kFp4BlockSize) <= x.size(); b += size_t(kFp4BlockSize)) {
    const float scale = ue8m0_to_float(e2m1_block_scale(x.data() + b));
    for (int64_t j = 0; j < kFp4BlockSize; ++j) x[b + size_t(j)] = e2m1_to_float(float_to_e2m1(x[b + size_t(j)] / scale)) * scale;
  }
}

// Rounds q and k to the dump's element type; for fp8 also fills k_scale and folds q's scales into w.
void encode(LayerArrays& a, ElementType type, bool ue8m0) {
  if (type == ElementType::FP4_E2M1) {
    quantize_fp4(a.k);
    quantize_fp4(a.q);
    return;
  }
  if (type != ElementType::FP8_E4M3) {
    for (auto& v : a.k) v = round_to(type, v);
    for (auto& v : a.q) v = round_to(type, v);
    return;
  }
  a.k_scale.resize(size_t(a.keys));
  for (int64_t s = 0; s < a.keys; ++s) a.k_scale[size_t(s)] = quantize_fp8_row(a.k.data() + s * a.dim, a.dim, ue8m0);
  for (int64_t r = 0; r < a.queries * a.heads; ++r) a.w[size_t(r)] *= quantize_fp8_row(a.q.data() + r * a.dim, a.dim, ue8m0);
}

std::string format_number(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------

std::string_view profile_name(SynthProfile p) {
  switch (p) {
    case SynthProfile::Niah: return "niah";
    case SynthProfile::Mixed: return "mixed";
    case SynthProfile::Local: return "local";
    case SynthProfile::Retrieval: return "retrieval";
    case SynthProfile::Spiky: return "spiky";
    case SynthProfile::Random: return "random";
  }
  return "?";
}

std::optional<SynthProfile> parse_profile(std::string_view name) {
  for (auto p : {SynthProfile::Niah, SynthProfile::Mixed, SynthProfile::Local, SynthProfile::Retrieval,
                 SynthProfile::Spiky, SynthProfile::Random}) {
    if (name == profile_name(p)) return p;
  }
  return std::nullopt;
}

std::string_view layer_kind_name(LayerKind k) {
  switch (k) {
    case LayerKind::Local: return "local";
    case LayerKind::Retrieval: return "retrieval";
    case LayerKind::Spiky: return "spiky";
    case LayerKind::Random: return "random";
  }
  return "?";
}

LayerKind synth_layer_kind(SynthProfile p, int layer) {
  switch (p) {
    case SynthProfile::Niah:
    case SynthProfile::Mixed: {
      static constexpr LayerKind cycle[] = {LayerKind::Local, LayerKind::Retrieval, LayerKind::Spiky};
      return cycle[layer % 3];
    }
    case SynthProfile::Local: return LayerKind::Local;
    case SynthProfile::Retrieval: return LayerKind::Retrieval;
    case SynthProfile::Spiky: return LayerKind::Spiky;
    case SynthProfile::Random: return LayerKind::Random;
  }
  return LayerKind::Random;
}

QuerySelection parse_query_selection(std::string_view text) {
  if (text == "all") return {QueryMode::All, 0};
  auto bad = [&] {
    return OptionError("queries", "{queries}: expected all, last:N or sample:N with N >= 1, got \"" + std::string(text) + "\"");
  };
  const size_t colon = text.find(':');
  if (colon == std::string_view::npos) throw bad();
  const std::string_view mode = text.substr(0, colon), number = text.substr(colon + 1);
  QuerySelection q;
  if (mode == "last") q.mode = QueryMode::Last;
  else if (mode == "sample") q.mode = QueryMode::Sample;
  else throw bad();
  if (number.empty() || number.size() > 18 || !std::all_of(number.begin(), number.end(), [](char c) {
        return c >= '0' && c <= '9';
      })) {
    throw bad();
  }
  q.count = std::stoll(std::string(number));
  if (q.count < 1) throw bad();
  return q;
}

std::string query_selection_text(const QuerySelection& q) {
  switch (q.mode) {
    case QueryMode::All: return "all";
    case QueryMode::Last: return "last:" + std::to_string(q.count);
    case QueryMode::Sample: return "sample:" + std::to_string(q.count);
  }
  return "?";
}

void validate_synth_options(const SynthOptions& o) {
  auto require = [](bool ok, const char* option, const std::string& message) {
    if (!ok) throw OptionError(option, message);
  };
  require(o.seq_len >= 1, "seq_len", "{seq_len} must be at least 1, got " + std::to_string(o.seq_len));
  require(o.layers >= 1, "layers", "{layers} must be at least 1, got " + std::to_string(o.layers));
  require(o.heads >= 1, "heads", "{heads} must be at least 1, got " + std::to_string(o.heads));
  require(o.head_dim >= kRopeDims, "head_dim",
          "{head_dim} must be at least 64 (dims 0..63 carry RoPE), got " + std::to_string(o.head_dim));
  require(o.index_topk >= 1, "topk", "{topk} must be at least 1, got " + std::to_string(o.index_topk));
  require(o.gzip_level >= 0 && o.gzip_level <= 9, "gzip", "{gzip} must be 0-9, got " + std::to_string(o.gzip_level));
  require(o.samples >= 1, "samples", "{samples} must be at least 1, got " + std::to_string(o.samples));
  require(o.queries.mode == QueryMode::All || o.queries.count >= 1, "queries",
          "{queries}: N must be at least 1 in " + query_selection_text(o.queries));
  require(o.packed >= 1, "packed", "{packed} must be at least 1, got " + std::to_string(o.packed));
  require(o.seq_len % o.packed == 0, "packed", "{packed} " + std::to_string(o.packed) + " must divide {seq_len} " +
                                                  std::to_string(o.seq_len) + " (the packed sequences have equal length)");
  require(o.compress_ratio >= 1 && o.compress_ratio <= 1024, "compress_ratio",
          "{compress_ratio} must be 1 to 1024, got " + std::to_string(o.compress_ratio));
  require(o.seq_len % (o.compress_ratio * o.packed) == 0, "compress_ratio",
          "{compress_ratio} " + std::to_string(o.compress_ratio) + " times {packed} " + std::to_string(o.packed) +
              " must divide {seq_len} " + std::to_string(o.seq_len) + " (whole rows in equal sequences)");
  require(!o.ue8m0 || o.dtype == ElementType::FP8_E4M3, "scale_fmt", "{scale_fmt} ue8m0 needs {dtype} fp8");
  require(o.dtype != ElementType::FP4_E2M1 || o.head_dim % kFp4BlockSize == 0, "head_dim",
          "{head_dim} must be a multiple of 32 for {dtype} fp4 (one scale per 32 values), got " + std::to_string(o.head_dim));
  require(!o.model.empty(), "model", "{model} must not be empty");
  require(std::isfinite(o.depth_percent) && o.depth_percent >= 0 && o.depth_percent <= 100, "depth",
          "{depth} must be a percentage in [0, 100], got " + format_number(o.depth_percent));
  require(o.needle_len >= 1, "needle_len", "{needle_len} must be at least 1, got " + std::to_string(o.needle_len));
  if (o.profile == SynthProfile::Niah) {
    require(o.needle_len <= o.seq_len / o.packed, "needle_len",
            "{needle_len} " + std::to_string(o.needle_len) + " does not fit a sequence of " +
                std::to_string(o.seq_len / o.packed) + " tokens ({seq_len} / {packed})");
  }
}

FileAttributes synth_file_attributes(const SynthOptions& o) {
  FileAttributes a;
  a.model = o.model;
  a.n_heads = o.heads;
  a.head_dim = o.head_dim;
  a.index_topk = o.index_topk;
  a.hadamard = 0;
  a.rope = "half-split";
  if (o.dtype == ElementType::FP8_E4M3) a.scale_fmt = o.ue8m0 ? "ue8m0" : "fp32";
  std::ostringstream s;
  s << "hisa synth profile=" << profile_name(o.profile) << " seed=" << o.seed << " seq_len=" << o.seq_len
    << " layers=" << o.layers << " queries=" << query_selection_text(o.queries) << " heads=" << o.heads
    << " head_dim=" << o.head_dim << " topk=" << o.index_topk << " dtype=" << element_type_name(o.dtype)
    << " scale_fmt=" << (o.ue8m0 ? "ue8m0" : "fp32") << " gzip=" << o.gzip_level
    << " depth=" << format_number(o.depth_percent) << " needle_len=" << o.needle_len << " samples=" << o.samples
    << " packed=" << o.packed << " model=" << o.model;
  if (o.compress_ratio != 1) s << " compress_ratio=" << o.compress_ratio;
  a.source = s.str();
  return a;
}

SynthLayout synth_layout(const SynthOptions& o, int sample) {
  SynthLayout lay;
  lay.seq_len = o.seq_len;
  lay.sequence_len = o.seq_len / o.packed;
  if (o.profile == SynthProfile::Random) return lay;  // no structure to describe
  Rng rng(derive_seed(o.seed, {kLayoutStream, uint64_t(sample)}));
  for (int64_t begin = 0; begin < lay.seq_len; begin += lay.sequence_len) {
    int previous = -1;
    for (int64_t s = begin; s < begin + lay.sequence_len;) {
      int topic;
      do topic = int(rng.below(kTopics));
      while (topic == previous);  // adjacent spans differ: a real semantic boundary
      lay.span_begin.push_back(s);
      lay.span_topic.push_back(topic);
      previous = topic;
      s += kMinSpan + int64_t(rng.below(uint64_t(kMaxSpan - kMinSpan + 1)));
    }
  }
  if (o.profile == SynthProfile::Niah) {  // in the last sequence, where the late queries are
    const int64_t begin = lay.seq_len - lay.sequence_len;
    lay.needle_begin = begin + std::llround(o.depth_percent / 100.0 * double(lay.sequence_len - o.needle_len));
    lay.needle_end = lay.needle_begin + o.needle_len;
  }
  for (int64_t s = 0; s < lay.seq_len; ++s) {
    const bool isolated = lay.spikes.empty() || lay.spikes.back() < s - 1;
    if (rng.uniform() < kSpikeRate && isolated && !lay.is_sink(s) && !lay.in_needle(s)) lay.spikes.push_back(s);
  }
  return lay;
}

namespace {

// The options of the uncompressed dump whose keys are a compressed dump's rows: seq_len / c keys, the needle
// shortened alike (at least one row).
SynthOptions row_options(const SynthOptions& o) {
  SynthOptions r = o;
  r.seq_len = o.seq_len / o.compress_ratio;
  r.needle_len = std::max<int64_t>(1, o.needle_len / o.compress_ratio);
  r.compress_ratio = 1;
  return r;
}

// A query that sees rows up to r sits at a token t with ⌊(t+1)/c⌋ = r + 1: t = (r+1)·c − 1 + (r mod c), so that
// queries sit at every offset within a row's span, but never past the last token of r's own packed sequence
// (sequence_rows rows long), whose k_start it keeps.
int64_t token_of_row(int64_t r, int64_t c, int64_t sequence_rows) {
  const int64_t sequence_end = (r / sequence_rows + 1) * sequence_rows * c;  // one past its last token
  return std::min((r + 1) * c - 1 + r % c, sequence_end - 1);
}

}  // namespace

SampleAttributes synth_sample_attributes(const SynthOptions& o, int sample) {
  if (o.compress_ratio > 1) {
    const int64_t c = o.compress_ratio;
    SampleAttributes a = synth_sample_attributes(row_options(o), sample);
    a.seq_len = o.seq_len;
    if (a.context_length) *a.context_length *= c;
    if (a.needle_begin) *a.needle_begin *= c;
    if (a.needle_end) *a.needle_end *= c;
    return a;
  }
  SampleAttributes a;
  a.seq_len = o.seq_len;
  if (o.profile == SynthProfile::Niah) {
    const SynthLayout lay = synth_layout(o, sample);
    a.task = "niah";
    a.context_length = lay.sequence_len;  // the needle's own sequence (= seq_len unless packed)
    a.depth_percent = o.depth_percent;
    a.needle_begin = lay.needle_begin;
    a.needle_end = lay.needle_end;
  }
  return a;
}

std::vector<int64_t> synth_query_positions(const SynthOptions& o, int sample) {
  const int64_t L = o.seq_len;
  const int64_t n = o.queries.mode == QueryMode::All ? L : std::min(o.queries.count, L);
  std::vector<int64_t> pos;
  if (n == L || o.queries.mode == QueryMode::Last) {
    pos.resize(size_t(n));
    std::iota(pos.begin(), pos.end(), L - n);
    return pos;
  }
  // n - 1 distinct positions from [0, L-1) by a partial Fisher-Yates shuffle, plus the last position.
  Rng rng(derive_seed(o.seed, {kQueryPositionStream, uint64_t(sample)}));
  std::vector<int64_t> pool(size_t(L - 1));
  std::iota(pool.begin(), pool.end(), 0);
  for (int64_t i = 0; i < n - 1; ++i) {
    std::swap(pool[size_t(i)], pool[size_t(i + int64_t(rng.below(uint64_t(L - 1 - i))))]);
  }
  pos.assign(pool.begin(), pool.begin() + (n - 1));
  pos.push_back(L - 1);
  std::sort(pos.begin(), pos.end());
  return pos;
}

LayerArrays synth_layer(const SynthOptions& o, int sample, int layer) {
  validate_synth_options(o);
  if (o.compress_ratio > 1) {
    LayerArrays a = synth_layer(row_options(o), sample, layer);
    a.compress_ratio = o.compress_ratio;
    const int64_t sequence_rows = o.seq_len / o.compress_ratio / o.packed;
    for (int64_t& t : a.q_pos) t = token_of_row(t, o.compress_ratio, sequence_rows);
    return a;
  }
  const SynthLayout lay = synth_layout(o, sample);
  const LayerModel model = layer_model(o, layer);
  const KeyRoles roles = key_roles(lay);
  const bool random = model.kind == LayerKind::Random;
  const int64_t L = o.seq_len, H = o.heads, D = o.head_dim;

  LayerArrays a;
  a.keys = L;
  a.heads = H;
  a.dim = D;
  a.q_type = a.k_type = o.dtype;
  a.q_pos = synth_query_positions(o, sample);
  a.queries = int64_t(a.q_pos.size());
  if (o.packed > 1) {
    for (int64_t t : a.q_pos) a.k_start.push_back(lay.sequence_start(t));
  }
  a.k.resize(size_t(L * D));
  a.q.resize(size_t(a.queries * H * D));
  a.w.resize(size_t(a.queries * H));

  // Each row has its own stream, so the loops parallelise without changing a single value.
#pragma omp parallel
  {
    std::vector<double> x(static_cast<size_t>(H * D)), w(static_cast<size_t>(H));
#pragma omp for schedule(static)
    for (int64_t s = 0; s < L; ++s) {
      Rng rng(derive_seed(o.seed, {kKeyStream, uint64_t(sample), uint64_t(layer), uint64_t(s)}));
      if (random) {
        for (int64_t d = 0; d < D; ++d) x[size_t(d)] = rng.normal();
      } else {
        make_key(model, lay, roles, s, rng, x.data());
      }
      std::copy(x.begin(), x.begin() + D, a.k.begin() + s * D);
    }
#pragma omp for schedule(static)
    for (int64_t i = 0; i < a.queries; ++i) {
      const int64_t t = a.q_pos[size_t(i)];
      Rng rng(derive_seed(o.seed, {kQueryStream, uint64_t(sample), uint64_t(layer), uint64_t(t)}));
      if (random) {
        make_random_query(o, rng, x.data(), w.data());
      } else {
        make_query(model, lay, roles, t, rng, x.data(), w.data());
      }
      std::copy(x.begin(), x.end(), a.q.begin() + i * H * D);
      std::copy(w.begin(), w.end(), a.w.begin() + i * H);
    }
  }
  encode(a, o.dtype, o.ue8m0);
  return a;
}

void write_synth_dump(const SynthOptions& o) {
  validate_synth_options(o);
  if (o.output.empty()) throw OptionError("output", "{output}: no output file given");
  // Written whole or not at all: a failed run leaves a previous file of that name as it was.
  OutputFile output(o.output, OutputFile::Temporary::Named);
  DumpWriter writer(output.temporary_path(), synth_file_attributes(o), o.output);
  WriteOptions wo;
  wo.gzip_level = o.gzip_level;
  for (int sample = 0; sample < o.samples; ++sample) {
    const std::string name = "sample_" + std::to_string(sample);
    writer.add_sample(name, synth_sample_attributes(o, sample));
    for (int layer = 0; layer < o.layers; ++layer) writer.add_layer(name, layer, synth_layer(o, sample, layer), wo);
  }
  writer.close();
  output.commit();
}

}  // namespace hisa
