// LiveAudit (import hisa's Audit): layers handed over in memory give what `hisa audit` and `hisa report` make of
// the same layers read from a dump; a refused add changes nothing.
#include <gtest/gtest.h>
#include <hdf5.h>

#include <algorithm>
#include <memory>
#include <tuple>

#include "core/error.hpp"
#include "io/dump_reader.hpp"
#include "pipelines/common.hpp"
#include "pipelines/live_audit.hpp"
#include "pipelines/report.hpp"
#include "render/audit_output.hpp"
#include "synth/synth.hpp"
#include "test_util.hpp"

namespace hisa {
namespace {

// The small NIAH dumps of these tests: 4 heads of 64 dims, a needle of 16 tokens.
SynthOptions small_dump(const test::TempDir& dir, const std::string& name, int64_t seq_len, const std::string& queries) {
  SynthOptions s;
  s.output = dir.file(name);
  s.seq_len = seq_len;
  s.heads = 4;
  s.head_dim = 64;
  s.queries = parse_query_selection(queries);
  s.needle_len = 16;
  return s;
}

std::string two_sample_dump(const test::TempDir& dir) {
  SynthOptions s = small_dump(dir, "live.h5", 2048, "sample:24");
  s.layers = 2;
  s.samples = 2;
  s.index_topk = 64;
  write_synth_dump(s);
  return s.output;
}

ReportOptions report_options(const std::string& path) {
  ReportOptions o;
  o.audit.files = {path};
  o.audit.run.device = "cpu";
  o.audit.progress = false;
  o.audit.config.block_size = 32;
  o.audit.config.blocks = 4;
  o.audit.config.topk = 64;
  o.audit.worst = 4;
  o.pictures = 3;
  return o;
}

// Every (layer, sample) of the dump added in the CLI's order: layer by layer, samples in file order.
std::unique_ptr<LiveAudit> live_audit_of(const std::string& path, const ReportOptions& r) {
  LiveAuditOptions o;
  o.audit = r.audit;
  o.device = -1;
  o.pictures = r.pictures;
  o.query_rows = true;
  auto live = std::make_unique<LiveAudit>(o);
  DumpReader reader(path);
  for (int layer : reader.all_layers()) {
    for (const SampleEntry& s : reader.samples()) {
      LayerReader lr = reader.open_layer(s.name, layer);
      const LayerKeys keys = lr.read_keys();
      const QueryBatch batch = lr.read_queries(0, lr.shape().queries);
      live->add(s.name, layer, keys, batch,
                needle_rows({*s.attributes.needle_begin, *s.attributes.needle_end}, keys.compress_ratio));
    }
  }
  return live;
}

nlohmann::json without_files(nlohmann::json j) {
  j.erase("files");
  return j;
}

TEST(LiveAudit, LayersInMemoryGiveTheAuditOfTheDump) {
  test::TempDir dir;
  const std::string path = two_sample_dump(dir);
  const ReportOptions r = report_options(path);
  const AuditResult want = run_audit(r.audit);
  const auto live = live_audit_of(path, r);
  const AuditResult got = live->result();
  EXPECT_EQ(got.files, std::vector<std::string>{LiveAudit::kSource});
  EXPECT_EQ(without_files(audit_json(got)), without_files(audit_json(want)));
  ASSERT_EQ(got.layers.size(), 2u);
  EXPECT_EQ(got.layers[0].samples, (std::vector<std::string>{"sample_0", "sample_1"}));
  EXPECT_EQ(got.layers[1].queries, 48);
  // Per-query rows: the CLI's, with the source's name for the file's.
  const std::string& rows = live->query_rows();
  EXPECT_EQ(std::count(rows.begin(), rows.end(), '\n'), 96);
  EXPECT_NE(rows.find(LiveAudit::kSource), std::string::npos);
}

// Synth puts every query of a compressed layer at a token of its own row; the query at token 0 sees no row yet.
void move_first_query_to_token_0(const std::string& path) {
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  const hid_t d = H5Dopen2(f, "/sample_0/layer_0/q_pos", H5P_DEFAULT);
  ASSERT_GE(d, 0);
  const hid_t space = H5Dget_space(d);
  std::vector<int64_t> q_pos(size_t(H5Sget_simple_extent_npoints(space)));
  ASSERT_GE(H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, q_pos.data()), 0);
  q_pos[0] = 0;
  ASSERT_GE(H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, q_pos.data()), 0);
  H5Sclose(space);
  H5Dclose(d);
  ASSERT_GE(H5Fclose(f), 0);
}

