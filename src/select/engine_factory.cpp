#include <iostream>

#include "core/error.hpp"
#include "select/engine.hpp"

namespace hisa {

std::unique_ptr<SelectionEngine> make_engine(const std::string& device, int threads) {
  if (device == "cpu") return make_cpu_engine(threads);
  if (device == "cuda") {
    throw UsageError("--device cuda: this build has no CUDA selection engine yet; use --device cpu");
  }
  if (device == "auto") {
    std::cerr << "hisa: no GPU selection engine in this build; using the CPU\n";
    return make_cpu_engine(threads);
  }
  throw UsageError("--device must be cpu, cuda or auto (got \"" + device + "\")");
}

}  // namespace hisa
