// The `hisa` tool: audits hierarchical sparse-attention (HISA) indexing against flat DSA top-k.
#include <hdf5.h>

#include <csignal>
#include <iostream>
#include <map>
#include <string>

#include "cli/commands.hpp"
#include "core/error.hpp"
#include "core/text_escape.hpp"
#include "run/cluster.hpp"
#include "run/unit_runner.hpp"

namespace {

// The flag that sets a library option (core/error.hpp OptionError names options as the library does): "--" and
// the name with '-' for '_', but for the few flags named otherwise.
std::string flag_for(const std::string& option) {
  static const std::map<std::string, std::string> renamed = {
      {"checkpoint_dir", "--checkpoint"}, {"pools", "--pool-precision"}, {"sweep_json", "--sweep"}, {"output", "-o"}};
  if (auto it = renamed.find(option); it != renamed.end()) return it->second;
  std::string flag = "--" + option;
  for (char& c : flag) c = c == '_' ? '-' : c;
  return flag;
}

}  // namespace

int main(int argc, char** argv) {
  // Past a file-size limit, a write then fails with EFBIG and is reported (temporary file removed, exit 2),
  // instead of SIGXFSZ ending the process mid-write.
  std::signal(SIGXFSZ, SIG_IGN);
  // Every HDF5 file is closed by its owner. HDF5's own clean-up at exit would close again a file whose close failed
  // (a full disk), and HDF5 1.10 crashes doing so; without it, such a run ends with its error and exit status 2.
  H5dont_atexit();
  CLI::App app{"hisa: audit HISA token selection against the flat DSA indexer on dumped indexer tensors"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "hisa 0.1.0 (dump format v1)");
  int status = 0;
  hisa::cli::setup_inspect(app, status);
  hisa::cli::setup_audit(app, status);
  hisa::cli::setup_select(app, status);
  hisa::cli::setup_bench(app, status);
  hisa::cli::setup_explain(app, status);
  hisa::cli::setup_synth(app, status);
  hisa::cli::setup_sweep(app, status);
  hisa::cli::setup_crosslayer(app, status);
  hisa::cli::setup_report(app, status, argc, argv);
  // Under MPI, an error on one rank ends every rank (the others would wait for its results forever).
  auto fail = [](int code) {
    if (hisa::Cluster::get().size() > 1) hisa::Cluster::get().abort(code);
    return code;
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;  // grep-style: 2 for any usage error
  } catch (const hisa::Interrupted& e) {
    std::cerr << "hisa: " << e.what()
              << (e.checkpoint_dir().empty() ? " (use --checkpoint DIR to keep them)"
                                             : "; rerun with --resume to continue from there")
              << "\n";
    return fail(130);  // as a shell reports a process ended by SIGINT
  } catch (const hisa::InputError& e) {  // messages quote names read from files: escaped (core/text_escape.hpp)
    std::cerr << "hisa: error: " << hisa::terminal_safe(e.what()) << "\n";
    return fail(2);
  } catch (const hisa::OptionError& e) {
    std::cerr << "hisa: error: " << hisa::terminal_safe(e.message(flag_for)) << "\n";
    return fail(2);
  } catch (const hisa::UsageError& e) {
    std::cerr << "hisa: error: " << hisa::terminal_safe(e.what()) << "\n";
    return fail(2);
  } catch (const std::bad_alloc&) {
    std::cerr << "hisa: error: out of memory\n";
    return fail(2);
  } catch (const std::exception& e) {
    std::cerr << "hisa: error: " << hisa::terminal_safe(e.what()) << "\n";
    return fail(2);
  }
  // The tables went to standard output: a write that failed there (a full disk behind a redirection) is an error.
  std::cout.flush();
  if (!std::cout) {
    std::cerr << "hisa: error: writing to standard output failed\n";
    return fail(2);
  }
  return status;
}
