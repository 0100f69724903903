#include <cuda_runtime.h>

#include "cuda/device_info.hpp"

namespace hisa::cuda {

std::vector<DeviceInfo> list_devices() {
  std::vector<DeviceInfo> out;
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" status
    return out;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    DeviceInfo d;
    d.index = i;
    d.name = prop.name;
    d.sm_major = prop.major;
    d.sm_minor = prop.minor;
    d.multiprocessors = prop.multiProcessorCount;
    d.total_memory = prop.totalGlobalMem;
    // cudaDeviceProp lost memoryClockRate in CUDA 13; the attributes remain.
    if (cudaDeviceGetAttribute(&d.memory_clock_khz, cudaDevAttrMemoryClockRate, i) != cudaSuccess ||
        cudaDeviceGetAttribute(&d.memory_bus_bits, cudaDevAttrGlobalMemoryBusWidth, i) != cudaSuccess) {
      cudaGetLastError();
      d.memory_clock_khz = d.memory_bus_bits = 0;
    }
    d.hbm_bytes_per_second = 2.0 * d.memory_clock_khz * 1e3 * d.memory_bus_bits / 8.0;
    if (cudaSetDevice(i) == cudaSuccess) cudaMemGetInfo(&d.free_memory, &d.total_memory);
    out.push_back(d);
  }
  return out;
}

}  // namespace hisa::cuda
