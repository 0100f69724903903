#pragma once
// One setup_<name> per subcommand file. Each binds its options and, when run, stores its exit status
// (0 ok, 1 a requested threshold failed, 2 error) in `status`.
#include <CLI/CLI.hpp>

namespace hisa::cli {

void setup_inspect(CLI::App& app, int& status);
void setup_audit(CLI::App& app, int& status);
void setup_select(CLI::App& app, int& status);
void setup_bench(CLI::App& app, int& status);
void setup_explain(CLI::App& app, int& status);
void setup_synth(CLI::App& app, int& status);
void setup_sweep(CLI::App& app, int& status);
void setup_crosslayer(CLI::App& app, int& status);
// The report records the command line that made it.
void setup_report(CLI::App& app, int& status, int argc, char** argv);

}  // namespace hisa::cli
