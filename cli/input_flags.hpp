#pragma once
// --allow-external, for every command that reads dumps (inspect, audit, select, explain, sweep, report): one
// definition, one meaning (io/dump_reader.hpp ReaderOptions; datasets/FORMAT.md, "What lies outside the file").
#include <CLI/CLI.hpp>

namespace hisa::cli {

inline void add_allow_external_flag(CLI::App* app, bool& allow_external) {
  app->add_flag("--allow-external", allow_external,
                "Follow what reaches outside the dump: external links, external raw storage, virtual datasets "
                "(refused by default)");
}

}  // namespace hisa::cli
