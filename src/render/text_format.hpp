#pragma once
// Number and CSV-field formatting shared by the text, CSV and JSON writers of audit and sweep.
#include <cstdio>
#include <string>

namespace hisa {

// printf-style formatting of one number ("%.6g" keeps CSV files exact enough and short).
inline std::string format_number(double v, const char* fmt = "%.6g") {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

// A CSV field, quoted (RFC 4180) only when it holds a comma, a quote or a newline.
inline std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char ch : s) out += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return out + "\"";
}

}  // namespace hisa
