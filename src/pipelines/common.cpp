#include "pipelines/common.hpp"

#include "core/atomic_file.hpp"

namespace hisa {

std::string sample_label(const std::string& file, const std::string& sample, size_t file_count) {
  return file_count > 1 ? file + ":" + sample : sample;
}

std::string sample_label(const SampleSource& source, size_t file_count) {
  return sample_label(source.reader->path(), source.sample->name, file_count);
}

LayerFiles::LayerFiles(std::string dir, std::string extension, const std::vector<WorkUnit>& units, Writer write)
    : dir_(std::move(dir)), extension_(std::move(extension)), units_(units), write_(std::move(write)), kept_(units.size()) {}

void LayerFiles::add(size_t u, const std::string& result) {
  if (dir_.empty()) return;
  const int layer = units_[u].layer;
  kept_[u] = result;
  std::vector<const std::string*> results(units_.size(), nullptr);
  for (size_t x = 0; x < units_.size(); ++x) {
    if (units_[x].layer != layer) continue;
    if (!kept_[x]) return;  // the layer is not complete yet
    results[x] = &*kept_[x];
  }
  write_file_atomically(dir_ + "/layer_" + std::to_string(layer) + extension_,
                        [&](std::ostream& out) { write_(layer, results, out); });
  for (size_t x = 0; x < units_.size(); ++x) {
    if (units_[x].layer == layer) kept_[x].reset();
  }
}

}  // namespace hisa