// A compressed layer whose first query sees no key row, over more than one batch of queries: the CLI reads
// batches of kQueryBatch queries and then drops those that see nothing, and the live add must batch the same way
// for the layer's sums to come out bit for bit the same (they differed in the last digits when it did not).
TEST(LiveAudit, ACompressedLayerAuditsAsTheCliBatchesIt) {
  test::TempDir dir;
  SynthOptions s = small_dump(dir, "v4.h5", 2400, "all");
  s.layers = 1;
  s.index_topk = 32;
  s.compress_ratio = 4;
  write_synth_dump(s);
  move_first_query_to_token_0(s.output);
  ReportOptions r = report_options(s.output);
  r.audit.config.block_size = 16;
  r.audit.config.topk = 32;
  const AuditResult want = run_audit(r.audit);
  ASSERT_EQ(want.layers.size(), 1u);
  ASSERT_EQ(want.layers[0].queries, 599);  // the query at token 0 saw no row and was left out
  const AuditResult got = live_audit_of(s.output, r)->result();
  EXPECT_EQ(without_files(audit_json(got)), without_files(audit_json(want)));
}

TEST(LiveAudit, TheReportDrawsTheWorstQueriesAsTheCliDoes) {
  test::TempDir dir;
  const std::string path = two_sample_dump(dir);
  const ReportOptions r = report_options(path);
  const ReportData want = collect_report(r);
  const ReportData got = live_audit_of(path, r)->report("");
  ASSERT_EQ(got.layers.size(), want.layers.size());
  for (size_t i = 0; i < got.layers.size(); ++i) {
    EXPECT_EQ(got.layers[i].hisa_iou, want.layers[i].hisa_iou);
    EXPECT_EQ(got.layers[i].block_iou, want.layers[i].block_iou);
    ASSERT_EQ(got.layers[i].budget.size(), want.layers[i].budget.size());
    for (size_t m = 0; m < got.layers[i].budget.size(); ++m) {
      EXPECT_EQ(got.layers[i].budget[m].recall, want.layers[i].budget[m].recall);
    }
  }
  ASSERT_EQ(got.pictures.size(), want.pictures.size());
  ASSERT_GT(got.pictures.size(), 0u);
  for (size_t i = 0; i < got.pictures.size(); ++i) {
    const QueryPicture &g = got.pictures[i], &w = want.pictures[i];
    EXPECT_EQ(g.file, "");  // from memory: nothing for `hisa explain` to open
    EXPECT_EQ(w.file, path);
    EXPECT_EQ(std::tie(g.sample, g.layer, g.query, g.q_pos, g.last), std::tie(w.sample, w.layer, w.query, w.q_pos, w.last));
    EXPECT_EQ(g.column_max, w.column_max);
    EXPECT_EQ(g.kept, w.kept);
    EXPECT_EQ(g.missed, w.missed);
    EXPECT_EQ(g.hisa_only, w.hisa_only);
    EXPECT_EQ(g.miss_causes, w.miss_causes);
  }
}

TEST(LiveAudit, ARefusedAddChangesNothing) {
  test::TempDir dir;
  const std::string path = two_sample_dump(dir);
  LiveAuditOptions o;
  o.audit.config.block_size = 32;
  o.audit.config.blocks = 4;
  o.audit.config.topk = 64;
  LiveAudit live(o);
  DumpReader reader(path);
  LayerReader lr = reader.open_layer("sample_0", 0);
  const LayerKeys keys = lr.read_keys();
  const QueryBatch batch = lr.read_queries(0, lr.shape().queries);
  live.add("a", 0, keys, batch, std::nullopt);
  const std::string before = audit_json(live.result()).dump();
  EXPECT_THROW(live.add("a", 0, keys, batch, std::nullopt), OptionError);  // the same sample's layer again
  LayerKeys rows = keys;
  rows.compress_ratio = 4;
  EXPECT_THROW(live.add("b", 0, rows, batch, std::nullopt), OptionError);  // another compress_ratio
  EXPECT_EQ(audit_json(live.result()).dump(), before);
  // Another layer, and the same layer from another sample, are taken.
  live.add("a", 7, keys, batch, std::nullopt);
  live.add("b", 0, keys, batch, std::nullopt);
  const AuditResult r = live.result();
  ASSERT_EQ(r.layers.size(), 2u);
  EXPECT_EQ(r.layers[0].queries, 2 * batch.count);
  EXPECT_EQ(r.layers[1].layer, 7);
  // Layer 7 came from "a" only: "b" is listed as missing, as `hisa audit` lists a sample without the layer.
  EXPECT_TRUE(r.layers[0].missing_samples.empty());
  EXPECT_EQ(r.layers[1].missing_samples, std::vector<std::string>{"b"});
}

TEST(LiveAudit, AnEmptyAuditHasNoLayers) {
  LiveAuditOptions o;
  o.audit.config.topk = 16;
  const LiveAudit live(o);
  EXPECT_TRUE(live.result().layers.empty());
  EXPECT_TRUE(live.report("").pictures.empty());
  EXPECT_TRUE(live.query_rows().empty());
}

}  // namespace
}  // namespace hisa
