// What the pipelines share (pipelines/common.hpp): one sample-label rule, and per-layer files written once a
// layer's units are all in.
#include <gtest/gtest.h>

#include <filesystem>

#include "pipelines/common.hpp"
#include "test_util.hpp"

namespace hisa {
namespace {

TEST(SampleLabel, FileAndSampleOnlyWhenSeveralFilesTakePart) {
  EXPECT_EQ(sample_label("a.h5", "s0", 1), "s0");
  EXPECT_EQ(sample_label("a.h5", "s0", 2), "a.h5:s0");
  EXPECT_EQ(sample_label("dir/b.h5", "niah", 3), "dir/b.h5:niah");
}

TEST(LayerFiles, WritesALayerOnceAllItsUnitsAreIn) {
  test::TempDir dir;
  // Two samples of layer 0, one of layer 1, in unit order.
  const std::vector<WorkUnit> units{{0, 0}, {1, 0}, {0, 1}};
  std::vector<int> written;
  LayerFiles files(dir.path().string(), ".txt", units,
                   [&](int layer, const std::vector<const std::string*>& results, std::ostream& out) {
                     written.push_back(layer);
                     for (const std::string* r : results) out << (r ? *r : std::string("-")) << ";";
                   });
  files.add(1, "b");  // layer 0 still lacks unit 0
  EXPECT_TRUE(written.empty());
  EXPECT_FALSE(std::filesystem::exists(dir.file("layer_0.txt")));
  files.add(2, "c");  // layer 1 is whole
  files.add(0, "a");
  EXPECT_EQ(written, (std::vector<int>{1, 0}));
  EXPECT_EQ(test::read_text(dir.file("layer_0.txt")), "a;b;-;");
  EXPECT_EQ(test::read_text(dir.file("layer_1.txt")), "-;-;c;");
}

TEST(LayerFiles, WithoutADirectoryNothingIsWritten) {
  const std::vector<WorkUnit> units{{0, 0}};
  bool called = false;
  LayerFiles files("", ".json", units, [&](int, const std::vector<const std::string*>&, std::ostream&) { called = true; });
  files.add(0, "a");
  EXPECT_FALSE(called);
}

}  // namespace
}  // namespace hisa
