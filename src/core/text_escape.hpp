#pragma once
// Text read from a dump (sample names, `model`, `source`, other string attributes, HDF5 paths) is untrusted: a
// control character in it could move the cursor, recolour or retitle a terminal, or forge a line of output. Every
// such text is passed through terminal_safe() before it reaches a terminal.
#include <string>
#include <string_view>

namespace hisa {

// `text` with every control character written as a visible escape: \n, \r, \t and \xNN for the other C0 bytes,
// DEL and bytes that are not valid UTF-8; \u0080..\u009f for the C1 controls (which some terminals obey, e.g.
// U+009B as CSI); \u202a.. for the Unicode bidirectional overrides and isolates, which can reorder what a line
// shows. Everything else (printable ASCII, valid UTF-8, backslash itself) is kept as it is, so ordinary names are
// unchanged.
std::string terminal_safe(std::string_view text);

}  // namespace hisa
