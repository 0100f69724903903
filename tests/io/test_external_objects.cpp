// DumpReader and what reaches outside the file (io/dump_reader.hpp ReaderOptions): external links as a sample, a
// layer or a dataset, external raw storage and virtual datasets are refused by default with a message naming the
// object and what it points to; followed with allow_external (where a dangling link or a missing source is still
// an error); listed without being followed or read with list_external.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/error.hpp"
#include "io/bad_dumps.hpp"
#include "io/dump_reader.hpp"
#include "io/external_dumps.hpp"
#include "test_util.hpp"

namespace hisa {
namespace {

using test::TempDir;

const ReaderOptions kAllow{.allow_external = true};
const ReaderOptions kList{.list_external = true};

// The message of the InputError that opening (and reading everything of) `path` throws; "" when none.
std::string error_of(const std::string& path, const ReaderOptions& options = {}) {
  try {
    DumpReader r(path, options);
    for (const auto& s : r.samples()) {
      for (int layer : s.layers) {
        LayerReader lr = r.open_layer(s.name, layer);
        lr.read_keys();
        lr.read_queries(0, lr.shape().queries);
      }
    }
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

std::vector<float> keys_of(const std::string& path, const std::string& sample, const ReaderOptions& options = {}) {
  DumpReader r(path, options);
  return r.open_layer(sample, 0).read_keys().k;
}

using Files = test::LinkedDumps;

TEST(ExternalObjects, AGoodFileHasNone) {
  Files f;
  DumpReader r(f.main);
  EXPECT_TRUE(r.external_objects().empty());
  EXPECT_EQ("", error_of(f.main));
}

TEST(ExternalObjects, ExternalLinkAsSampleIsRefusedNamingItsTarget) {
  Files f;
  test::make_external_link(f.main, "/s1", f.other, "/s0");
  const std::string message = error_of(f.main);
  EXPECT_NE(message.find(f.main + ": /s1: external link to " + f.other + ":/s0"), std::string::npos) << message;
  EXPECT_NE(message.find("--allow-external"), std::string::npos) << message;
}

TEST(ExternalObjects, ExternalLinkAsSampleIsFollowedWhenAllowed) {
  Files f;
  test::make_external_link(f.main, "/s1", f.other, "/s0");
  DumpReader r(f.main, kAllow);
  ASSERT_EQ(2u, r.samples().size());
  EXPECT_EQ("s1", r.samples()[1].name);
  ASSERT_EQ(1u, r.external_objects().size());
  EXPECT_EQ("/s1", r.external_objects()[0].path);
  EXPECT_EQ("external link to " + f.other + ":/s0", r.external_objects()[0].target);
  EXPECT_EQ(keys_of(f.main, "s0", kAllow), keys_of(f.main, "s1", kAllow));
}

TEST(ExternalObjects, ListingNamesALinkWithoutFollowingIt) {
  Files f;
  test::make_external_link(f.main, "/s1", f.other, "/s0");
  DumpReader r(f.main, kList);
  ASSERT_EQ(1u, r.samples().size());  // s1 is not followed
  EXPECT_EQ("s0", r.samples()[0].name);
  ASSERT_EQ(1u, r.external_objects().size());
  EXPECT_EQ("/s1", r.external_objects()[0].path);
}

TEST(ExternalObjects, ExternalLinkAsLayerIsRefusedAndFollowedWhenAllowed) {
  Files f;
  const std::vector<float> keys = keys_of(f.main, "s0");
  test::make_external_link(f.main, "/s0/layer_0", f.other, "/s0/layer_0");
  const std::string message = error_of(f.main);
  EXPECT_NE(message.find(": /s0/layer_0: external link to " + f.other + ":/s0/layer_0"), std::string::npos) << message;
  EXPECT_EQ(keys, keys_of(f.main, "s0", kAllow));
}

TEST(ExternalObjects, DanglingExternalLinkAsLayerIsAnErrorEvenWhenAllowed) {
  Files f;
  const std::string missing = f.dir.file("missing.h5");
  test::make_external_link(f.main, "/s0/layer_1", missing, "/s0/layer_0");
  // It used to be dropped with the warning "not a layer_<N> group; ignored".
  std::string message = error_of(f.main);
  EXPECT_NE(message.find(": /s0/layer_1: external link to " + missing + ":/s0/layer_0"), std::string::npos) << message;
  message = error_of(f.main, kAllow);
  EXPECT_NE(message.find(": /s0/layer_1: external link to " + missing + ":/s0/layer_0 cannot be followed"),
            std::string::npos)
      << message;
}

TEST(ExternalObjects, ExternalLinkAsDatasetIsRefusedFollowedOrListed) {
  Files f;
  const std::vector<float> keys = keys_of(f.main, "s0");
  test::make_external_link(f.main, "/s0/layer_0/k", f.other, "/s0/layer_0/k");
  const std::string message = error_of(f.main);
  EXPECT_NE(message.find(": /s0/layer_0/k: external link to " + f.other + ":/s0/layer_0/k"), std::string::npos)
      << message;
  EXPECT_EQ(keys, keys_of(f.main, "s0", kAllow));
  DumpReader listed(f.main, kList);
  EXPECT_TRUE(listed.samples()[0].layers.empty());  // its k is not followed, so the layer cannot be opened
  ASSERT_EQ(1u, listed.external_objects().size());
  EXPECT_EQ("/s0/layer_0/k", listed.external_objects()[0].path);
}

TEST(ExternalObjects, ExternalRawStorageIsRefusedNamingTheRawFile) {
  Files f;
  const std::vector<float> keys = keys_of(f.main, "s0");
  const std::string raw = f.dir.file("keys.bin");
  test::move_to_external_raw_file(f.main, "/s0/layer_0/k", raw);
  const std::string message = error_of(f.main);
  EXPECT_NE(message.find(": /s0/layer_0/k: external raw storage in " + raw), std::string::npos) << message;
  EXPECT_EQ(keys, keys_of(f.main, "s0", kAllow));
}

TEST(ExternalObjects, ExternalRawStorageIsShownButNotReadWhenListed) {
  Files f;
  const std::string raw = f.dir.file("keys.bin");
  test::move_to_external_raw_file(f.main, "/s0/layer_0/k", raw);
  DumpReader r(f.main, kList);
  LayerReader lr = r.open_layer("s0", 0);
  bool described = false;
  for (const auto& d : lr.describe()) {
    if (d.name == "k") described = d.external == "external raw storage in " + raw;
  }
  EXPECT_TRUE(described);
  try {
    lr.read_keys();
    FAIL() << "read_keys read values stored outside the file";
  } catch (const InputError& e) {
    EXPECT_EQ("/s0/layer_0/k", e.path());
    EXPECT_NE(std::string(e.what()).find(": /s0/layer_0/k: external raw storage in " + raw + ": not read"),
              std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("--allow-external"), std::string::npos) << e.what();
  }
  EXPECT_THROW(lr.read_queries(0, 1), InputError);
}

TEST(ExternalObjects, AShortOrMissingRawFileIsAnErrorWhenAllowed) {
  Files f;
  const std::string raw = f.dir.file("keys.bin");
  test::move_to_external_raw_file(f.main, "/s0/layer_0/k", raw);
  // HDF5 reads what a short raw file lacks as zeros: they would be audited as keys.
  std::filesystem::resize_file(raw, std::filesystem::file_size(raw) / 2);
  std::string message = error_of(f.main, kAllow);
  EXPECT_NE(message.find(": /s0/layer_0/k: external raw file " + raw + " holds 640 bytes"), std::string::npos)
      << message;
  std::filesystem::remove(raw);
  message = error_of(f.main, kAllow);
  EXPECT_NE(message.find(": /s0/layer_0/k: external raw file " + raw + " is missing"), std::string::npos) << message;
}

TEST(ExternalObjects, VirtualDatasetIsRefusedNamingItsSources) {
  Files f;
  const std::vector<float> keys = keys_of(f.main, "s0");
  test::make_virtual(f.main, "/s0/layer_0/k", "other.h5", "/s0/layer_0/k");  // beside main.h5
  const std::string message = error_of(f.main);
  EXPECT_NE(message.find(": /s0/layer_0/k: virtual (sources: other.h5)"), std::string::npos) << message;
  EXPECT_EQ(keys, keys_of(f.main, "s0", kAllow));
}

TEST(ExternalObjects, VirtualDatasetWithAMissingSourceIsAnErrorWhenAllowed) {
  Files f;
  test::make_virtual(f.main, "/s0/layer_0/k", "other.h5", "/s0/layer_0/k");
  // HDF5 reads a missing source as fill values (zeros), and inspect --check used to call them validated.
  std::filesystem::remove(f.other);
  std::string message = error_of(f.main, kAllow);
  EXPECT_NE(message.find(": /s0/layer_0/k: virtual dataset's source file other.h5 is missing"), std::string::npos)
      << message;
}

TEST(ExternalObjects, VirtualDatasetWithAMissingSourceDatasetIsAnErrorWhenAllowed) {
  Files f;
  test::make_virtual(f.main, "/s0/layer_0/k", ".", "/s0/no_such_dataset");  // "." is the file itself
  std::string message = error_of(f.main);
  EXPECT_NE(message.find(": /s0/layer_0/k: virtual (sources: .)"), std::string::npos) << message;
  message = error_of(f.main, kAllow);
  EXPECT_NE(message.find(": /s0/layer_0/k: virtual dataset's source .:/s0/no_such_dataset does not exist"),
            std::string::npos)
      << message;
}

TEST(ExternalObjects, SoftLinksInsideTheFileAreFine) {
  Files f;
  test::make_soft_link(f.main, "/s1", "/s0");
  DumpReader r(f.main);
  EXPECT_EQ(2u, r.samples().size());
  EXPECT_TRUE(r.external_objects().empty());
  EXPECT_EQ(keys_of(f.main, "s0"), keys_of(f.main, "s1"));
}

TEST(ExternalObjects, ASoftLinkThatLeadsOnOutOfTheFileIsRefused) {
  Files f;
  // "notes" is no layer name, so the reader never looks at it; layer_1 reaches the other file through it.
  test::make_external_link(f.main, "/s0/notes", f.other, "/s0/layer_0");
  test::make_soft_link(f.main, "/s0/layer_1", "/s0/notes");
  const std::string message = error_of(f.main);
  EXPECT_NE(message.find(": /s0/layer_1: a link that leads out of the file, to " + f.other), std::string::npos)
      << message;
}

}  // namespace
}  // namespace hisa
