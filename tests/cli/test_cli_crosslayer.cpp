// `hisa crosslayer` refusals through the CLI: bad plans and targets, exit 2 naming the flag, before any work.
#include <gtest/gtest.h>

#include "cli/run_hisa.hpp"
#include "synth_dump.hpp"

namespace hisa {
namespace {

TEST(CliCrosslayer, BadPlansAreRefused) {
  test::TempDir dir;
  test::SynthShape shape;
  shape.seq_len = 512;
  shape.layers = 3;
  shape.topk = 16;
  shape.queries = "sample:4";
  const std::string dump = test::write_synth(dir.file("d.h5"), shape);
  struct Case {
    std::vector<std::string> flags;
    const char* message;
  };
  for (const Case& c : {Case{{"--reuse-map", "2:5"}, "--reuse-map: 2:5: both layers must be audited"},
                        Case{{"--reuse-map", "1:2"}, "a layer can only reuse an earlier layer's selection"},
                        Case{{"--reuse-map", "1:0,2:1"}, "reuses another layer itself"},
                        Case{{"--reuse-map", "1-0"}, "is not LAYER:SOURCE"},
                        Case{{"--reuse-every", "0"}, "--reuse-every"},
                        Case{{"--recall-target", "1.5"}, "--recall-target"},
                        Case{{"--layers", "0,2", "--reuse-map", "1:0"}, "both layers must be audited"}}) {
    auto args = test::with({"crosslayer", dump, "--device", "cpu", "--json", dir.file("out.json")}, c.flags);
    const auto r = test::run_hisa(args, dir);
    EXPECT_TRUE(r.exited && r.status == 2) << c.message << "\n" << r.output;
    EXPECT_NE(r.output.find(c.message), std::string::npos) << r.output;
    EXPECT_FALSE(std::filesystem::exists(dir.file("out.json"))) << c.message;
  }
  const auto ok = test::run_hisa({"crosslayer", dump, "--device", "cpu", "--reuse-map", "2:0", "--reuse-every", "2"}, dir);
  EXPECT_TRUE(ok.exited && ok.status == 0) << ok.output;
  EXPECT_NE(ok.output.find("map 2:0"), std::string::npos) << ok.output;
}

}  // namespace
}  // namespace hisa
