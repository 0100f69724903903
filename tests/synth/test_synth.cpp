// Tests of the synthetic dump generator: determinism, file contents, element types, query selection,
// packing, the needle, option checks, and that each layer kind really has the structure it promises.
#include <gtest/gtest.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "io/dump_reader.hpp"
#include "synth/synth.hpp"

namespace hisa {
namespace {

SynthOptions small_options() {
  SynthOptions o;
  o.seq_len = 2048;
  o.layers = 3;
  o.heads = 4;
  o.head_dim = 128;
  o.index_topk = 64;
  o.queries = {QueryMode::Sample, 16};
  return o;
}

// A file under the test temp dir, removed when the test ends.
struct TempFile {
  std::string path;
  explicit TempFile(const std::string& name)
      : path(::testing::TempDir() + "hisa_synth_" + name + "_" + std::to_string(::getpid()) + ".h5") {}
  ~TempFile() { std::filesystem::remove(path); }
};

void expect_same_arrays(const LayerArrays& a, const LayerArrays& b) {
  EXPECT_EQ(a.k, b.k);
  EXPECT_EQ(a.q, b.q);
  EXPECT_EQ(a.w, b.w);
  EXPECT_EQ(a.q_pos, b.q_pos);
  EXPECT_EQ(a.k_start, b.k_start);
  EXPECT_EQ(a.k_scale, b.k_scale);
}

// I[t,s] = k_scale[s] * sum_h w[t,h] * ReLU(q[t,h]·k[s]) for visible keys; -inf elsewhere.
std::vector<double> brute_scores(const LayerArrays& a, int64_t i) {
  const int64_t t = a.q_pos[size_t(i)], start = a.k_start.empty() ? 0 : a.k_start[size_t(i)];
  std::vector<double> I(size_t(a.keys), -INFINITY);
  for (int64_t s = start; s <= t; ++s) {
    double acc = 0;
    for (int64_t h = 0; h < a.heads; ++h) {
      const float* q = a.q.data() + (i * a.heads + h) * a.dim;
      const float* k = a.k.data() + s * a.dim;
      double dot = 0;
      for (int64_t d = 0; d < a.dim; ++d) dot += double(q[d]) * double(k[d]);
      acc += double(a.w[size_t(i * a.heads + h)]) * std::max(dot, 0.0);
    }
    I[size_t(s)] = acc * (a.k_scale.empty() ? 1.0 : double(a.k_scale[size_t(s)]));
  }
  return I;
}

std::vector<int64_t> top_k(const std::vector<double>& scores, int64_t k) {
  std::vector<int64_t> idx(scores.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                    [&](int64_t x, int64_t y) { return scores[size_t(x)] > scores[size_t(y)]; });
  idx.resize(size_t(k));
  return idx;
}

TEST(Synth, SameSeedSameValuesDifferentSeedDifferentValues) {
  SynthOptions o = small_options();
  for (int layer = 0; layer < o.layers; ++layer) expect_same_arrays(synth_layer(o, 0, layer), synth_layer(o, 0, layer));
  const LayerArrays a = synth_layer(o, 0, 1);
  o.seed = 1;
  const LayerArrays b = synth_layer(o, 0, 1);
  EXPECT_NE(a.k, b.k);
  EXPECT_NE(a.q, b.q);
  EXPECT_NE(a.q_pos, b.q_pos);
  EXPECT_NE(synth_layer(o, 0, 1).k, synth_layer(o, 1, 1).k);  // samples differ too
}

TEST(Synth, ValuesDoNotDependOnTheThreadCount) {
  const SynthOptions o = small_options();
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const LayerArrays one = synth_layer(o, 0, 2);
  omp_set_num_threads(3);
  const LayerArrays three = synth_layer(o, 0, 2);
  omp_set_num_threads(threads);
  expect_same_arrays(one, three);
}

TEST(Synth, ShapesAndAttributes) {
  SynthOptions o = small_options();
  o.samples = 2;
  o.model = "toy";
  TempFile f("attrs");
  o.output = f.path;
  write_synth_dump(o);
  DumpReader r(f.path);
  const FileAttributes& a = r.attributes();
  EXPECT_EQ(a.model, "toy");
  EXPECT_EQ(a.n_heads, 4);
  EXPECT_EQ(a.head_dim, 128);
  EXPECT_EQ(a.index_topk, 64);
  EXPECT_EQ(a.hadamard, 0);
  EXPECT_EQ(a.rope, "half-split");
  EXPECT_FALSE(a.scale_fmt.has_value());  // no scales outside fp8
  ASSERT_TRUE(a.source.has_value());
  EXPECT_EQ(a.source->rfind("hisa synth profile=niah seed=0 ", 0), 0u) << *a.source;
  EXPECT_NE(a.source->find("queries=sample:16"), std::string::npos);
  EXPECT_TRUE(r.warnings().empty());
  ASSERT_EQ(r.samples().size(), 2u);
  for (int s = 0; s < 2; ++s) {
    const SampleEntry& e = r.samples()[size_t(s)];
    EXPECT_EQ(e.name, "sample_" + std::to_string(s));
    EXPECT_EQ(e.attributes.seq_len, 2048);
    EXPECT_EQ(e.layers, (std::vector<int>{0, 1, 2}));
    const LayerShape sh = r.open_layer(e.name, 2).shape();  // a copy: the LayerReader is a temporary
    EXPECT_EQ(sh.keys, 2048);
    EXPECT_EQ(sh.queries, 16);
    EXPECT_EQ(sh.heads, 4);
    EXPECT_EQ(sh.dim, 128);
    EXPECT_EQ(sh.q_type, ElementType::BF16);
    EXPECT_FALSE(sh.has_k_start);
    EXPECT_FALSE(sh.has_k_scale);
  }
}

TEST(Synth, KeysLookLikeLayerNormOutputs) {
  SynthOptions o = small_options();
  o.dtype = ElementType::F32;
  for (int64_t dim : {128, 64}) {  // with D = 64 the content directions share the RoPE dims
    o.head_dim = dim;
    const LayerArrays a = synth_layer(o, 0, 0);
    for (int64_t s : {0, 7, 1000, 2047}) {
      double norm = 0;
      for (int64_t d = 0; d < dim; ++d) norm += double(a.k[size_t(s * dim + d)]) * a.k[size_t(s * dim + d)];
      EXPECT_NEAR(std::sqrt(norm), std::sqrt(double(dim)), 1e-3) << "D " << dim << " key " << s;
    }
  }
}

// Every element type: what the reader returns equals the in-memory layer, which is already rounded.
TEST(Synth, EachElementTypeRoundTripsThroughTheWriterAndReader) {
  struct Case {
    ElementType type;
    bool ue8m0;
  };
  for (Case c : {Case{ElementType::F32, false}, Case{ElementType::F16, false}, Case{ElementType::BF16, false},
                 Case{ElementType::FP8_E4M3, false}, Case{ElementType::FP8_E4M3, true}}) {
    SCOPED_TRACE(std::string(element_type_name(c.type)) + (c.ue8m0 ? " ue8m0" : ""));
    SynthOptions o = small_options();
    o.layers = 2;
    o.dtype = c.type;
    o.ue8m0 = c.ue8m0;
    o.gzip_level = 1;
    TempFile f("dtype");
    o.output = f.path;
    write_synth_dump(o);
    const LayerArrays want = synth_layer(o, 0, 1);
    DumpReader r(f.path);
    if (c.type == ElementType::FP8_E4M3) {
      EXPECT_EQ(r.attributes().scale_fmt, c.ue8m0 ? "ue8m0" : "fp32");
    }
    LayerReader lr = r.open_layer("sample_0", 1);
    EXPECT_EQ(lr.shape().k_type, c.type);
    EXPECT_EQ(lr.shape().has_k_scale, c.type == ElementType::FP8_E4M3);
    const LayerKeys keys = lr.read_keys();
    const QueryBatch qb = lr.read_queries(0, lr.shape().queries);
    for (size_t i = 0; i < want.k.size(); ++i) ASSERT_EQ(keys.k[i], round_to(c.type, want.k[i])) << "k " << i;
    for (size_t i = 0; i < want.q.size(); ++i) ASSERT_EQ(qb.q[i], round_to(c.type, want.q[i])) << "q " << i;
    EXPECT_EQ(qb.w, want.w);
    EXPECT_EQ(qb.q_pos, want.q_pos);
    if (c.type == ElementType::FP8_E4M3) {
      EXPECT_EQ(keys.k_scale, want.k_scale);
    } else {
      EXPECT_TRUE(want.k_scale.empty());
    }
  }
}

// fp8: e4m3 values with the row's amax at (or, with ue8m0, within a factor 2 of) 448, and dequantised
// values close to the f32 generation of the same seed; q's scales are folded into w.
TEST(Synth, Fp8QuantisesLikeTheReference) {
  for (bool ue8m0 : {false, true}) {
    SCOPED_TRACE(ue8m0 ? "ue8m0" : "fp32");
    SynthOptions o = small_options();
    o.dtype = ElementType::F32;
    const LayerArrays ref = synth_layer(o, 0, 0);
    o.dtype = ElementType::FP8_E4M3;
    o.ue8m0 = ue8m0;
    const LayerArrays a = synth_layer(o, 0, 0);
    ASSERT_EQ(a.k_scale.size(), size_t(a.keys));
    for (int64_t s = 0; s < a.keys; ++s) {
      const float scale = a.k_scale[size_t(s)];
      float amax = 0;
      for (int64_t d = 0; d < a.dim; ++d) {
        const float v = a.k[size_t(s * a.dim + d)], r = ref.k[size_t(s * a.dim + d)];
        ASSERT_EQ(v, round_to(ElementType::FP8_E4M3, v));
        ASSERT_NEAR(v * scale, r, std::fabs(r) / 16 + scale / 512) << "key " << s << " dim " << d;
        amax = std::max(amax, std::fabs(v));
      }
      if (ue8m0) {
        int e;
        ASSERT_EQ(std::frexp(scale, &e), 0.5f) << "scale " << scale << " is not a power of two";
        ASSERT_GE(amax, 224.0f);
        ASSERT_LE(amax, 448.0f);
      } else {
        ASSERT_EQ(amax, 448.0f);
      }
    }
    for (int64_t r = 0; r < a.queries * a.heads; ++r) {
      const double q_scale = double(a.w[size_t(r)]) / double(ref.w[size_t(r)]);
      ASSERT_GT(q_scale, 0.0);
      for (int64_t d = 0; d < a.dim; ++d) {
        const double v = a.q[size_t(r * a.dim + d)] * q_scale, want = ref.q[size_t(r * a.dim + d)];
        ASSERT_NEAR(v, want, std::fabs(want) / 16 + q_scale / 256) << "q row " << r << " dim " << d;
      }
    }
  }
}

// --compress-ratio: the rows are what an uncompressed dump of seq_len / c keys holds; each query sits at a token
// whose last visible row is that dump's query position, and the needle covers the same rows.
TEST(Synth, CompressedLayersHoldRowsAndQueriesAtTokens) {
  SynthOptions o = small_options();
  o.profile = SynthProfile::Niah;
  o.seq_len = 4 * 2048;
  o.compress_ratio = 4;
  o.needle_len = 64;
  o.queries = parse_query_selection("sample:40");
  SynthOptions rows = o;
  rows.seq_len = 2048;
  rows.compress_ratio = 1;
  rows.needle_len = 16;
  const LayerArrays a = synth_layer(o, 0, 1), b = synth_layer(rows, 0, 1);
  EXPECT_EQ(a.compress_ratio, 4);
  EXPECT_EQ(b.compress_ratio, 1);
  EXPECT_EQ(a.keys, 2048);
  EXPECT_EQ(a.k, b.k);
  EXPECT_EQ(a.q, b.q);
  ASSERT_EQ(a.q_pos.size(), b.q_pos.size());
  std::set<int64_t> offsets;
  for (size_t i = 0; i < a.q_pos.size(); ++i) {
    EXPECT_EQ(last_visible_row(a.q_pos[i], 4), b.q_pos[i]) << i;
    EXPECT_LT(a.q_pos[i], o.seq_len);
    offsets.insert(a.q_pos[i] % 4);
  }
  EXPECT_GT(offsets.size(), 1u) << "queries sit at more than one offset within a row";
  const SampleAttributes sa = synth_sample_attributes(o, 0), sb = synth_sample_attributes(rows, 0);
  EXPECT_EQ(sa.seq_len, 4 * 2048);
  EXPECT_EQ(*sa.needle_begin, 4 * *sb.needle_begin);
  EXPECT_EQ(*sa.needle_end, 4 * *sb.needle_end);
  EXPECT_NE(synth_file_attributes(o).source->find("compress_ratio=4"), std::string::npos);
  EXPECT_EQ(synth_file_attributes(rows).source->find("compress_ratio"), std::string::npos);
  // Packed: a query stays in its row's own sequence, whose first row is its k_start.
  o.packed = 2;
  o.queries = parse_query_selection("all");
  const LayerArrays p = synth_layer(o, 0, 1);
  ASSERT_EQ(p.k_start.size(), p.q_pos.size());
  for (size_t i = 0; i < p.q_pos.size(); ++i) {
    const int64_t row = last_visible_row(p.q_pos[i], 4);
    EXPECT_EQ(p.q_pos[i] / (4 * 1024), p.k_start[i] / 1024) << "query " << i << " at token " << p.q_pos[i];
    EXPECT_GE(row, p.k_start[i]);
  }
  o.packed = 1;
  o.seq_len = 4 * 2048 + 2;
  EXPECT_THROW(validate_synth_options(o), OptionError);
  o.seq_len = 4 * 2048;
  o.compress_ratio = 0;
  EXPECT_THROW(validate_synth_options(o), OptionError);
}

TEST(Synth, QueryModes) {
  SynthOptions o = small_options();
  o.queries = parse_query_selection("all");
  const LayerArrays all = synth_layer(o, 0, 0);
  std::vector<int64_t> every(2048);
  std::iota(every.begin(), every.end(), 0);
  EXPECT_EQ(all.q_pos, every);

  o.queries = parse_query_selection("last:5");
  EXPECT_EQ(synth_query_positions(o, 0), (std::vector<int64_t>{2043, 2044, 2045, 2046, 2047}));

  o.queries = parse_query_selection("sample:100");
  const LayerArrays sampled = synth_layer(o, 0, 0);
  const auto& pos = sampled.q_pos;
  ASSERT_EQ(pos.size(), 100u);
  EXPECT_TRUE(std::is_sorted(pos.begin(), pos.end()));
  EXPECT_EQ(std::set<int64_t>(pos.begin(), pos.end()).size(), 100u);
  EXPECT_EQ(pos.back(), 2047);
  EXPECT_GE(pos.front(), 0);
  EXPECT_LT(pos.front(), 500);  // spread over the sequence, not bunched at the end
  EXPECT_NE(synth_query_positions(o, 1), pos);  // each sample draws its own positions

  // A position's query is the same whichever mode selected it.
  const int64_t H = all.heads, D = all.dim;
  for (size_t i = 0; i < pos.size(); ++i) {
    const int64_t t = pos[i];
    ASSERT_TRUE(std::equal(sampled.q.begin() + int64_t(i) * H * D, sampled.q.begin() + int64_t(i + 1) * H * D,
                           all.q.begin() + t * H * D));
    ASSERT_TRUE(std::equal(sampled.w.begin() + int64_t(i) * H, sampled.w.begin() + int64_t(i + 1) * H,
                           all.w.begin() + t * H));
  }

  o.queries = parse_query_selection("sample:5000");  // more than L: every position
  EXPECT_EQ(synth_query_positions(o, 0), every);
  EXPECT_EQ(query_selection_text(SynthOptions{}.queries), "sample:256");  // the default
  EXPECT_THROW(parse_query_selection("last:0"), UsageError);
  EXPECT_THROW(parse_query_selection("sample"), UsageError);
  EXPECT_THROW(parse_query_selection("first:3"), UsageError);
  EXPECT_THROW(parse_query_selection("last:-2"), UsageError);
}

TEST(Synth, PackedSequencesWriteKStart) {
  SynthOptions o = small_options();
  o.packed = 4;
  o.queries = parse_query_selection("sample:64");
  TempFile f("packed");
  o.output = f.path;
  write_synth_dump(o);
  DumpReader r(f.path);
  LayerReader lr = r.open_layer("sample_0", 0);
  ASSERT_TRUE(lr.shape().has_k_start);
  const QueryBatch qb = lr.read_queries(0, lr.shape().queries);
  for (int64_t i = 0; i < qb.count; ++i) EXPECT_EQ(qb.k_start[size_t(i)], qb.q_pos[size_t(i)] / 512 * 512);
  const SynthLayout lay = synth_layout(o, 0);
  EXPECT_TRUE(lay.is_sink(512 + 3));
  EXPECT_FALSE(lay.is_sink(512 + 4));
  EXPECT_GE(lay.needle_begin, 3 * 512);  // the needle lies in the last sequence, with the late queries
  EXPECT_EQ(r.samples()[0].attributes.context_length, 512);
}

TEST(Synth, NeedleAttributes) {
  SynthOptions o = small_options();
  o.depth_percent = 25;
  o.needle_len = 40;
  const SampleAttributes a = synth_sample_attributes(o, 0);
  EXPECT_EQ(a.task, "niah");
  EXPECT_EQ(a.context_length, 2048);
  EXPECT_EQ(a.depth_percent, 25.0);
  EXPECT_EQ(a.needle_begin, std::llround(0.25 * (2048 - 40)));
  EXPECT_EQ(a.needle_end, *a.needle_begin + 40);
  o.depth_percent = 100;
  EXPECT_EQ(synth_sample_attributes(o, 0).needle_end, 2048);
  o.profile = SynthProfile::Mixed;
  EXPECT_FALSE(synth_sample_attributes(o, 0).task.has_value());
  EXPECT_FALSE(synth_layout(o, 0).has_needle());
}

TEST(Synth, LayoutHasIsolatedSpikesAndBoundedSpans) {
  SynthOptions o = small_options();
  o.seq_len = 32768;
  const SynthLayout lay = synth_layout(o, 0);
  EXPECT_GT(lay.spikes.size(), 50u);  // ~0.3 % of 32768 = 98
  EXPECT_LT(lay.spikes.size(), 150u);
  for (size_t i = 1; i < lay.spikes.size(); ++i) EXPECT_GT(lay.spikes[i] - lay.spikes[i - 1], 1);
  for (int64_t s : lay.spikes) EXPECT_FALSE(lay.is_sink(s) || lay.in_needle(s));
  for (size_t i = 0; i + 1 < lay.span_begin.size(); ++i) {
    EXPECT_GE(lay.span_begin[i + 1] - lay.span_begin[i], 64);
    EXPECT_LE(lay.span_begin[i + 1] - lay.span_begin[i], 1024);
    EXPECT_NE(lay.span_topic[i], lay.span_topic[i + 1]);
  }
}

TEST(Synth, InvalidOptionsNameTheOption) {
  // The option an OptionError names, and its message in the library's own words (the CLI spells flags).
  auto error = [](auto edit) {
    SynthOptions o = small_options();
    edit(o);
    try {
      validate_synth_options(o);
    } catch (const OptionError& e) {
      return e.option() + ": " + e.what();
    }
    return std::string("no error");
  };
  EXPECT_EQ(error([](SynthOptions& o) { o.head_dim = 32; }),
            "head_dim: head_dim must be at least 64 (dims 0..63 carry RoPE), got 32");
  EXPECT_EQ(error([](SynthOptions& o) { o.gzip_level = 10; }), "gzip: gzip must be 0-9, got 10");
  EXPECT_EQ(error([](SynthOptions& o) { o.packed = 3; }).substr(0, 16), "packed: packed 3");
  EXPECT_EQ(error([](SynthOptions& o) { o.depth_percent = -1; }).substr(0, 7), "depth: ");
  EXPECT_EQ(error([](SynthOptions& o) { o.needle_len = 4096; }).substr(0, 12), "needle_len: ");
  EXPECT_EQ(error([](SynthOptions& o) { o.ue8m0 = true; }), "scale_fmt: scale_fmt ue8m0 needs dtype fp8");
  EXPECT_EQ(error([](SynthOptions& o) { o.layers = 0; }), "layers: layers must be at least 1, got 0");
}

// The layer kinds, checked with brute-force scores of the last queries (L = 4096, H = 4, k = 64).
class SynthBehaviour : public ::testing::Test {
 protected:
  static constexpr int64_t kTopK = 64;
  SynthOptions o;
  SynthLayout lay;
  void SetUp() override {
    o = small_options();
    o.seq_len = 4096;
    o.dtype = ElementType::F32;
    o.queries = parse_query_selection("last:4");
    lay = synth_layout(o, 0);
  }
  // The share of the top-k of the last queries for which `pick` holds, averaged over those queries.
  template <class Pick>
  double top_k_share(int layer, Pick pick) const {
    const LayerArrays a = synth_layer(o, 0, layer);
    double share = 0;
    for (int64_t i = 0; i < a.queries; ++i) {
      const auto top = top_k(brute_scores(a, i), kTopK);
      share += double(std::count_if(top.begin(), top.end(), [&](int64_t s) { return pick(a.q_pos[size_t(i)], s); })) /
               double(kTopK);
    }
    return share / double(a.queries);
  }
};

TEST_F(SynthBehaviour, LocalLayerSelectsNearbyKeys) {
  ASSERT_EQ(synth_layer_kind(o.profile, 0), LayerKind::Local);
  EXPECT_GE(top_k_share(0, [](int64_t t, int64_t s) { return t - s < 512; }), 0.7);
  // The sink is in the top-k of most queries.
  EXPECT_GE(top_k_share(0, [&](int64_t, int64_t s) { return lay.is_sink(s); }) * kTopK, 3.0);
}

TEST_F(SynthBehaviour, RetrievalLayerFindsTheNeedle) {
  ASSERT_EQ(synth_layer_kind(o.profile, 1), LayerKind::Retrieval);
  const double needle_share = top_k_share(1, [&](int64_t, int64_t s) { return lay.in_needle(s); });
  EXPECT_GE(needle_share * kTopK, 0.8 * double(o.needle_len));
  // ...which the local layer ignores.
  EXPECT_LE(top_k_share(0, [&](int64_t, int64_t s) { return lay.in_needle(s); }) * kTopK, 2.0);
}

TEST_F(SynthBehaviour, SpikyLayerSelectsTheIsolatedTokens) {
  ASSERT_EQ(synth_layer_kind(o.profile, 2), LayerKind::Spiky);
  const std::set<int64_t> spikes(lay.spikes.begin(), lay.spikes.end());
  ASSERT_GE(spikes.size(), 5u);
  auto is_spike = [&](int64_t, int64_t s) { return spikes.count(s) > 0; };
  // Nearly every spike is in the top-k (all of them are visible to the last queries)...
  EXPECT_GE(top_k_share(2, is_spike) * kTopK, 0.9 * double(spikes.size()));
  // ...but not in a local layer's.
  EXPECT_LE(top_k_share(0, is_spike) * kTopK, 1.0);
}

TEST(SynthRandom, HasNoStructure) {
  SynthOptions o = small_options();
  o.profile = SynthProfile::Random;
  const SynthLayout lay = synth_layout(o, 0);
  EXPECT_TRUE(lay.spikes.empty());
  EXPECT_FALSE(lay.has_needle());
  const LayerArrays a = synth_layer(o, 0, 0);
  EXPECT_TRUE(std::any_of(a.w.begin(), a.w.end(), [](float w) { return w < 0; }));
  EXPECT_TRUE(std::any_of(a.w.begin(), a.w.end(), [](float w) { return w > 0; }));
  EXPECT_FALSE(synth_sample_attributes(o, 0).task.has_value());
}

}  // namespace
}  // namespace hisa
