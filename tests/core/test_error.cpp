// OptionError (core/error.hpp): the library names options by its own names; a front end spells them its own way.
#include <gtest/gtest.h>

#include "core/error.hpp"

namespace hisa {
namespace {

TEST(OptionError, SpellsOptionsByTheLibrarysNamesOrAFrontEnds) {
  const OptionError e("gpus", "{gpus} needs {device} cuda or auto");
  EXPECT_EQ(e.option(), "gpus");
  EXPECT_STREQ(e.what(), "gpus needs device cuda or auto");
  EXPECT_EQ(e.message([](const std::string& name) { return "--" + name; }), "--gpus needs --device cuda or auto");
  // Still a UsageError: whoever catches those sees it.
  EXPECT_THROW(throw OptionError("topk", "{topk} must be at least 1"), UsageError);
}

TEST(OptionError, BracesThatAreNoOptionNameStayAsTheyAre) {
  // A user's value may hold braces; only {lower_case_name} is an option.
  const OptionError e("layers", "{layers}: cannot read \"{3}-{x y}-{A}\" {");
  EXPECT_STREQ(e.what(), "layers: cannot read \"{3}-{x y}-{A}\" {");
  EXPECT_EQ(e.message([](const std::string& n) { return "<" + n + ">"; }), "<layers>: cannot read \"{3}-{x y}-{A}\" {");
  EXPECT_STREQ(OptionError("x", "no names here").what(), "no names here");
  EXPECT_STREQ(OptionError("x", "").what(), "");
  EXPECT_STREQ(OptionError("block_size", "{block_size}{block_size}").what(), "block_sizeblock_size");
}

}  // namespace
}  // namespace hisa
