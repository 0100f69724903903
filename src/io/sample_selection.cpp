#include "io/sample_selection.hpp"

#include <algorithm>
#include <filesystem>

#include "core/error.hpp"

namespace hisa {

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
  return out;
}

std::vector<DumpReader> open_inputs(const std::vector<std::string>& paths) {
  std::vector<DumpReader> readers;
  for (const auto& f : expand_inputs(paths)) readers.emplace_back(f);
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

std::vector<int> select_layers(const std::vector<SampleSource>& sources, const std::vector<int>& requested) {
  std::vector<int> layers;
  for (const auto& s : sources) layers.insert(layers.end(), s.sample->layers.begin(), s.sample->layers.end());
  std::sort(layers.begin(), layers.end());
  layers.erase(std::unique(layers.begin(), layers.end()), layers.end());
  if (requested.empty()) return layers;
  for (int l : requested) {
    if (!std::binary_search(layers.begin(), layers.end(), l)) {
      throw OptionError("layers", "{layers}: layer " + std::to_string(l) + " is in none of the selected samples");
    }
  }
  return requested;
}

}  // namespace hisa
