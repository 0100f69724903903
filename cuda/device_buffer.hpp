#pragma once
// RAII owners of device memory and streams. Host-only header.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>

#include "cuda/cuda_check.hpp"

namespace hisa::cuda {

// A device array that only grows: resize() reallocates (without keeping contents) when the capacity is too
// small, so per-chunk buffers are allocated once and reused.
template <typename T>
class DeviceArray {
 public:
  DeviceArray() = default;
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  DeviceArray(DeviceArray&& o) noexcept { swap(o); }
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    swap(o);
    return *this;
  }
  ~DeviceArray() {
    if (data_ != nullptr) cudaFree(data_);  // never throws from a destructor
  }

  void resize(size_t n) {
    if (n > capacity_) {
      release();
      HISA_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&data_), n * sizeof(T)));
      capacity_ = n;
    }
    size_ = n;
  }
  void release() {
    if (data_ != nullptr) HISA_CUDA_CHECK(cudaFree(data_));
    data_ = nullptr;
    capacity_ = size_ = 0;
  }
  void upload(const T* src, size_t n, cudaStream_t stream) {
    resize(n);
    if (n > 0) HISA_CUDA_CHECK(cudaMemcpyAsync(data_, src, n * sizeof(T), cudaMemcpyHostToDevice, stream));
  }
  // Copies the first n elements to host memory (asynchronous on the stream; synchronise before reading).
  void download(T* dst, size_t n, cudaStream_t stream) const {
    if (n > 0) HISA_CUDA_CHECK(cudaMemcpyAsync(dst, data_, n * sizeof(T), cudaMemcpyDeviceToHost, stream));
  }
  T* data() { return data_; }
  const T* data() const { return data_; }
  size_t size() const { return size_; }
  size_t capacity_bytes() const { return capacity_ * sizeof(T); }

 private:
  void swap(DeviceArray& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
    std::swap(capacity_, o.capacity_);
  }
  T* data_ = nullptr;
  size_t size_ = 0, capacity_ = 0;
};

// Page-locked host memory that only grows (cudaHostAlloc), for copies the GPU runs asynchronously and at full
// PCIe speed; contents are not initialised.
template <typename T>
class PinnedArray {
 public:
  PinnedArray() = default;
  PinnedArray(const PinnedArray&) = delete;
  PinnedArray& operator=(const PinnedArray&) = delete;
  ~PinnedArray() {
    if (data_ != nullptr) cudaFreeHost(data_);  // never throws from a destructor
  }
  T* reserve(size_t n) {
    if (n > capacity_) {
      if (data_ != nullptr) HISA_CUDA_CHECK(cudaFreeHost(data_));
      data_ = nullptr;
      capacity_ = 0;
      HISA_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&data_), n * sizeof(T), cudaHostAllocDefault));
      capacity_ = n;
    }
    return data_;
  }
  T* data() { return data_; }
  const T* data() const { return data_; }

 private:
  T* data_ = nullptr;
  size_t capacity_ = 0;
};

// Whether [p, p + bytes) is page-locked host memory (cudaHostAlloc, cudaHostRegister, torch's pin_memory): the
// copy engine reads it directly, without staging. The range is one caller's array: its first and last byte tell.
inline bool pinned_host(const void* p, size_t bytes) {
  auto pinned = [](const void* x) {
    cudaPointerAttributes a{};
    if (cudaPointerGetAttributes(&a, x) != cudaSuccess) {
      cudaGetLastError();  // not an error to keep: plain memory on older drivers
      return false;
    }
    return a.type == cudaMemoryTypeHost;
  };
  return bytes > 0 && pinned(p) && pinned(static_cast<const char*>(p) + bytes - 1);
}

class Stream {
 public:
  Stream() { HISA_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  ~Stream() { cudaStreamDestroy(stream_); }
  cudaStream_t get() const { return stream_; }
  void synchronize() const { HISA_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

 private:
  cudaStream_t stream_ = nullptr;
};

// An event for ordering only (no timing), so that waiting on it is cheap.
class PlainEvent {
 public:
  PlainEvent() { HISA_CUDA_CHECK(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming)); }
  PlainEvent(const PlainEvent&) = delete;
  PlainEvent& operator=(const PlainEvent&) = delete;
  ~PlainEvent() { cudaEventDestroy(event_); }
  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

// A copy between pinned host memory and the device that may still be in flight: recorded after it on its
// stream, waited for before the memory is reused, and by the destructor before the memory can be freed (declare it
// after the memory it guards, so that it is destroyed first). The event is made on the first record, when the
// stream's GPU is current (an event belongs to the device it was made on).
class PendingCopy {
 public:
  PendingCopy() = default;
  PendingCopy(const PendingCopy&) = delete;
  PendingCopy& operator=(const PendingCopy&) = delete;
  ~PendingCopy() {
    if (pending_) cudaEventSynchronize(event_->get());  // never throws from a destructor
  }
  void record(cudaStream_t s) {
    if (!event_) event_.emplace();
    HISA_CUDA_CHECK(cudaEventRecord(event_->get(), s));
    pending_ = true;
  }
  void wait() {
    if (!pending_) return;
    HISA_CUDA_CHECK(cudaEventSynchronize(event_->get()));
    pending_ = false;
  }
  bool pending() const { return pending_; }

 private:
  std::optional<PlainEvent> event_;
  bool pending_ = false;
};

class Event {
 public:
  Event() { HISA_CUDA_CHECK(cudaEventCreate(&event_)); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  ~Event() { cudaEventDestroy(event_); }
  void record(cudaStream_t s) { HISA_CUDA_CHECK(cudaEventRecord(event_, s)); }
  // Milliseconds from `start` to this event (both recorded and complete).
  float since(const Event& start) const {
    HISA_CUDA_CHECK(cudaEventSynchronize(event_));
    float ms = 0;
    HISA_CUDA_CHECK(cudaEventElapsedTime(&ms, start.event_, event_));
    return ms;
  }

 private:
  cudaEvent_t event_ = nullptr;
};

}  // namespace hisa::cuda
