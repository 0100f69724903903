// terminal_safe (core/text_escape.hpp): control characters from files become visible escapes; ordinary text,
// UTF-8 included, is unchanged.
#include <gtest/gtest.h>

#include <string>

#include "core/text_escape.hpp"

namespace hisa {
namespace {

TEST(TerminalSafe, OrdinaryTextIsUnchanged) {
  for (const std::string s : {"", "sample_0", "DeepSeek-V3.2 (tiny) a\\b", "Ünïcödé 日本語 ✓", "=cmd|' /C calc'!A0"}) {
    EXPECT_EQ(s, terminal_safe(s));
  }
}

TEST(TerminalSafe, C0ControlsAndDelAreEscaped) {
  EXPECT_EQ("a\\nb\\rc\\td", terminal_safe("a\nb\rc\td"));
  EXPECT_EQ("\\x1b[31mred\\x1b[0m", terminal_safe("\x1b[31mred\x1b[0m"));
  EXPECT_EQ("\\x00\\x07\\x7f", terminal_safe(std::string("\0\a\x7f", 3)));
}

TEST(TerminalSafe, ANewlineCannotStartALine) {
  const std::string forged = terminal_safe("m\ncheck: every value read and validated");
  EXPECT_EQ(std::string::npos, forged.find('\n'));
  EXPECT_EQ("m\\ncheck: every value read and validated", forged);
}

TEST(TerminalSafe, C1ControlsAndBidiOverridesAreEscaped) {
  EXPECT_EQ("\\u009b31m", terminal_safe("\xc2\x9b" "31m"));       // U+009B, CSI in some terminals
  EXPECT_EQ("a\\u202eb\\u2066c", terminal_safe("a\xe2\x80\xae" "b\xe2\x81\xa6" "c"));
  EXPECT_EQ("\xc2\xa0", terminal_safe("\xc2\xa0"));              // U+00A0 is printable: kept
}

TEST(TerminalSafe, BytesThatAreNotUtf8AreEscaped) {
  EXPECT_EQ("\\x9b31m", terminal_safe("\x9b" "31m"));  // a lone C1 byte
  EXPECT_EQ("\\xc0\\xaf", terminal_safe("\xc0\xaf"));  // overlong '/'
  EXPECT_EQ("\\xed\\xa0\\x80", terminal_safe("\xed\xa0\x80"));  // a surrogate
  EXPECT_EQ("x\\xe2\\x80", terminal_safe("x\xe2\x80"));  // cut short
}

}  // namespace
}  // namespace hisa
