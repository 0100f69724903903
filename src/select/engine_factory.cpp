#include <algorithm>
#include <iostream>

#include "core/error.hpp"
#include "select/engine.hpp"

#include "core/int_list.hpp"

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

// --fp8-mma on a GPU without the fp8 kernel: the run goes on, exactly, and says so once per device.
void note_fp8_mma_unavailable(const std::vector<int>& devices) {
  for (int d : devices) {
    if (!cuda::fp8_mma_available(d)) {
      std::cerr << "hisa: fp8 tensor cores: this build has no fp8 tensor-core kernel for " << cuda::engine_name(d)
                << " (it needs sm_90a); its scores are exact\n";
    }
  }
}
#endif

}  // namespace

StageTimes operator+(const StageTimes& a, const StageTimes& b) {
  return {a.calls + b.calls,           a.pooling + b.pooling,           a.token_scores + b.token_scores,
          a.block_scores + b.block_scores, a.block_choice + b.block_choice, a.topk + b.topk,
          a.masses + b.masses,         a.transfers + b.transfers};
}

StageTimes operator-(const StageTimes& a, const StageTimes& b) {
  return {a.calls - b.calls,           a.pooling - b.pooling,           a.token_scores - b.token_scores,
          a.block_scores - b.block_scores, a.block_choice - b.block_choice, a.topk - b.topk,
          a.masses - b.masses,         a.transfers - b.transfers};
}

std::unique_ptr<SelectionEngine> make_engine(const std::string& device, int threads, bool fp8_mma) {
  return make_engine_on(resolve_devices(device, "", fp8_mma).front(), threads, fp8_mma);
}

std::vector<int> resolve_devices(const std::string& device, const std::string& gpus, bool fp8_mma) {
  if (device != "cpu" && device != "cuda" && device != "auto") {
    throw OptionError("device", "{device} must be cpu, cuda or auto (got \"" + device + "\")");
  }
  if (device == "cpu") {
    if (!gpus.empty()) throw OptionError("gpus", "{gpus} needs {device} cuda or auto");
    if (fp8_mma) throw OptionError("fp8_mma", "{fp8_mma} scores on a GPU's fp8 tensor cores: it needs {device} cuda or auto");
    return {-1};
  }
  // What "auto" says when it falls back to the CPU.
  const std::string exact_note = fp8_mma ? " (no fp8 tensor cores there: the scores are exact)" : "";
#ifdef HISA_HAVE_CUDA
  if (gpus.empty()) {
    std::string why;
    const int index = usable_device(why);
    if (index >= 0) {
      if (fp8_mma) note_fp8_mma_unavailable({index});
      return {index};
    }
    if (device == "cuda") throw OptionError("device", "{device} cuda: " + why + "; use {device} cpu");
    std::cerr << "hisa: " << why << "; using the CPU engine" << exact_note << "\n";
    return {-1};
  }
  const auto devices = cuda::list_devices();
  std::vector<int> out;
  if (gpus == "all") {
    for (const auto& d : devices) {
      if (cuda::kernel_image_problem(d.index).empty()) out.push_back(d.index);
    }
    if (out.empty()) throw OptionError("gpus", "{gpus} all: no GPU can run this build's kernels");
    if (fp8_mma) note_fp8_mma_unavailable(out);
    return out;
  }
  for (int index : parse_int_list(gpus, "gpus")) {
    if (index < 0 || index >= int(devices.size())) {
      throw OptionError("gpus", "{gpus}: no CUDA device " + std::to_string(index) + " (" + std::to_string(devices.size()) + " found)");
    }
    const std::string problem = cuda::kernel_image_problem(index);
    if (!problem.empty()) throw OptionError("gpus", "{gpus}: the kernels of this build cannot run on device " + std::to_string(index) + ": " + problem);
    if (std::find(out.begin(), out.end(), index) == out.end()) out.push_back(index);
  }
  if (fp8_mma) note_fp8_mma_unavailable(out);
  return out;
#else
  if (device == "cuda" || !gpus.empty()) {
    throw OptionError(device == "cuda" ? "device" : "gpus", "{device} cuda/{gpus}: this build has no CUDA support (built without nvcc); use {device} cpu");
  }
  std::cerr << "hisa: built without CUDA; using the CPU engine" << exact_note << "\n";
  return {-1};
#endif
}

bool fp8_mma_in_effect([[maybe_unused]] int device, [[maybe_unused]] bool fp8_mma) {
#ifdef HISA_HAVE_CUDA
  return fp8_mma && device >= 0 && cuda::fp8_mma_available(device);
#else
  return false;
#endif
}

std::string engine_name_on(int device, [[maybe_unused]] bool fp8_mma) {
  if (device < 0) return "cpu";
#ifdef HISA_HAVE_CUDA
  return cuda::engine_name(device, fp8_mma);
#else
  throw UsageError("this build has no CUDA support");
#endif
}

std::string engine_kind_on(int device, bool fp8_mma) {
  if (device < 0) return "cpu";
  return fp8_mma_in_effect(device, fp8_mma) ? "cuda (fp8 tensor cores)" : "cuda";
}

std::unique_ptr<SelectionEngine> make_engine_on(int device, int threads, [[maybe_unused]] bool fp8_mma) {
  if (device < 0) return make_cpu_engine(threads);
#ifdef HISA_HAVE_CUDA
  return make_cuda_engine(device, 0, fp8_mma);
#else
  throw UsageError("this build has no CUDA support");
#endif
}


}  // namespace hisa
