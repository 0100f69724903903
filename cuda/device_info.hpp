#pragma once
// What CUDA devices this process can use. Host-only header: callable from code built without nvcc.
#include <string>
#include <vector>

namespace hisa::cuda {

struct DeviceInfo {
  int index = 0;
  std::string name;
  int sm_major = 0, sm_minor = 0;
  int multiprocessors = 0;
  size_t total_memory = 0;
  size_t free_memory = 0;
  // Peak memory bandwidth from the device attributes: 2 (DDR) · memory clock · bus width / 8; 0 when the
  // runtime reports no clock or width.
  int memory_clock_khz = 0, memory_bus_bits = 0;
  double hbm_bytes_per_second = 0;
};

// Devices the runtime reports; empty when there is no driver or no GPU (never throws).
std::vector<DeviceInfo> list_devices();

}  // namespace hisa::cuda
