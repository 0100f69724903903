#pragma once
// Which (file, sample) pairs and layers a multi-file run (audit, sweep) takes part in, and its k: one set of
// rules and messages for every command that reads several dumps.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/int_list.hpp"
#include "io/dump_reader.hpp"

namespace hisa {

// The input paths with every directory replaced by the dumps in it (its *.h5 files, not recursive, in name
// order), so `hisa sweep DIR` takes a folder of captures. UsageError for a directory that cannot be listed or
// holds no dumps. A file met again (the same device and inode: given twice, through a link, or in a directory
// also given) is kept once, at its first place, with a warning on stderr: counted twice, its queries would weigh
// double in every mean.
std::vector<std::string> expand_inputs(const std::vector<std::string>& paths);

// Readers of the expanded inputs, opened in order.
std::vector<DumpReader> open_inputs(const std::vector<std::string>& paths, const ReaderOptions& options = {});

struct SampleSource {
  const DumpReader* reader = nullptr;
  const SampleEntry* sample = nullptr;
};

// The requested k, else the files' common index_topk (OptionError for topk when they disagree).
int64_t resolve_topk(std::optional<int64_t> requested, const std::vector<DumpReader>& readers);

// Every sample of every file, in file order, or only the named ones (OptionError for a name no file holds).
std::vector<SampleSource> select_samples(const std::vector<DumpReader>& readers, const std::vector<std::string>& names);

// Every layer the sources hold, ascending, or the requested ones (OptionError naming the first layer none holds;
// the work is bounded by the layers held, however wide the requested ranges).
std::vector<int> select_layers(const std::vector<SampleSource>& sources, const IntRanges& requested);

}  // namespace hisa
