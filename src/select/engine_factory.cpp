#include <iostream>

#include "core/error.hpp"
#include "select/engine.hpp"

#ifdef HISA_HAVE_CUDA
#include "cuda/cuda_engine.hpp"
#include "cuda/device_info.hpp"
#include "cuda/kernels.hpp"
#endif

namespace hisa {

namespace {

#ifdef HISA_HAVE_CUDA
// The first device this build's kernels run on; sets `why` when there is none.
int usable_device(std::string& why) {
  const auto devices = cuda::list_devices();
  if (devices.empty()) {
    why = "no GPU found";
    return -1;
  }
  for (const auto& d : devices) {
    const std::string problem = cuda::kernel_image_problem(d.index);
    if (problem.empty()) return d.index;
    why = "the kernels of this build cannot run on " + d.name + " (compute capability " +
          std::to_string(d.sm_major) + "." + std::to_string(d.sm_minor) + "): " + problem;
  }
  return -1;
}
#endif

}  // namespace

std::unique_ptr<SelectionEngine> make_engine(const std::string& device, int threads) {
  if (device == "cpu") return make_cpu_engine(threads);
  if (device != "cuda" && device != "auto") {
    throw UsageError("--device must be cpu, cuda or auto (got \"" + device + "\")");
  }
#ifdef HISA_HAVE_CUDA
  std::string why;
  const int index = usable_device(why);
  if (index >= 0) return make_cuda_engine(index);
  if (device == "cuda") throw UsageError("--device cuda: " + why + "; use --device cpu");
  std::cerr << "hisa: " << why << "; using the CPU engine\n";
#else
  if (device == "cuda") throw UsageError("--device cuda: this build has no CUDA support (built without nvcc); use --device cpu");
  std::cerr << "hisa: built without CUDA; using the CPU engine\n";
#endif
  return make_cpu_engine(threads);
}

}  // namespace hisa
