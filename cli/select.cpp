// `hisa select FILE --method flat|hisa|block -o OUT.h5`: the selections themselves, for notebooks and tools.
#include <iostream>
#include <memory>

#include "cli/commands.hpp"
#include "core/atomic_file.hpp"
#include "cli/selection_flags.hpp"
#include "pipelines/select.hpp"

namespace hisa::cli {

namespace {

struct SelectFlags {
  std::string file, method = "hisa", output;
  SelectionFlags selection;
};

int run_select_command(const SelectFlags& f) {
  SelectOptions o;
  o.input.files = {f.file};
  f.selection.apply_to(o.input);
  // "certified" is flat DSA found by branch and bound.
  o.certified = f.method == "certified";
  o.method = o.certified ? Method::Flat : *parse_method(f.method);
  o.output = f.output;
  check_outputs({{f.output, "-o", false}}, {f.file});
  const int64_t n = run_select(o);
  std::cerr << "hisa: wrote " << n << " " << f.method << " selections to " << f.output << "\n";
  return 0;
}

}  // namespace

void setup_select(CLI::App& app, int& status) {
  auto f = std::make_shared<SelectFlags>();
  CLI::App* sub = app.add_subcommand("select", "Write one method's selections (ascending, -1 padded) to HDF5");
  sub->add_option("file", f->file, "Dump file (HDF5, format v1)")->required();
  sub->add_option("--method", f->method,
                  "flat (DSA), hisa, block (block-sparse baseline) or certified (DSA by branch and bound)")
      ->check(CLI::IsMember({"flat", "hisa", "block", "certified"}))
      ->capture_default_str();
  sub->add_option("-o,--output", f->output, "Output HDF5 file")->required();
  f->selection.add_to(sub);
  sub->callback([f, &status] { status = run_select_command(*f); });
}

}  // namespace hisa::cli
