#include "io/sample_selection.hpp"

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <map>

#include "core/error.hpp"
#include "core/file_identity.hpp"
#include "core/text_escape.hpp"

namespace hisa {

namespace {

// The inputs without the files met before (by device and inode), each repeat named in a warning.
std::vector<std::string> drop_repeats(const std::vector<std::string>& files) {
  std::vector<std::string> out;
  std::map<FileIdentity, std::string> seen;
  for (const auto& f : files) {
    const std::optional<FileIdentity> id = file_identity(f);
    if (!id) {  // missing: the reader reports it
      out.push_back(f);
      continue;
    }
    auto [it, first] = seen.emplace(*id, f);
    if (first) {
      out.push_back(f);
    } else {
      std::cerr << "hisa: warning: " << terminal_safe(f) << ": the same file as " << terminal_safe(it->second)
                << ", given twice; counted once\n";
    }
  }
  return out;
}

}  // namespace

std::vector<std::string> expand_inputs(const std::vector<std::string>& paths) {
  std::vector<std::string> out;
  for (const auto& p : paths) {
    std::error_code ec;
    if (!std::filesystem::is_directory(p, ec)) {
      out.push_back(p);  // a file, or a path the reader reports as missing
      continue;
    }
    std::vector<std::string> found;
    for (const auto& e : std::filesystem::directory_iterator(p, ec)) {
      if (e.is_regular_file() && e.path().extension() == ".h5") found.push_back(e.path().string());
    }
    if (ec) throw UsageError(p + ": cannot list the directory: " + ec.message());
    if (found.empty()) throw UsageError(p + ": a directory without dumps (*.h5)");
    std::sort(found.begin(), found.end());
    out.insert(out.end(), found.begin(), found.end());
  }
  return drop_repeats(out);
}

std::vector<DumpReader> open_inputs(const std::vector<std::string>& paths, const ReaderOptions& options) {
  std::vector<DumpReader> readers;
  for (const auto& f : expand_inputs(paths)) readers.emplace_back(f, options);
  return readers;
}

int64_t resolve_topk(std::optional<int64_t> requested, const std::vector<DumpReader>& readers) {
  if (requested) return *requested;
  const int64_t k = readers.front().attributes().index_topk;
  for (const auto& r : readers) {
    if (r.attributes().index_topk != k) {
      throw OptionError("topk", "the files disagree on index_topk (" + std::to_string(k) + " in " + readers.front().path() +
                                    ", " + std::to_string(r.attributes().index_topk) + " in " + r.path() + "); pass {topk}");
    }
  }
  return k;
}

std::vector<SampleSource> select_samples(const std::vector<DumpReader>& readers, const std::vector<std::string>& names) {
  std::vector<SampleSource> sources;
  for (const auto& r : readers) {
    for (const auto& s : r.samples()) {
      if (names.empty() || std::find(names.begin(), names.end(), s.name) != names.end()) sources.push_back({&r, &s});
    }
  }
  for (const auto& name : names) {
    const bool found =
        std::any_of(sources.begin(), sources.end(), [&](const SampleSource& s) { return s.sample->name == name; });
    if (!found) throw OptionError("samples", "{samples}: no sample named \"" + name + "\" in the input files");
  }
  return sources;
}

namespace {

// "0-3,7" for the layers held (ascending), for messages.
std::string ranges_text(const std::vector<int>& layers) {
  std::string out;
  for (size_t i = 0; i < layers.size();) {
    size_t j = i;
    while (j + 1 < layers.size() && layers[j + 1] == layers[j] + 1) ++j;
    out += (out.empty() ? "" : ",") + std::to_string(layers[i]) + (j > i ? "-" + std::to_string(layers[j]) : "");
    i = j + 1;
  }
  return out.empty() ? "none" : out;
}

}  // namespace

std::vector<int> select_layers(const std::vector<SampleSource>& sources, const IntRanges& requested) {
  std::vector<int> layers;
  for (const auto& s : sources) layers.insert(layers.end(), s.sample->layers.begin(), s.sample->layers.end());
  std::sort(layers.begin(), layers.end());
  layers.erase(std::unique(layers.begin(), layers.end()), layers.end());
  if (requested.empty()) return layers;
  std::vector<int> out;
  for (const auto& r : requested.ranges()) {
    // The held layers inside [lo, hi] must be lo, lo+1, ..., hi: the first gap is a requested layer none holds.
    int64_t expect = r.lo;
    for (auto it = std::lower_bound(layers.begin(), layers.end(), r.lo); it != layers.end() && *it <= r.hi; ++it, ++expect) {
      if (*it != expect) break;
      out.push_back(*it);
    }
    if (expect <= r.hi) {
      throw OptionError("layers", "{layers}: layer " + std::to_string(expect) + " is in none of the selected samples (they hold layers " +
                                      ranges_text(layers) + ")");
    }
  }
  return out;
}

}  // namespace hisa
