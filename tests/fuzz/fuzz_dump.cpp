// libFuzzer target over the dump loader and what `hisa inspect --check` / `hisa audit` do with a file
// (dump_entry.hpp). InputError and UsageError are the expected answers to a bad file; a crash, a sanitizer
// report, a hang or any other exception is a finding. Built and run by scripts/fuzz.sh.
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "fuzz/dump_entry.hpp"
#include "io/attribute_probe.hpp"

namespace {

// The loader reads files by path, so each input goes to one file per process (tmpfs when there is one: the
// file is rewritten for every input).
struct InputFile {
  std::string path;
  InputFile() {
    const char* dir = std::getenv("HISA_FUZZ_TMPDIR");
    std::string base = dir ? dir : (access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    path = base + "/hisa-fuzz-" + std::to_string(getpid()) + ".h5";
  }
  ~InputFile() { unlink(path.c_str()); }  // on a normal exit; after a crash it holds the input, as a bonus
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Inputs are small files whose attributes are read in milliseconds; libhdf5's endless loops on some damaged
  // heaps then cost 2 s each instead of the default 10 (and stay below -timeout, so they are not findings).
  hisa::set_attribute_probe_timeout(2);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const InputFile file;
  hisa::fuzz::exercise_bytes(data, size, file.path);
  return 0;
}
