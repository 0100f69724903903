#include "core/text_escape.hpp"

#include <cstdint>
#include <cstdio>

namespace hisa {

namespace {

std::string hex_escape(unsigned byte) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "\\x%02x", byte & 0xffu);
  return buf;
}

std::string unicode_escape(uint32_t code_point) {
  char buf[12];
  std::snprintf(buf, sizeof buf, "\\u%04x", unsigned(code_point));
  return buf;
}

// The length of the well-formed UTF-8 sequence at text[i] (RFC 3629: no overlong forms, no surrogates, nothing
// past U+10FFFF) and its code point; 0 when the bytes there are not one.
size_t utf8_sequence(std::string_view text, size_t i, uint32_t& code_point) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned lead = byte(i);
  size_t n = 0;
  unsigned lo = 0x80, hi = 0xbf;  // the range of the second byte
  if (lead >= 0xc2 && lead <= 0xdf) {
    n = 2, code_point = lead & 0x1fu;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    n = 3, code_point = lead & 0x0fu;
    if (lead == 0xe0) lo = 0xa0;
    if (lead == 0xed) hi = 0x9f;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    n = 4, code_point = lead & 0x07u;
    if (lead == 0xf0) lo = 0x90;
    if (lead == 0xf4) hi = 0x8f;
  } else {
    return 0;
  }
  if (i + n > text.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    const unsigned b = byte(i + k);
    if (b < (k == 1 ? lo : 0x80u) || b > (k == 1 ? hi : 0xbfu)) return 0;
    code_point = (code_point << 6) | (b & 0x3fu);
  }
  return n;
}

bool is_hidden_control(uint32_t c) {
  return (c >= 0x80 && c <= 0x9f) ||       // C1 controls
         (c >= 0x202a && c <= 0x202e) ||   // bidirectional embeddings and overrides
         (c >= 0x2066 && c <= 0x2069);     // bidirectional isolates
}

}  // namespace

std::string terminal_safe(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const unsigned char b = static_cast<unsigned char>(text[i]);
    if (b < 0x80) {
      switch (b) {
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default: out += (b < 0x20 || b == 0x7f) ? hex_escape(b) : std::string(1, char(b));
      }
      ++i;
      continue;
    }
    uint32_t code_point = 0;
    const size_t n = utf8_sequence(text, i, code_point);
    if (n == 0) {
      out += hex_escape(b);  // a stray byte: a terminal in an 8-bit mode may read it as a C1 control
      ++i;
    } else {
      out += is_hidden_control(code_point) ? unicode_escape(code_point) : std::string(text.substr(i, n));
      i += n;
    }
  }
  return out;
}

}  // namespace hisa
