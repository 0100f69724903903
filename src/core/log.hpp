#pragma once
// What --verbose says: decisions a run makes for itself (which kernel scores a layer, which worker takes a unit),
// one line at a time on stderr, from any thread. Off unless set_verbose(true).
#include <string>

namespace hisa {

void set_verbose(bool on);
bool verbose();
// "hisa: <line>" on stderr when verbose; nothing otherwise.
void log_verbose(const std::string& line);

}  // namespace hisa
