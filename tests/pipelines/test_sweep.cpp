// hisa sweep: the one-pass curves against the CPU engine's HISA at each (B, m), the entry-m ranking against
// keep_blocks, the recommendation rules on a hand-made case, aggregates over several dumps, the CLI.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>

#include "core/error.hpp"
#include "core/int_list.hpp"
#include "io/dump_reader.hpp"
#include "io/query_subset.hpp"
#include "metrics/query_metrics.hpp"
#include "pipelines/sweep.hpp"
#include "render/sweep_output.hpp"
#include "select/blocks.hpp"
#include "select/engine.hpp"
#include "analysis/sweep_points.hpp"
#include "synth/synth.hpp"
#include "test_util.hpp"

namespace hisa {
namespace {

SynthOptions small_synth(const std::string& path, SynthProfile profile) {
  SynthOptions s;
  s.output = path;
  s.profile = profile;
  s.seq_len = 2048;
  s.layers = 2;
  s.heads = 4;
  s.head_dim = 64;
  s.index_topk = 64;
  s.queries = parse_query_selection("sample:16");
  s.needle_len = 16;
  return s;
}

SweepOptions sweep_of(const std::vector<std::string>& files) {
  SweepOptions o;
  o.files = files;
  o.block_sizes = {8, 32, 128};
  o.blocks = {1, 2, 3, 5, 16, 64};
  o.progress = false;
  return o;
}

TEST(SweepLists, DoublingRangesAndLists) {
  EXPECT_EQ(parse_size_list("8-512", "--blocks"), (std::vector<int64_t>{8, 16, 32, 64, 128, 256, 512}));
  EXPECT_EQ(parse_size_list("12-100", "--blocks"), (std::vector<int64_t>{12, 24, 48, 96, 100}));
  EXPECT_EQ(parse_size_list("16,8,12,8", "--blocks"), (std::vector<int64_t>{8, 12, 16}));
  EXPECT_EQ(parse_size_list("5-5,1", "--blocks"), (std::vector<int64_t>{1, 5}));
  for (const char* bad : {"0", "-4", "8-", "abc", "64-32", "", ",", "8,x"}) {
    EXPECT_THROW(parse_size_list(bad, "--block-sizes"), UsageError) << bad;
  }
}

// The entry m of every block reproduces keep_blocks at every m, ties in J included; a limit only cuts off
// the entries above it.
TEST(SweepCurve, EntryMReproducesKeepBlocks) {
  std::mt19937_64 rng(7);
  std::vector<int64_t> entry, limited, kept;
  for (int trial = 0; trial < 400; ++trial) {
    const int64_t n = 1 + int64_t(rng() % 40), first = int64_t(rng() % 5);
    std::vector<float> J(static_cast<size_t>(n));
    for (auto& v : J) v = float(int(rng() % 7) - 3);  // few values: many ties
    const BlockSpan span{first, first + n - 1};
    for (ForcedMode mode : {ForcedMode::InBudget, ForcedMode::Extra}) {
      block_entry_m(J, span, mode, n, entry);
      for (int64_t m = 1; m <= n + 2; ++m) {
        keep_blocks(J, span, m, mode, kept);
        std::vector<int64_t> by_entry;
        for (int64_t i = 0; i < n; ++i) {
          if (entry[size_t(i)] <= m) by_entry.push_back(first + i);
        }
        ASSERT_EQ(by_entry, kept) << "n " << n << " m " << m << " mode " << forced_mode_name(mode);
      }
      const int64_t limit = 1 + int64_t(rng() % uint64_t(n));
      block_entry_m(J, span, mode, limit, limited);
      for (int64_t i = 0; i < n; ++i) {
        EXPECT_EQ(limited[size_t(i)], entry[size_t(i)] <= limit ? entry[size_t(i)] : limit + 1);
      }
    }
  }
}

struct Record {
  int64_t q_pos;
  std::vector<SweepPoint> points;
};

// Every point of every curve is what the CPU engine's HISA(B, m) gives for that query: recall and IoU
// exactly (same scores, same sets), scored keys by the formula, for every profile, both forced modes and
// both poolings, through the regime where the kept blocks hold fewer than k tokens.
TEST(Sweep, CurvesEqualTheEngineOnEveryProfile) {
  test::TempDir dir;
  int64_t fewer_than_k = 0, both_k = 0;
  for (SynthProfile profile : {SynthProfile::Niah, SynthProfile::Mixed, SynthProfile::Local, SynthProfile::Retrieval,
                               SynthProfile::Spiky, SynthProfile::Random}) {
    for (int64_t packed : {1, 4}) {
      if (packed > 1 && profile != SynthProfile::Niah) continue;  // k_start > 0: one profile is enough
      SCOPED_TRACE(std::string(profile_name(profile)) + " packed " + std::to_string(packed));
      const std::string path = dir.file(std::string(profile_name(profile)) + std::to_string(packed) + ".h5");
      SynthOptions s = small_synth(path, profile);
      s.packed = packed;
      write_synth_dump(s);
      SweepOptions o = sweep_of({path});
      o.blocks = {1, 2, 5, 16, 64};
      if (profile == SynthProfile::Niah || profile == SynthProfile::Random) {  // every mode on two profiles
        o.pools = {PoolPrecision::Fp32, PoolPrecision::Fp8};
        o.forced = {ForcedMode::InBudget, ForcedMode::Extra};
      }
      std::map<std::pair<int, int64_t>, Record> records;
      const SweepResult r = run_sweep(o, [&](const SweepQueryRecord& q) {
        records[{q.layer, q.query}] = {q.q_pos, {q.points.begin(), q.points.end()}};
      });
      ASSERT_EQ(r.variants.size(), 3u * o.pools.size() * o.forced.size());
      ASSERT_EQ(records.size(), 2u * 16u);

      DumpReader reader(path);
      auto engine = make_cpu_engine(2);
      std::vector<QueryAudit> audits;
      for (int layer = 0; layer < 2; ++layer) {
        LayerReader lr = reader.open_layer("sample_0", layer);
        const LayerKeys keys = lr.read_keys();
        const QueryBatch batch = read_query_subset(lr, pick_queries(lr.shape().queries, 0));
        for (size_t v = 0; v < r.variants.size(); ++v) {
          for (size_t j = 0; j < r.blocks.size(); ++j) {
            SelectionConfig c;
            c.topk = 64;
            c.block_size = r.variants[v].block_size;
            c.blocks = r.blocks[j];
            c.pool = r.variants[v].pool;
            c.forced = r.variants[v].forced;
            engine->set_layer(keys, c);
            engine->audit(batch, audits);
            for (int64_t i = 0; i < batch.count; ++i) {
              const QueryAudit& a = audits[size_t(i)];
              const Record& rec = records.at({layer, i});
              ASSERT_EQ(rec.q_pos, a.q_pos);
              const SweepPoint& p = rec.points[v * r.blocks.size() + j];
              const QueryMetrics m = compute_query_metrics(a, i, std::nullopt);
              ASSERT_EQ(p.recall, m.hisa.recall) << "layer " << layer << " query " << i << " B " << c.block_size << " m " << c.blocks;
              ASSERT_EQ(p.iou, m.hisa.iou) << "layer " << layer << " query " << i << " B " << c.block_size << " m " << c.blocks;
              int64_t scored = eligible_blocks(a.k_start, a.q_pos, c.block_size).size();
              for (int64_t b : a.hisa_blocks) scored += visible_in_block(b, c.block_size, a.k_start, a.q_pos).size();
              ASSERT_EQ(p.scored_keys, scored);
              if (int64_t(a.hisa.size()) < c.topk && a.visible > c.topk) {
                ++fewer_than_k;  // IoU = c / (|D| + |H| - c) with |H| < k
              } else if (int64_t(a.hisa.size()) == c.topk && int64_t(a.flat.size()) == c.topk) {
                ++both_k;
                EXPECT_NEAR(p.iou, p.recall / (2 - p.recall), 1e-12);
              }
            }
          }
        }
      }
    }
  }
  EXPECT_GT(fewer_than_k, 100);
  EXPECT_GT(both_k, 100);
}

TEST(Sweep, ThreadCountDoesNotChangeResults) {
  test::TempDir dir;
  const std::string path = dir.file("d.h5");
  write_synth_dump(small_synth(path, SynthProfile::Niah));
  SweepOptions o = sweep_of({path});
  o.pools = {PoolPrecision::Fp32, PoolPrecision::Fp8};
  auto json_without_times = [&](int threads) {
    o.threads = threads;
    auto j = sweep_json(run_sweep(o));
    j.erase("timings_seconds");
    return j.dump();
  };
  EXPECT_EQ(json_without_times(1), json_without_times(2));
}

// A hand-made grid: 2 block sizes × 3 budgets, layers whose answers can be read off the numbers.
CurvePoint point(int64_t m, double recall, double p5, double keys, int64_t queries = 10) {
  CurvePoint p;
  p.blocks = m, p.queries = queries, p.recall_mean = recall, p.recall_p5 = p5, p.recall_min = p5, p.iou_mean = recall;
  p.scored_keys_mean = keys;
  return p;
}

SweepResult hand_made() {
  SweepResult r;
  r.topk = 2048;
  r.block_sizes = {32, 64};
  r.blocks = {8, 16, 32};
  r.pools = {PoolPrecision::Fp32};
  r.forced = {ForcedMode::InBudget};
  r.target_recall = 0.99, r.target_p5 = 0.95;
  r.variants = {{32, PoolPrecision::Fp32, ForcedMode::InBudget}, {64, PoolPrecision::Fp32, ForcedMode::InBudget}};
  r.samples = {{"s0", "f", "s0", 1000, "a"}, {"s1", "f", "s1", 2000, "b"}};
  r.groups = {{"context_length", "1000", {0}}, {"context_length", "2000", {1}}, {"task", "a", {0}}, {"task", "b", {1}}};
  return r;
}

void add_layer(SweepResult& r, int layer, std::vector<std::vector<CurvePoint>> all) {
  LayerSweep l;
  l.layer = layer;
  l.all.queries = 20;
  l.all.points = all;
  Curves s0, s1;  // s0 as the layer; s1 0.01 lower in recall mean
  s0.queries = s1.queries = 10;
  s0.points = s1.points = all;
  for (auto& curve : s1.points) {
    for (auto& p : curve) p.recall_mean -= 0.01;
  }
  l.per_sample = {s0, s1};
  l.per_group = {s0, s1, s0, s1};
  r.layers.push_back(l);
}

TEST(Sweep, RecommendationPicksTheCheapestPassingSetting) {
  SweepResult r = hand_made();
  // Layer 0: B=64, m=8 (560 keys) beats B=32, m=16 (600), the other passing settings cost more.
  add_layer(r, 0, {{point(8, 0.95, 0.90, 300), point(16, 0.995, 0.96, 600), point(32, 1, 1, 1100)},
                   {point(8, 0.992, 0.97, 560), point(16, 0.999, 0.99, 1000), point(32, 1, 1, 2100)}});
  // Layer 1: B=32, m=32 and B=64, m=16 cost the same (1100): the smaller block size wins.
  add_layer(r, 1, {{point(8, 0.90, 0.80, 300), point(16, 0.98, 0.90, 600), point(32, 0.995, 0.97, 1100)},
                   {point(8, 0.97, 0.90, 560), point(16, 0.991, 0.951, 1100), point(32, 1, 1, 2100)}});
  ModeRecommendation m = recommend_mode(r, 0, 0);
  ASSERT_EQ(m.layers.size(), 2u);
  EXPECT_TRUE(m.layers[0].meets_targets);
  EXPECT_EQ(m.layers[0].block_size, 64);
  EXPECT_EQ(m.layers[0].blocks, 8);
  EXPECT_EQ(m.layers[0].expected.scored_keys_mean, 560);
  EXPECT_EQ(m.layers[0].worst_sample, "s1");
  EXPECT_NEAR(m.layers[0].worst.recall_mean, 0.982, 1e-12);
  EXPECT_EQ(m.layers[1].block_size, 32);
  EXPECT_EQ(m.layers[1].blocks, 32);
  // Uniform: passing everywhere are B=32 m=32 (mean 1100), B=64 m=16 (1050), B=64 m=32 (2100).
  ASSERT_TRUE(m.uniform.has_value());
  EXPECT_EQ(m.uniform->block_size, 64);
  EXPECT_EQ(m.uniform->blocks, 16);
  EXPECT_DOUBLE_EQ(m.uniform->scored_keys_mean, 1050);
  EXPECT_EQ(m.uniform->lowest_layer, 1);
  EXPECT_EQ(m.uniform->worst_sample, "s1");
  EXPECT_EQ(m.uniform->worst_layer, 1);
  EXPECT_EQ(m.heaviest, (std::vector<int>{1, 0}));
  EXPECT_TRUE(m.unmet.empty());
  // Groups: s0 (context 1000, task a) meets the targets on both layers, s1 (0.01 lower) on neither.
  ASSERT_EQ(m.groups.size(), 4u);
  EXPECT_EQ(m.groups[0].layers_meeting, 2);
  EXPECT_EQ(m.groups[1].layers_meeting, 0);
  EXPECT_EQ(m.groups[1].layers_present, 2);
  EXPECT_NEAR(m.groups[1].recommended[0].recall_mean, 0.982, 1e-12);
  EXPECT_NEAR(m.groups[1].uniform[0].recall_mean, 0.989, 1e-12);

  // A layer nothing serves: its best recall (0.7, cheapest at B=32, m=32), listed unmet; no uniform setting.
  add_layer(r, 2, {{point(8, 0.5, 0.3, 300), point(16, 0.6, 0.4, 600), point(32, 0.7, 0.5, 1100)},
                   {point(8, 0.55, 0.3, 560), point(16, 0.7, 0.45, 1100), point(32, 0.7, 0.5, 2100)}});
  m = recommend_mode(r, 0, 0);
  EXPECT_FALSE(m.layers[2].meets_targets);
  EXPECT_EQ(m.layers[2].block_size, 32);
  EXPECT_EQ(m.layers[2].blocks, 32);
  EXPECT_EQ(m.unmet, std::vector<int>{2});
  EXPECT_FALSE(m.uniform.has_value());
  EXPECT_EQ(m.heaviest, (std::vector<int>{1, 0}));
}

// Several dumps: curves per sample, per group and over all queries agree; the recommendation on real data
// is the cheapest passing setting of the grid; the worst sample is the minimum over samples.
TEST(Sweep, SeveralDumpsAggregateByContextLengthAndTask) {
  test::TempDir dir;
  SynthOptions a = small_synth(dir.file("a.h5"), SynthProfile::Niah);
  SynthOptions b = small_synth(dir.file("b.h5"), SynthProfile::Niah);
  b.seq_len = 1024;
  b.depth_percent = 20;
  SynthOptions c = small_synth(dir.file("c.h5"), SynthProfile::Random);
  c.seq_len = 1024;
  for (const auto* s : {&a, &b, &c}) write_synth_dump(*s);
  SweepOptions o = sweep_of({a.output, b.output, c.output});
  o.target_recall = 0.9, o.target_p5 = 0.5;
  const SweepResult r = run_sweep(o);
  ASSERT_EQ(r.samples.size(), 3u);
  EXPECT_EQ(r.samples[0].label, a.output + ":sample_0");
  ASSERT_EQ(r.groups.size(), 3u);  // context 1024 {b, c}, context 2048 {a}, task niah {a, b}; c has no task
  EXPECT_EQ(r.groups[0].key, "1024");
  EXPECT_EQ(r.groups[0].samples, (std::vector<size_t>{1, 2}));
  EXPECT_EQ(r.groups[1].key, "2048");
  EXPECT_EQ(r.groups[2].kind, "task");
  EXPECT_EQ(r.groups[2].key, "niah");
  EXPECT_EQ(r.groups[2].samples, (std::vector<size_t>{0, 1}));
  for (const auto& l : r.layers) {
    EXPECT_EQ(l.all.queries, 48);
    for (size_t v = 0; v < r.variants.size(); ++v) {
      for (size_t j = 0; j < r.blocks.size(); ++j) {
        double weighted = 0;
        for (size_t s = 0; s < 3; ++s) weighted += l.per_sample[s].points[v][j].recall_mean * 16;
        EXPECT_NEAR(l.all.points[v][j].recall_mean, weighted / 48, 1e-12);
        const double group = (l.per_sample[1].points[v][j].recall_mean + l.per_sample[2].points[v][j].recall_mean) / 2;
        EXPECT_NEAR(l.per_group[0].points[v][j].recall_mean, group, 1e-12);
        EXPECT_EQ(l.per_group[1].points[v][j].recall_mean, l.per_sample[0].points[v][j].recall_mean);
        EXPECT_LE(l.all.points[v][j].recall_min, l.all.points[v][j].recall_p5);
        EXPECT_LE(l.all.points[v][j].recall_p5, l.all.points[v][j].recall_mean);
        if (j > 0) {
          EXPECT_GE(l.all.points[v][j].recall_p5, l.all.points[v][j - 1].recall_p5);  // kept sets grow
        }
      }
    }
  }
  ASSERT_EQ(r.recommendations.size(), 1u);
  for (size_t i = 0; i < r.layers.size(); ++i) {
    const LayerRecommendation& rec = r.recommendations[0].layers[i];
    const LayerSweep& l = r.layers[i];
    ASSERT_TRUE(rec.meets_targets);
    EXPECT_TRUE(r.meets(l.all.points[rec.variant][rec.m_index]));
    for (size_t v = 0; v < r.variants.size(); ++v) {
      for (const auto& p : l.all.points[v]) {
        if (r.meets(p)) {
          EXPECT_GE(p.scored_keys_mean, rec.expected.scored_keys_mean);
        }
      }
    }
    double worst = 2;
    for (size_t s = 0; s < 3; ++s) worst = std::min(worst, l.per_sample[s].points[rec.variant][rec.m_index].recall_mean);
    EXPECT_EQ(rec.worst.recall_mean, worst);
  }
}

TEST(SweepCli, OutputsAndBadInput) {
  test::TempDir dir;
  const std::string path = dir.file("d.h5"), json = dir.file("s.json"), csv = dir.file("s.csv");
  write_synth_dump(small_synth(path, SynthProfile::Niah));
  auto ok = test::run_process({HISA_BINARY, "sweep", path, "--block-sizes", "16,64", "--blocks", "4-32", "--forced",
                               "in-budget,extra", "--json", json, "--csv", csv, "--timings"},
                              dir.path().string());
  ASSERT_TRUE(ok.exited);
  ASSERT_EQ(ok.status, 0) << ok.output;
  EXPECT_NE(ok.output.find("Recommendation (pool fp32, forced extra)"), std::string::npos);
  EXPECT_NE(ok.output.find("token scores + top-k"), std::string::npos);
  const std::string text = test::read_text(csv);
  EXPECT_EQ(text.substr(0, text.find('\n')),
            "sample,layer,block_size,blocks,recall_mean,recall_p5,recall_min,iou_mean,scored_keys_mean,pool_precision,forced");
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1 + 2 * 2 * 2 * 4);  // layers × B × forced × m (4,8,16,32)
  const auto j = nlohmann::json::parse(test::read_text(json));
  EXPECT_EQ(j["config"]["blocks"], nlohmann::json({4, 8, 16, 32}));
  ASSERT_EQ(j["recommendations"].size(), 2u);
  for (const char* key : {"layer", "block_size", "blocks", "expected_recall_mean", "expected_recall_p5", "scored_keys_mean"}) {
    EXPECT_TRUE(j["recommendations"][0]["layers"][0].contains(key)) << key;
  }
  EXPECT_EQ(j["curves"].size(), 2u * 2u * 2u);

  for (std::vector<std::string> bad : {std::vector<std::string>{"--block-sizes", "0"},
                                       {"--block-sizes", "64-32"},
                                       {"--block-sizes", "abc"},
                                       {"--blocks", "8,x"},
                                       {"--forced", "both"},
                                       {"--pool-precision", "fp16"},
                                       {"--target-recall", "1.5"}}) {
    std::vector<std::string> argv = {HISA_BINARY, "sweep", path};
    argv.insert(argv.end(), bad.begin(), bad.end());
    auto r = test::run_process(argv, dir.path().string());
    ASSERT_TRUE(r.exited);
    EXPECT_EQ(r.status, 2) << bad[0] << " " << bad[1] << ": " << r.output;
    EXPECT_NE(r.output.find(bad[0]), std::string::npos) << r.output;
  }
  auto missing = test::run_process({HISA_BINARY, "sweep", dir.file("none.h5")}, dir.path().string());
  EXPECT_EQ(missing.status, 2);
}

}  // namespace
}  // namespace hisa
