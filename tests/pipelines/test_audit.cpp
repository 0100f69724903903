// hisa audit and hisa select end to end: dumps on disk, through the loader, the engine and the metrics,
// checked against the reference selection and the definitions.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <regex>
#include <set>

#include "core/error.hpp"
#include "io/dump_reader.hpp"
#include "io/dump_writer.hpp"
#include "io/h5.hpp"
#include "pipelines/audit.hpp"
#include "render/audit_output.hpp"
#include "pipelines/select.hpp"
#include "select/reference.hpp"
#include "synth/synth.hpp"
#include "test_util.hpp"

namespace hisa {
namespace {

SynthOptions small_synth(const std::string& path, ElementType dtype = ElementType::BF16) {
  SynthOptions s;
  s.output = path;
  s.seq_len = 2048;
  s.layers = 3;
  s.heads = 4;
  s.head_dim = 64;
  s.index_topk = 64;
  s.queries = parse_query_selection("sample:24");
  s.dtype = dtype;
  s.needle_len = 16;
  return s;
}

AuditOptions audit_of(const std::string& path) {
  AuditOptions o;
  o.files = {path};
  o.config.block_size = 32;
  o.config.blocks = 4;
  o.run.device = "cpu";
  o.progress = false;
  return o;
}

struct Collected {
  std::string sample;
  int layer;
  QueryAudit audit;
  QueryMetrics metrics;
};

std::vector<Collected> collect(const AuditOptions& o, AuditResult* result = nullptr) {
  std::vector<Collected> out;
  AuditResult r = run_audit(o, [&](const QueryRecord& q) { out.push_back({q.sample, q.layer, *q.audit, *q.metrics}); });
  if (result) *result = r;
  return out;
}

// Differences with the reference are allowed only between tokens whose reference scores tie with the
// k-th score to within a relative 1e-5 (the fp32 sums are taken in another order).
void expect_equal_up_to_near_ties(const std::vector<int64_t>& got, const std::vector<int64_t>& want,
                                  const QueryBatch& b, int64_t i, const LayerKeys& keys) {
  if (got == want) return;
  ASSERT_EQ(got.size(), want.size());
  float kth = INFINITY;
  for (int64_t p : want) kth = std::min(kth, reference::score(b, i, keys, p));
  std::vector<int64_t> diff;
  std::set_symmetric_difference(got.begin(), got.end(), want.begin(), want.end(), std::back_inserter(diff));
  for (int64_t p : diff) {
    EXPECT_NEAR(reference::score(b, i, keys, p), kth, 1e-5f * std::fabs(kth) + 1e-6f) << "position " << p;
  }
}

TEST(Audit, EveryElementTypeFollowsTheReference) {
  test::TempDir dir;
  for (ElementType t : {ElementType::F32, ElementType::F16, ElementType::BF16, ElementType::FP8_E4M3}) {
    SCOPED_TRACE(std::string(element_type_name(t)));
    const std::string path = dir.file(std::string(element_type_name(t)) + ".h5");
    write_synth_dump(small_synth(path, t));
    AuditOptions o = audit_of(path);
    o.topk = 64;
    o.config.topk = 64;
    auto records = collect(o);
    ASSERT_EQ(records.size(), 3u * 24u);
    DumpReader reader(path);
    for (int layer = 0; layer < 3; ++layer) {
      LayerReader lr = reader.open_layer("sample_0", layer);
      LayerKeys keys = lr.read_keys();
      QueryBatch b = lr.read_queries(0, lr.shape().queries);
      for (int64_t i = 0; i < b.count; ++i) {
        const QueryAudit& a = records[size_t(layer * 24 + i)].audit;
        ASSERT_EQ(records[size_t(layer * 24 + i)].layer, layer);
        SelectionConfig c = o.config;
        expect_equal_up_to_near_ties(a.flat, reference::flat(b, i, keys, c), b, i, keys);
        // Block choices come from J, which has no near-tie slack: compare the kept blocks exactly only
        // when HISA's blocks agree, then the tokens.
        auto ref_blocks = reference::hisa_blocks(b, i, keys, c, c.blocks, c.forced);
        if (ref_blocks == a.hisa_blocks) expect_equal_up_to_near_ties(a.hisa, reference::hisa(b, i, keys, c), b, i, keys);
      }
    }
  }
}

TEST(Audit, LayerStatisticsAggregateTheQueries) {
  test::TempDir dir;
  const std::string path = dir.file("d.h5");
  write_synth_dump(small_synth(path));
  AuditResult r;
  auto records = collect(audit_of(path), &r);
  ASSERT_EQ(r.layers.size(), 3u);
  EXPECT_EQ(r.config.topk, 64);  // the file's index_topk
  for (const auto& l : r.layers) {
    double iou = 0, recall = 0;
    int64_t n = 0;
    for (const auto& c : records) {
      if (c.layer != l.layer) continue;
      iou += c.metrics.hisa.iou;
      recall += c.metrics.hisa.recall;
      ++n;
    }
    EXPECT_EQ(l.queries, n);
    EXPECT_NEAR(l.hisa.iou.mean, iou / double(n), 1e-12);
    EXPECT_NEAR(l.hisa.recall.mean, recall / double(n), 1e-12);
    EXPECT_LE(l.hisa.iou.min, l.hisa.iou.p5);
    EXPECT_LE(l.hisa.iou.p5, l.hisa.iou.p50);
    EXPECT_TRUE(l.needle_recall_flat_mean.has_value());  // niah dumps carry the needle range
  }
  // The profile's layers differ (local, retrieval, spiky): the audit must show it.
  EXPECT_GT(r.layers[0].hisa.iou.mean - r.layers[2].hisa.iou.mean, 0.05);
}

TEST(Audit, FullBudgetMeansHisaEqualsDsa) {
  test::TempDir dir;
  const std::string path = dir.file("d.h5");
  write_synth_dump(small_synth(path));
  AuditOptions o = audit_of(path);
  o.config.block_size = 64;
  o.config.blocks = 32;  // m·B = 2048 = L
  AuditResult r;
  for (const auto& c : collect(o, &r)) EXPECT_EQ(c.audit.hisa, c.audit.flat);
  for (const auto& l : r.layers) {
    EXPECT_DOUBLE_EQ(l.hisa.exact_share, 1.0);
    EXPECT_DOUBLE_EQ(l.hisa.iou.min, 1.0);
    EXPECT_EQ(l.hisa_misses.tokens, 0);
  }
}

TEST(Audit, OutputsDoNotDependOnThreads) {
  test::TempDir dir;
  const std::string path = dir.file("d.h5");
  write_synth_dump(small_synth(path));
  AuditOptions o = audit_of(path);
  o.threads = 1;
  const std::string one = audit_json(run_audit(o)).dump();
  o.threads = 2;
  EXPECT_EQ(audit_json(run_audit(o)).dump(), one);
}

TEST(Audit, PackedSequencesStayInsideTheirRange) {
  test::TempDir dir;
  const std::string path = dir.file("packed.h5");
  SynthOptions s = small_synth(path);
  s.packed = 4;
  write_synth_dump(s);
  auto records = collect(audit_of(path));
  ASSERT_FALSE(records.empty());
  bool some_start = false;
  for (const auto& c : records) {
    some_start |= c.audit.k_start > 0;
    for (const auto* sel : {&c.audit.flat, &c.audit.hisa, &c.audit.block}) {
      for (int64_t p : *sel) {
        EXPECT_GE(p, c.audit.k_start);
        EXPECT_LE(p, c.audit.q_pos);
      }
    }
  }
  EXPECT_TRUE(some_start);
}

// A dump whose topk_ref is the reference DSA selection itself: ref IoU must be exactly 1.
TEST(Audit, RefIouIsOneWhenTopkRefIsDsa) {
  test::TempDir dir;
  const std::string src = dir.file("src.h5"), path = dir.file("ref.h5");
  SynthOptions s = small_synth(src, ElementType::F32);
  s.layers = 1;
  write_synth_dump(s);
  LayerArrays a = synth_layer(s, 0, 0);
  DumpReader reader(src);
  LayerReader lr = reader.open_layer("sample_0", 0);
  LayerKeys keys = lr.read_keys();
  QueryBatch b = lr.read_queries(0, lr.shape().queries);
  SelectionConfig c;
  c.topk = s.index_topk;
  a.ref_width = s.index_topk;
  a.topk_ref.assign(size_t(a.queries * a.ref_width), -1);
  for (int64_t i = 0; i < b.count; ++i) {
    auto sel = reference::flat(b, i, keys, c);
    std::reverse(sel.begin(), sel.end());  // any order is allowed
    std::copy(sel.begin(), sel.end(), a.topk_ref.begin() + i * a.ref_width);
  }
  {
    DumpWriter w(path, synth_file_attributes(s));
    w.add_sample("sample_0", synth_sample_attributes(s, 0));
    w.add_layer("sample_0", 0, a);
  }
  AuditResult r = run_audit(audit_of(path));
  ASSERT_TRUE(r.layers[0].ref_iou_mean.has_value());
  EXPECT_DOUBLE_EQ(*r.layers[0].ref_iou_mean, 1.0);
  EXPECT_DOUBLE_EQ(*r.layers[0].ref_iou_min, 1.0);
  EXPECT_EQ(audit_json(r)["layers"][0]["ref_iou_mean"], 1.0);
}

TEST(Audit, FiltersAndMissingLayers) {
  test::TempDir dir;
  const std::string path = dir.file("two.h5");
  SynthOptions s = small_synth(path);
  s.layers = 2;
  {
    DumpWriter w(path, synth_file_attributes(s));
    w.add_sample("a", synth_sample_attributes(s, 0));
    w.add_sample("b", synth_sample_attributes(s, 0));
    w.add_layer("a", 0, synth_layer(s, 0, 0));
    w.add_layer("a", 1, synth_layer(s, 0, 1));
    w.add_layer("b", 1, synth_layer(s, 0, 1));  // b has no layer 0
  }
  AuditResult r = run_audit(audit_of(path));
  ASSERT_EQ(r.layers.size(), 2u);
  EXPECT_EQ(r.layers[0].missing_samples, std::vector<std::string>{"b"});
  EXPECT_EQ(r.layers[1].queries, 48);
  AuditOptions o = audit_of(path);
  o.samples = {"b"};
  o.layers = {1};
  o.max_queries = 5;
  r = run_audit(o);
  ASSERT_EQ(r.layers.size(), 1u);
  EXPECT_EQ(r.layers[0].queries, 5);
  o.layers = {0};  // only in sample a
  EXPECT_THROW(run_audit(o), UsageError);
  o.layers = {};
  o.samples = {"nope"};
  EXPECT_THROW(run_audit(o), UsageError);
}

TEST(Select, WritesAscendingPaddedSelectionsThatMatchTheEngine) {
  test::TempDir dir;
  const std::string path = dir.file("d.h5"), out = dir.file("sel.h5");
  write_synth_dump(small_synth(path));
  std::vector<Collected> records = collect(audit_of(path));
  for (Method m : {Method::Flat, Method::Hisa, Method::Block}) {
    SCOPED_TRACE(std::string(method_name(m)));
    SelectOptions o;
    o.input = audit_of(path);
    o.method = m;
    o.output = out;
    EXPECT_EQ(run_select(o), 3 * 24);
    h5::Handle f = h5::file(H5Fopen(out.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
    ASSERT_TRUE(f.valid());
    EXPECT_EQ(h5::read_string_attribute(f.get(), "method"), std::string(method_name(m)));
    EXPECT_EQ(h5::read_int_attribute(f.get(), "topk"), 64);
    for (int layer = 0; layer < 3; ++layer) {
      const std::string where = "/sample_0/layer_" + std::to_string(layer) + "/indices";
      h5::Handle d = h5::dataset(H5Dopen2(f.get(), where.c_str(), H5P_DEFAULT));
      auto dims = h5::dataset_dims(d.get());
      ASSERT_EQ(dims[0], 24);
      if (m != Method::Block) {
        EXPECT_EQ(dims[1], 64);
      }
      std::vector<int32_t> idx(size_t(dims[0] * dims[1]));
      H5Dread(d.get(), H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, idx.data());
      for (int64_t i = 0; i < 24; ++i) {
        const QueryAudit& a = records[size_t(layer * 24 + i)].audit;
        const std::vector<int64_t>& want = m == Method::Flat ? a.flat : m == Method::Hisa ? a.hisa : a.block;
        std::vector<int64_t> got;
        for (int64_t j = 0; j < dims[1]; ++j) {
          int32_t v = idx[size_t(i * dims[1] + j)];
          if (v < 0) {
            for (int64_t r = j; r < dims[1]; ++r) {
              EXPECT_EQ(idx[size_t(i * dims[1] + r)], -1) << "padding is trailing";
            }
            break;
          }
          got.push_back(v);
        }
        EXPECT_TRUE(std::is_sorted(got.begin(), got.end()));
        // For hisa, select scores only the kept blocks while audit reads the same scores off full rows.
        EXPECT_EQ(got, want);
      }
    }
  }
}

// The CLI: exit statuses, outputs that parse, thresholds.
TEST(AuditCli, OutputsAndMinIou) {
  test::TempDir dir;
  const std::string path = dir.file("d.h5");
  write_synth_dump(small_synth(path));
  const std::string json = dir.file("a.json"), csv = dir.file("a.csv"), pq = dir.file("q.csv");
  auto r = test::run_process({HISA_BINARY, "audit", path, "--device", "cpu", "--block-size", "32", "--blocks", "4",
                              "--json", json, "--csv", csv, "--per-query", pq},
                             dir.path().string());
  ASSERT_TRUE(r.exited);
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("HISA IoU"), std::string::npos);
  auto j = nlohmann::json::parse(test::read_text(json));
  EXPECT_EQ(j["config"]["block_size"], 32);
  EXPECT_EQ(j["layers"].size(), 3u);
  const std::string per_query = test::read_text(pq);
  EXPECT_EQ(std::count(per_query.begin(), per_query.end(), '\n'), 1 + 3 * 24);
  EXPECT_EQ(per_query.rfind("sample,layer,query,q_pos,iou,recall,coverage_ratio,first_miss_rank", 0), 0u);
  const std::string layers = test::read_text(csv);
  EXPECT_EQ(std::count(layers.begin(), layers.end(), '\n'), 1 + 3);

  auto fail = test::run_process({HISA_BINARY, "audit", path, "--device", "cpu", "--block-size", "32", "--blocks", "4",
                                 "--min-iou", "1"},  // the largest value --min-iou takes
                                dir.path().string());
  EXPECT_EQ(fail.status, 1) << fail.output;
  EXPECT_NE(fail.output.find("below --min-iou"), std::string::npos);
  auto pass = test::run_process({HISA_BINARY, "audit", path, "--device", "cpu", "--min-iou", "0", "--timings"},
                                dir.path().string());
  EXPECT_EQ(pass.status, 0) << pass.output;
  // --timings: the whole report, its last line included (it was once cut by a short buffer).
  EXPECT_NE(pass.output.find("audit timings (engine cpu"), std::string::npos) << pass.output;
  EXPECT_TRUE(std::regex_search(pass.output, std::regex("compute [0-9.]+ s\n"))) << pass.output;
  EXPECT_TRUE(std::regex_search(pass.output, std::regex("engine calls [0-9.]+ s \\(pooling [0-9.]+,.*per-query metrics [0-9.]+ s\n")))
      << pass.output;
  auto bad = test::run_process({HISA_BINARY, "audit", path, "--blocks", "0"}, dir.path().string());
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.output.find("--blocks"), std::string::npos);
  auto bad_layers = test::run_process({HISA_BINARY, "audit", path, "--layers", "3-1"}, dir.path().string());
  EXPECT_EQ(bad_layers.status, 2);
  auto select = test::run_process({HISA_BINARY, "select", path, "--method", "block", "-o", dir.file("s.h5")},
                                  dir.path().string());
  EXPECT_EQ(select.status, 0) << select.output;
}

}  // namespace
}  // namespace hisa
