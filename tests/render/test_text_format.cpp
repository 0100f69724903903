// csv_field (render/text_format.hpp): text a spreadsheet would run as a formula gets a leading ', fields with
// separators are quoted (RFC 4180), anything else is unchanged.
#include <gtest/gtest.h>

#include "render/text_format.hpp"

namespace hisa {
namespace {

TEST(CsvField, PlainTextIsUnchanged) {
  EXPECT_EQ("sample_0", csv_field("sample_0"));
  EXPECT_EQ("/tmp/a.h5:s0", csv_field("/tmp/a.h5:s0"));
  EXPECT_EQ("", csv_field(""));
  EXPECT_EQ("a=b", csv_field("a=b"));  // only the first character starts a formula
}

TEST(CsvField, FormulaStartsGetALeadingQuote) {
  EXPECT_EQ("'=cmd|' /C calc'!A0", csv_field("=cmd|' /C calc'!A0"));
  EXPECT_EQ("'+1", csv_field("+1"));
  EXPECT_EQ("'-1", csv_field("-1"));  // text that looks like a number is still text from the file
  EXPECT_EQ("'@SUM(A1)", csv_field("@SUM(A1)"));
  EXPECT_EQ("'\tx", csv_field("\tx"));
  EXPECT_EQ("\"'\rx\"", csv_field("\rx"));  // and quoted: it holds a carriage return
}

TEST(CsvField, SeparatorsAreQuoted) {
  EXPECT_EQ("\"a,b\"", csv_field("a,b"));
  EXPECT_EQ("\"say \"\"hi\"\"\"", csv_field("say \"hi\""));
  EXPECT_EQ("\"a\nb\"", csv_field("a\nb"));
  EXPECT_EQ("\"'=SUM(1,2)\"", csv_field("=SUM(1,2)"));
}

}  // namespace
}  // namespace hisa
