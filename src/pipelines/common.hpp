#pragma once
// What the pipelines (audit, sweep, select, report) share, so that one rule serves them all: how a sample is
// labelled, how many queries are read at once, and the per-layer files written to a checkpoint directory.
#include <cstdint>
#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "io/sample_selection.hpp"
#include "run/unit_runner.hpp"

namespace hisa {

// Queries read and scored at once. Every pipeline uses the same batches, so engines chunk them alike and DSA's
// scores (hence its sets and J) agree bit for bit between audit, sweep and select.
inline constexpr int64_t kQueryBatch = 256;

// A sample's label in tables and outputs: its name, or "file:sample" when several files take part.
std::string sample_label(const std::string& file, const std::string& sample, size_t file_count);
std::string sample_label(const SampleSource& source, size_t file_count);

// Collects the results of a run's units as they finish, so that each layer can be written out once all of its
// units are in (<checkpoint>/layer_<N>.<ext>: an interrupted run leaves its finished layers readable).
class LayerFiles {
 public:
  using Writer = std::function<void(int layer, const std::vector<const std::string*>& results, std::ostream& out)>;
  // dir: the checkpoint directory, or empty for none (add() then keeps nothing and writes nothing); extension:
  // the files' extension (".json", ".csv").
  LayerFiles(std::string dir, std::string extension, const std::vector<WorkUnit>& units, Writer write);
  // Takes unit u's result; when it completes its layer, the layer's file is written from the results of its
  // units (indexed by unit, null for other layers' units), and they are let go.
  void add(size_t u, const std::string& result);

 private:
  std::string dir_, extension_;
  const std::vector<WorkUnit>& units_;
  Writer write_;
  std::vector<std::optional<std::string>> kept_;
};

}  // namespace hisa
