// Compressed keys (DeepSeek-V4; datasets/FORMAT.md, "Compressed keys"): row j of k summarises tokens [j·c, (j+1)·c)
// and the query at token t may select row j iff k_start <= j and (j+1)·c − 1 <= t. The library's runs (select,
// audit, explain) against that rule applied directly, query by query, with the reference selection.
#include <gtest/gtest.h>

#include <map>
#include <sstream>

#include "core/error.hpp"
#include "io/dump_helpers.hpp"
#include "io/edge_dumps.hpp"
#include "io/query_subset.hpp"
#include "pipelines/audit.hpp"
#include "pipelines/explain.hpp"
#include "pipelines/select.hpp"
#include "pipelines/sweep.hpp"
#include "render/audit_output.hpp"
#include "render/explain_output.hpp"
#include "select/reference.hpp"
#include "test_util.hpp"

namespace hisa {
namespace {

using test::TempDir;

constexpr int64_t kRatio = 4, kRows = 200, kHeads = 4, kDim = 64;

// Token positions: the three that see no row yet, the first that sees row 0, then spread up to the last token
// whose rows k holds ((L+1)·c − 2).
std::vector<int64_t> token_positions() {
  std::vector<int64_t> t = {0, 1, 2, 3, 4, 6, 7, 8};
  for (int64_t p = 50; p < kRows * kRatio; p += 97) t.push_back(p);
  t.push_back(kRows * kRatio - 1);
  t.push_back((kRows + 1) * kRatio - 2);
  return t;
}

// The last row the query at token t may see, by the definition itself (-1: none).
int64_t last_row_by_definition(int64_t t) {
  int64_t last = -1;
  for (int64_t j = 0; j < kRows; ++j) {
    if ((j + 1) * kRatio - 1 <= t) last = j;
  }
  return last;
}

SampleAttributes sample_of(int64_t tokens) {
  SampleAttributes s;
  s.seq_len = tokens;
  return s;
}

LayerArrays compressed_layer(ElementType type, uint64_t seed) {
  const std::vector<int64_t> tokens = token_positions();
  LayerArrays a = test::make_layer(kRows, int64_t(tokens.size()), kHeads, kDim, type, type, seed, true, 0);
  a.compress_ratio = kRatio;
  a.window = 128;
  a.q_pos = tokens;
  // k_start counts rows: some queries start late (packed sequences), the ones that see nothing start at 0 or 1.
  for (size_t i = 0; i < tokens.size(); ++i) a.k_start[i] = i % 3 == 0 ? std::max<int64_t>(0, last_row_by_definition(tokens[i]) / 3) : 0;
  // A packed sequence that starts at row 1 (token 4): its query at token 6 has completed no row of it yet.
  a.k_start[5] = 1;
  return a;
}

std::string write_compressed(const TempDir& dir, ElementType type, uint64_t seed = 7) {
  const std::string path = dir.file(std::string("v4-") + std::string(element_type_name(type)) + ".h5");
  DumpWriter w(path, test::small_file_attributes(kHeads, kDim, 24));
  w.add_sample("s0", sample_of(kRows * kRatio));
  w.add_layer("s0", 0, compressed_layer(type, seed));
  w.close();
  return path;
}

SelectionConfig small_config() {
  SelectionConfig c;
  c.topk = 24;
  c.block_size = 8;
  c.blocks = 4;
  return c;
}

AuditOptions audit_options(const std::string& path) {
  AuditOptions o;
  o.files = {path};
  o.config = small_config();
  o.topk = 24;
  o.run.device = "cpu";
  o.progress = false;
  return o;
}

// The reference selection of one stored query, its visible rows found by the definition.
std::vector<int64_t> by_definition(const LayerKeys& keys, const QueryBatch& stored, int64_t i, Method m,
                                   const SelectionConfig& c) {
  const int64_t last = last_row_by_definition(stored.token_position(i));
  if (last < stored.k_start[size_t(i)]) return {};
  QueryBatch one = batch_rows(stored, std::vector<int64_t>{i});
  one.q_pos = {last};
  switch (m) {
    case Method::Flat:
      return reference::flat(one, 0, keys, c);
    case Method::Hisa:
      return reference::hisa(one, 0, keys, c);
    case Method::Block:
      return reference::block_sparse(one, 0, keys, c);
  }
  return {};
}

TEST(CompressedKeys, ReaderKeepsTokensAndGivesEnginesTheLastVisibleRow) {
  TempDir dir;
  const std::string path = write_compressed(dir, ElementType::BF16);
  DumpReader reader(path);
  LayerReader lr = reader.open_layer("s0", 0);
  EXPECT_EQ(lr.shape().compress_ratio, kRatio);
  EXPECT_EQ(lr.shape().window, std::optional<int64_t>(128));
  EXPECT_EQ(lr.read_keys().compress_ratio, kRatio);
  const QueryBatch b = lr.read_queries(0, lr.shape().queries);
  EXPECT_EQ(b.compress_ratio, kRatio);
  EXPECT_EQ(b.token_pos, token_positions());
  for (int64_t i = 0; i < b.count; ++i) {
    EXPECT_EQ(b.q_pos[size_t(i)], last_row_by_definition(b.token_pos[size_t(i)])) << "query " << i;
    EXPECT_EQ(b.sees_rows(i), b.q_pos[size_t(i)] >= b.k_start[size_t(i)]);
  }
  // Tokens 0..2 see no row; token 3 is the first to see row 0.
  EXPECT_FALSE(b.sees_rows(0));
  EXPECT_FALSE(b.sees_rows(1));
  EXPECT_FALSE(b.sees_rows(2));
  EXPECT_TRUE(b.sees_rows(3));
  EXPECT_EQ(b.q_pos[3], 0);
  EXPECT_FALSE(b.sees_rows(5));  // token 6 with k_start 1
  EXPECT_EQ(b.q_pos[5], 0);
  EXPECT_EQ(b.q_pos.back(), kRows - 1);
}

TEST(CompressedKeys, UncompressedLayersReadAsBefore) {
  TempDir dir;
  const std::string path = dir.file("plain.h5");
  DumpWriter w(path, test::small_file_attributes(kHeads, kDim, 24));
  w.add_sample("s0", sample_of(64));
  w.add_layer("s0", 0, test::make_layer(64, 5, kHeads, kDim, ElementType::F32, ElementType::F32, 3, true, 0));
  w.close();
  LayerReader lr = DumpReader(path).open_layer("s0", 0);
  EXPECT_EQ(lr.shape().compress_ratio, 1);
  EXPECT_FALSE(lr.shape().window);
  const QueryBatch b = lr.read_queries(0, 5);
  EXPECT_TRUE(b.token_pos.empty());
  for (int64_t i = 0; i < b.count; ++i) EXPECT_EQ(b.token_position(i), b.q_pos[size_t(i)]);
}

TEST(CompressedKeys, SelectEqualsTheRuleAppliedDirectlyForEveryMethodAndEncoding) {
  TempDir dir;
  for (ElementType type : {ElementType::F32, ElementType::BF16, ElementType::FP8_E4M3, ElementType::FP4_E2M1}) {
    const std::string path = write_compressed(dir, type);
    DumpReader reader(path);
    LayerReader lr = reader.open_layer("s0", 0);
    const LayerKeys keys = lr.read_keys();
    const QueryBatch stored = lr.read_queries(0, lr.shape().queries);
    for (Method m : {Method::Flat, Method::Hisa, Method::Block}) {
      SelectOptions o;
      o.input.files = {path};
      o.input.config = small_config();
      o.input.topk = 24;
      o.input.run.device = "cpu";
      o.input.progress = false;
      o.method = m;
      o.output = dir.file("sel.h5");
      EXPECT_EQ(run_select(o), stored.count);
      const auto got = test::read_selections(o.output, "/s0/layer_0");
      ASSERT_EQ(int64_t(got.size()), stored.count);
      int64_t empty = 0;
      for (int64_t i = 0; i < stored.count; ++i) {
        EXPECT_EQ(got[size_t(i)], by_definition(keys, stored, i, m, small_config()))
            << element_type_name(type) << " " << method_name(m) << " query " << i;
        empty += got[size_t(i)].empty();
      }
      EXPECT_EQ(empty, 4) << "the queries at tokens 0, 1, 2 and 6 (k_start 1) select nothing";
      // The selection file keeps the token positions and says what its indices count.
      h5::Handle f = h5::file(H5Fopen(o.output.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
      h5::Handle g = h5::group(H5Gopen2(f.get(), "/s0/layer_0", H5P_DEFAULT));
      EXPECT_EQ(h5::read_int_attribute(g.get(), "compress_ratio"), std::optional<int64_t>(kRatio));
      h5::Handle d = h5::dataset(H5Dopen2(g.get(), "q_pos", H5P_DEFAULT));
      std::vector<int64_t> q_pos(size_t(stored.count));
      h5::read_rows(d.get(), H5T_NATIVE_INT64, 0, stored.count, q_pos.data());
      EXPECT_EQ(q_pos, token_positions());
    }
  }
}

TEST(CompressedKeys, AuditLeavesOutQueriesThatSeeNoRowAndReportsTokens) {
  TempDir dir;
  const std::string path = write_compressed(dir, ElementType::BF16);
  const AuditOptions o = audit_options(path);
  std::vector<int64_t> tokens, rows;
  const AuditResult r = run_audit(o, [&](const QueryRecord& q) {
    tokens.push_back(q.metrics->q_pos);
    rows.push_back(q.audit->q_pos);
    EXPECT_EQ(q.audit->token_pos, q.metrics->q_pos);
  });
  const std::vector<int64_t> all = token_positions();
  ASSERT_EQ(r.layers.size(), 1u);
  std::vector<int64_t> seeing(all.begin() + 3, all.end());
  seeing.erase(seeing.begin() + 2);  // token 6, in a sequence whose first row is not complete
  EXPECT_EQ(r.layers[0].queries, int64_t(seeing.size()));
  EXPECT_EQ(tokens, seeing);
  for (size_t i = 0; i < rows.size(); ++i) EXPECT_EQ(rows[i], last_row_by_definition(tokens[i]));
  EXPECT_EQ(r.layers[0].compress_ratio, kRatio);
  EXPECT_EQ(r.layers[0].window, std::optional<int64_t>(128));
  const nlohmann::json j = audit_json(r);
  EXPECT_EQ(j["layers"][0]["compress_ratio"], kRatio);
  EXPECT_EQ(j["layers"][0]["window"], 128);
  std::ostringstream table;
  write_audit_table(table, r);
  EXPECT_NE(table.str().find("layer 0: compressed keys, one row per 4 tokens"), std::string::npos) << table.str();
  EXPECT_NE(table.str().find("a window of 128 tokens is attended besides"), std::string::npos) << table.str();
}

// The sweep over a compressed dump: the same queries as the audit (those that see a row), token positions, and at
// the audit's (B, m) the audit's recall and IoU, query by query.
TEST(CompressedKeys, SweepAgreesWithTheAudit) {
  TempDir dir;
  const std::string path = write_compressed(dir, ElementType::BF16);
  SweepOptions so;
  so.files = {path};
  so.block_sizes = {8};
  so.blocks = {1, 4, 16};
  so.topk = 24;
  so.run.device = "cpu";
  so.progress = false;
  std::map<int64_t, std::pair<int64_t, SweepPoint>> swept;  // query -> (q_pos, point at m = 4)
  run_sweep(so, [&](const SweepQueryRecord& q) { swept[q.query] = {q.q_pos, q.points[1]}; });
  std::map<int64_t, std::pair<int64_t, QueryMetrics>> audited;
  run_audit(audit_options(path), [&](const QueryRecord& q) { audited[q.metrics->query] = {q.metrics->q_pos, *q.metrics}; });
  ASSERT_EQ(swept.size(), audited.size());
  EXPECT_EQ(swept.size(), token_positions().size() - 4);
  for (const auto& [query, rec] : swept) {
    SCOPED_TRACE("query " + std::to_string(query));
    ASSERT_TRUE(audited.contains(query));
    EXPECT_EQ(rec.first, audited[query].first);  // token positions in both
    EXPECT_EQ(rec.second.recall, audited[query].second.hisa.recall);
    EXPECT_EQ(rec.second.iou, audited[query].second.hisa.iou);
  }
}

// A layer's samples must describe their keys alike: a layer compressed in one sample and not in another is refused.
TEST(CompressedKeys, SamplesThatDisagreeOnALayersCompressionAreRefused) {
  TempDir dir;
  const std::string path = dir.file("mixed.h5");
  {
    DumpWriter w(path, test::small_file_attributes(kHeads, kDim, 24));
    w.add_sample("s0", sample_of(kRows * kRatio));
    w.add_layer("s0", 0, compressed_layer(ElementType::BF16, 1));
    w.add_sample("s1", sample_of(kRows));
    w.add_layer("s1", 0, test::make_layer(kRows, 4, kHeads, kDim, ElementType::BF16, ElementType::BF16, 2, true, 0));
    w.close();
  }
  const AuditOptions o = audit_options(path);
  try {
    run_audit(o);
    ADD_FAILURE() << "a layer with two compressions was audited";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("/s1/layer_0: compress_ratio 1 differs from"), std::string::npos)
        << e.what();
  }
}

TEST(CompressedKeys, ExplainShowsTokensAndRefusesAQueryThatSeesNoRow) {
  TempDir dir;
  const std::string path = write_compressed(dir, ElementType::BF16);
  ExplainOptions e;
  e.file = path;
  e.sample = "s0";
  e.layer = 0;
  e.config = small_config();
  e.topk = 24;
  e.query = 1;
  try {
    explain_query(e);
    ADD_FAILURE() << "a query that sees no row was explained";
  } catch (const InputError& err) {
    EXPECT_NE(std::string(err.what()).find("/s0/layer_0/q_pos"), std::string::npos) << err.what();
    EXPECT_NE(std::string(err.what()).find("sees no key row"), std::string::npos) << err.what();
  }
  e.query = int64_t(token_positions().size()) - 1;  // the last token: rows 0 .. L-1
  const Explanation x = explain_query(e);
  EXPECT_EQ(x.compress_ratio, kRatio);
  EXPECT_EQ(x.audit.token_pos, (kRows + 1) * kRatio - 2);
  EXPECT_EQ(x.audit.q_pos, kRows - 1);
  std::ostringstream text;
  write_explanation(text, x, 5, 60);
  EXPECT_NE(text.str().find("compressed keys: one row per 4 tokens"), std::string::npos) << text.str();
  EXPECT_NE(text.str().find("q_pos " + std::to_string((kRows + 1) * kRatio - 2)), std::string::npos) << text.str();
  // The picture's axis runs over tokens: from row k_start's first token to row L-1's last.
  EXPECT_NE(text.str().find("token    " + std::to_string(x.audit.k_start * kRatio)), std::string::npos) << text.str();
  EXPECT_NE(text.str().find(std::to_string(kRows * kRatio - 1) + "\n"), std::string::npos) << text.str();
  const nlohmann::json j = explanation_json(x);
  EXPECT_EQ(j["q_pos"], (kRows + 1) * kRatio - 2);
  EXPECT_EQ(j["last_row"], kRows - 1);
  EXPECT_EQ(j["compress_ratio"], kRatio);
}

// Writes one compressed layer changed by `change`, and returns the loader's message for reading it all.
template <typename Change>
std::string refusal(const TempDir& dir, Change change) {
  const std::string path = dir.file("bad.h5");
  LayerArrays a = compressed_layer(ElementType::BF16, 3);
  change(a);
  {
    DumpWriter w(path, test::small_file_attributes(kHeads, kDim, 24));
    w.add_sample("s0", sample_of(kRows * kRatio));
    w.add_layer("s0", 0, a);
    w.close();
  }
  try {
    test::read_everything(path);
  } catch (const InputError& e) {
    return e.what();
  }
  return "(read without complaint)";
}

TEST(CompressedKeys, BadAttributesAndPositionsAreRefusedWithTheirPlace) {
  TempDir dir;
  std::string m = refusal(dir, [](LayerArrays& a) { a.compress_ratio = 0; });
  EXPECT_NE(m.find("/s0/layer_0"), std::string::npos) << m;
  EXPECT_NE(m.find("'compress_ratio' is 0"), std::string::npos) << m;
  m = refusal(dir, [](LayerArrays& a) { a.compress_ratio = int64_t(1) << 40; });
  EXPECT_NE(m.find("'compress_ratio' is 1099511627776, expected 1 to"), std::string::npos) << m;
  m = refusal(dir, [](LayerArrays& a) { a.window = -1; });
  EXPECT_NE(m.find("'window' is -1"), std::string::npos) << m;
  // One token past the last whose rows k holds.
  m = refusal(dir, [](LayerArrays& a) { a.q_pos.back() = (kRows + 1) * kRatio - 1; });
  EXPECT_NE(m.find("/s0/layer_0/q_pos"), std::string::npos) << m;
  EXPECT_NE(m.find("is outside [0, " + std::to_string((kRows + 1) * kRatio - 2) + "]"), std::string::npos) << m;
  // k_start counts rows: at most the rows the query's token has completed.
  m = refusal(dir, [](LayerArrays& a) { a.k_start[4] = 2; });  // token 4 has completed one row
  EXPECT_NE(m.find("/s0/layer_0/k_start"), std::string::npos) << m;
  EXPECT_NE(m.find("row 4: k_start 2 must lie in [0, 1]"), std::string::npos) << m;
  m = refusal(dir, [](LayerArrays& a) { a.k_start[1] = 1; });  // token 1 has completed none
  EXPECT_NE(m.find("row 1: k_start 1 must lie in [0, 0]"), std::string::npos) << m;
  m = refusal(dir, [](LayerArrays& a) { a.q_pos[0] = -1; });
  EXPECT_NE(m.find("row 0: position -1 is outside"), std::string::npos) << m;
}

}  // namespace
}  // namespace hisa
