#pragma once
// Crash isolation for reading a dump's attributes. libhdf5 1.10.8 (Debian 12) segfaults inside H5HG_read on some
// damaged files while following a variable-length string attribute into the global heap (the heap object's index
// and size come from the damaged bytes and the release build checks neither), loops forever in H5C_protect on
// others, and allocates up to 4 GiB for a damaged length. No public API shows those bytes before the read that
// follows them, so the caller cannot validate them first; and whether a damaged read crashes depends on what
// happens to lie in memory, so trying the read in a child and then repeating it here is not safe either.
// Instead every variable-length string attribute the loader reads is read in a child process, once per file
// open, and its value is handed back: this process never follows a variable-length string into the heap. The
// child also opens the header of each object it walks first: a damaged header size is allocated as stated.
#include <map>
#include <string>
#include <utility>

namespace hisa {

// Damaged files can send libhdf5 into an endless loop. A real dump's attributes are read in milliseconds per
// object, so 10 s covers ~100,000 objects on a slow disk.
inline constexpr int kDefaultProbeTimeoutSeconds = 10;
// For the fuzz target and its regression test, whose inputs are small files: a hang costs them less time.
void set_attribute_probe_timeout(int seconds);

// The single-valued variable-length string attributes of the objects DumpReader opens, as the child read them.
class ProbedAttributes {
 public:
  // The value of attribute `name` of the object at `object_path` ("/", "/s0", "/s0/layer_0/k"); nullptr when the
  // child did not read one there.
  const std::string* find(const std::string& object_path, const std::string& name) const;
  void add(std::string object_path, std::string name, std::string value);

 private:
  std::map<std::pair<std::string, std::string>, std::string> values_;
};

// Walks what DumpReader opens — the root, each sample group, each layer group and its datasets — in a forked child
// that reads every single-valued variable-length string attribute and sends its value back. Throws InputError
// naming the file, the object and the attribute when the child was killed by a signal, exited abnormally or ran
// out of time, or when HDF5 refused one of those reads (a damaged length or heap reference), or could not open
// the header of one of those objects (hard links) with the child's address space capped (a damaged header
// size). Anything else wrong with the file is left for the loader to report with its usual message.
// External links are walked only with follow_external (ReaderOptions::allow_external): else no other file is opened.
ProbedAttributes probe_attributes(const std::string& path, bool follow_external = false);

}  // namespace hisa
