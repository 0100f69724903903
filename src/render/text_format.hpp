#pragma once
// Number and CSV-field formatting shared by the text, CSV and JSON writers of audit and sweep.
#include <cstdio>
#include <string>
#include <string_view>

namespace hisa {

// printf-style formatting of one number ("%.6g" keeps CSV files exact enough and short).
inline std::string format_number(double v, const char* fmt = "%.6g") {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

// A CSV field of text (sample names, file names; never numbers, which are written as they are). Text from a dump
// is untrusted, and a spreadsheet runs a field that starts with =, +, -, @, a tab or a carriage return as a formula
// ("CSV injection"): such a field is written with a leading ' (OWASP's advice), which spreadsheets show as text.
// Then quoted (RFC 4180) when it holds a comma, a quote, a carriage return or a newline.
inline std::string csv_field(const std::string& text) {
  const bool formula = !text.empty() && std::string_view("=+-@\t\r").find(text.front()) != std::string_view::npos;
  const std::string s = formula ? "'" + text : text;
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char ch : s) out += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return out + "\"";
}

}  // namespace hisa
