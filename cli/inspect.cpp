// `hisa inspect FILE`: what a dump holds — samples, layers, shapes, element types, storage — and warnings.
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/commands.hpp"
#include "cli/input_flags.hpp"
#include "core/error.hpp"
#include "core/text_escape.hpp"
#include "io/dump_reader.hpp"

namespace hisa::cli {

namespace {

// topk_ref's declared rule (datasets/FORMAT.md, "Declaring what topk_ref is"): only what its attributes say.
nlohmann::json ref_declaration_json(const RefDeclaration& r) {
  nlohmann::json j = nlohmann::json::object();
  if (r.method) j["method"] = *r.method;
  if (r.block_size) j["block_size"] = *r.block_size;
  if (r.blocks) j["blocks"] = *r.blocks;
  if (r.forced) j["forced"] = *r.forced;
  if (r.pool_precision) j["pool_precision"] = *r.pool_precision;
  return j;
}

std::string ref_declaration_text(const RefDeclaration& r) {
  std::string s;
  auto add = [&](const char* name, const std::string& v) { s += (s.empty() ? "" : ", ") + std::string(name) + " " + v; };
  if (r.method) add("method", *r.method);
  if (r.block_size) add("block_size", std::to_string(*r.block_size));
  if (r.blocks) add("blocks", std::to_string(*r.blocks));
  if (r.forced) add("forced", *r.forced);
  if (r.pool_precision) add("pool_precision", *r.pool_precision);
  return s;
}

struct InspectOptions {
  std::string file;
  bool json = false;
  bool check = false;
  bool allow_external = false;
};

std::string dims_text(const std::vector<int64_t>& dims) {
  std::ostringstream s;
  for (size_t i = 0; i < dims.size(); ++i) s << (i ? "x" : "") << dims[i];
  return dims.empty() ? "-" : s.str();
}

std::string storage_text(const DatasetDescription& d) {
  if (!d.external.empty()) return terminal_safe(d.external);  // "contiguous" would hide where the values are
  std::string s = d.chunk.empty() ? "contiguous" : "chunks " + dims_text(d.chunk);
  for (const auto& f : d.filters) s += "+" + f;
  return s;
}

// Reads every value of every layer through the loader, so every validation runs (NaN, positions, ...).
void check_all(const DumpReader& reader) {
  for (const auto& s : reader.samples()) {
    for (int layer : s.layers) {
      LayerReader lr = reader.open_layer(s.name, layer);
      { LayerKeys keys = lr.read_keys(); }
      const int64_t batch = 256;
      for (int64_t i = 0; i < lr.shape().queries; i += batch) {
        lr.read_queries(i, std::min(batch, lr.shape().queries - i));
      }
    }
  }
}

// The objects that reach outside the file (ReaderOptions), each with what it points to.
void write_external_objects(std::ostream& table, const std::vector<ExternalObject>& objects, bool followed) {
  if (objects.empty()) return;
  table << "\noutside the file ("
        << (followed ? "followed: --allow-external" : "not followed or read; --allow-external follows them") << "):\n";
  for (const auto& e : objects) table << "  " << terminal_safe(e.path) << ": " << terminal_safe(e.target) << "\n";
}

nlohmann::json sample_attributes_json(const SampleAttributes& a) {
  nlohmann::json j = {{"seq_len", a.seq_len}};
  if (a.task) j["task"] = *a.task;
  if (a.context_length) j["context_length"] = *a.context_length;
  if (a.depth_percent) j["depth_percent"] = *a.depth_percent;
  if (a.needle_begin) j["needle_begin"] = *a.needle_begin;
  if (a.needle_end) j["needle_end"] = *a.needle_end;
  if (a.length_bucket) j["length_bucket"] = *a.length_bucket;
  return j;
}

int run_inspect(const InspectOptions& o) {
  // What reaches outside the file is listed either way; read (--check) only when allowed.
  DumpReader reader(o.file, ReaderOptions{.allow_external = o.allow_external, .list_external = true});
  const FileAttributes& a = reader.attributes();
  std::vector<std::string> warnings = reader.warnings();

  nlohmann::json j;
  j["file"] = o.file;
  j["attributes"] = {{"format", kFormatName}, {"format_version", kFormatVersion}, {"model", a.model},
                     {"n_heads", a.n_heads},  {"head_dim", a.head_dim},           {"index_topk", a.index_topk}};
  if (a.hadamard) j["attributes"]["hadamard"] = *a.hadamard;
  if (a.rope) j["attributes"]["rope"] = *a.rope;
  if (a.scale_fmt) j["attributes"]["scale_fmt"] = *a.scale_fmt;
  if (a.source) j["attributes"]["source"] = *a.source;
  j["samples"] = nlohmann::json::array();

  std::ostringstream table;
  // Every text below comes from the file: escaped, so that it cannot drive the terminal or forge a line.
  table << "file      " << terminal_safe(o.file) << "\n"
        << "model     " << terminal_safe(a.model) << "  (n_heads " << a.n_heads << ", head_dim " << a.head_dim << ", index_topk "
        << a.index_topk << ")\n";
  if (a.hadamard || a.rope || a.scale_fmt) {
    table << "          ";
    if (a.hadamard) table << "hadamard " << *a.hadamard << "  ";
    if (a.rope) table << "rope " << terminal_safe(*a.rope) << "  ";
    if (a.scale_fmt) table << "scale_fmt " << terminal_safe(*a.scale_fmt);
    table << "\n";
  }
  if (a.source) table << "source    " << terminal_safe(*a.source) << "\n";
  if (!a.rope) warnings.push_back("/: no 'rope' attribute (the RoPE convention of the dump is unknown)");
  if (!a.hadamard) warnings.push_back("/: no 'hadamard' attribute (whether q and k were rotated is unknown)");

  for (const auto& s : reader.samples()) {
    nlohmann::json js = {{"name", s.name}, {"attributes", sample_attributes_json(s.attributes)}};
    js["layers"] = nlohmann::json::array();
    table << "\nsample " << terminal_safe(s.name) << "  seq_len " << s.attributes.seq_len;
    if (s.attributes.task) table << "  task " << terminal_safe(*s.attributes.task);
    if (s.attributes.context_length) table << "  context_length " << *s.attributes.context_length;
    if (s.attributes.depth_percent) table << "  depth " << *s.attributes.depth_percent << "%";
    if (s.attributes.has_needle()) {
      table << "  needle [" << *s.attributes.needle_begin << ", " << *s.attributes.needle_end << ")";
    }
    if (s.attributes.length_bucket) table << "  bucket " << terminal_safe(*s.attributes.length_bucket);
    table << "\n  layer        L     Nq    H    D  q     k     k_start k_scale topk_ref  k storage / q storage\n";
    for (int layer : s.layers) {
      LayerReader lr = reader.open_layer(s.name, layer);
      const LayerShape& sh = lr.shape();
      auto datasets = lr.describe();
      nlohmann::json jl = {{"layer", layer},
                           {"keys", sh.keys},
                           {"queries", sh.queries},
                           {"heads", sh.heads},
                           {"dim", sh.dim},
                           {"q_type", element_type_name(sh.q_type)},
                           {"k_type", element_type_name(sh.k_type)},
                           {"has_k_start", sh.has_k_start},
                           {"has_k_scale", sh.has_k_scale},
                           {"ref_width", sh.ref_width}};
      jl["datasets"] = nlohmann::json::array();
      std::string k_storage, q_storage;
      for (const auto& d : datasets) {
        nlohmann::json jd = {{"name", d.name},
                             {"dims", d.dims},
                             {"stored_type", d.stored_type},
                             {"element_type", d.element_type},
                             {"chunk", d.chunk},
                             {"filters", d.filters}};
        if (!d.external.empty()) jd["external"] = d.external;
        jl["datasets"].push_back(jd);
        if (d.name == "k") k_storage = storage_text(d);
        if (d.name == "q") q_storage = storage_text(d);
      }
      const RefDeclaration& ref = sh.ref_declaration;
      if (sh.ref_width > 0) jl["topk_ref"] = ref_declaration_json(ref);
      if (sh.compress_ratio != 1) jl["compress_ratio"] = sh.compress_ratio;
      if (sh.window) jl["window"] = *sh.window;
      js["layers"].push_back(jl);
      char line[256];
      std::snprintf(line, sizeof line, "  %5d %8lld %6lld %4lld %4lld  %-5s %-5s %-7s %-7s %-8s  ", layer,
                    (long long)sh.keys, (long long)sh.queries, (long long)sh.heads, (long long)sh.dim,
                    std::string(element_type_name(sh.q_type)).c_str(), std::string(element_type_name(sh.k_type)).c_str(),
                    sh.has_k_start ? "yes" : "-", sh.has_k_scale ? "yes" : "-",
                    sh.ref_width ? std::to_string(sh.ref_width).c_str() : "-");
      table << line << k_storage << " / " << q_storage << "\n";
      if (sh.ref_width > 0 && !(ref == RefDeclaration{})) table << "         topk_ref: " << ref_declaration_text(ref) << "\n";
      if (sh.compress_ratio != 1 || sh.window) {
        table << "         keys:";
        if (sh.compress_ratio != 1) table << " compressed, one row per " << sh.compress_ratio << " tokens";
        if (sh.window) table << (sh.compress_ratio != 1 ? ";" : "") << " window of " << *sh.window << " tokens";
        table << "\n";
      }
      if (sh.compress_ratio == 1 && sh.keys != s.attributes.seq_len) {
        warnings.push_back(lr.group_path() + ": k holds " + std::to_string(sh.keys) + " keys but seq_len is " +
                           std::to_string(s.attributes.seq_len));
      } else if (sh.compress_ratio != 1 && sh.keys != s.attributes.seq_len / sh.compress_ratio) {
        warnings.push_back(lr.group_path() + ": k holds " + std::to_string(sh.keys) + " rows but seq_len " +
                           std::to_string(s.attributes.seq_len) + " makes " +
                           std::to_string(s.attributes.seq_len / sh.compress_ratio) + " rows of compress_ratio " +
                           std::to_string(sh.compress_ratio));
      }
      if (sh.queries == 0) warnings.push_back(lr.group_path() + ": no queries");
    }
    j["samples"].push_back(js);
  }
  if (o.check) {
    // "Every value read" must not pass over what lies outside the file unread.
    if (!o.allow_external && !reader.external_objects().empty()) {
      const ExternalObject& e = reader.external_objects().front();
      throw InputError(o.file, e.path, e.target + ": not read: hisa reads only what the file itself holds; pass "
                                                  "--allow-external to check it too");
    }
    check_all(reader);  // throws InputError on the first bad value
    table << "\ncheck: every value read and validated\n";
  }
  j["checked"] = o.check;
  j["warnings"] = warnings;
  if (!reader.external_objects().empty()) {
    j["external"] = nlohmann::json::array();
    for (const auto& e : reader.external_objects()) j["external"].push_back({{"path", e.path}, {"target", e.target}});
    j["external_followed"] = o.allow_external;
  }
  write_external_objects(table, reader.external_objects(), o.allow_external);
  if (o.json) {
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << table.str();
    if (!warnings.empty()) {
      std::cout << "\nwarnings:\n";
      for (const auto& w : warnings) std::cout << "  " << terminal_safe(w) << "\n";
    }
  }
  return 0;
}

}  // namespace

void setup_inspect(CLI::App& app, int& status) {
  auto opts = std::make_shared<InspectOptions>();
  CLI::App* sub = app.add_subcommand("inspect", "Show what a dump holds: samples, layers, shapes, types, storage");
  sub->add_option("file", opts->file, "Dump file (HDF5, format v1)")->required();
  sub->add_flag("--json", opts->json, "Print JSON instead of the table");
  sub->add_flag("--check", opts->check, "Also read and validate every value (NaN/Inf, positions, ranges)");
  add_allow_external_flag(sub, opts->allow_external);
  sub->callback([opts, &status] { status = run_inspect(*opts); });
}

}  // namespace hisa::cli
