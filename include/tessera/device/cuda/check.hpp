// tessera/device/cuda/check.hpp - CUDA runtime and cuBLAS failures as tessera::Error, naming the
// call, the device and what tessera was doing. Needs the CMake component `cuda`.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>

#include "tessera/core/error.hpp"

namespace tessera::detail {

/// Throws when `status` is not cudaSuccess: "CUDA cudaMemcpyAsync failed on device 0 (batch upload): ...".
inline void cuda_check(cudaError_t status, const char* call, const char* what) {
  if (status == cudaSuccess) return;
  int device = -1;
  (void)cudaGetLastError();  // clear a sticky-free error so that the next call starts clean
  (void)cudaGetDevice(&device);
  throw Error(ErrorKind::runtime, std::string("CUDA ") + call + " failed on device " + std::to_string(device) + " (" +
                                      what + "): " + cudaGetErrorName(status) + ", " + cudaGetErrorString(status));
}

inline void cublas_check(cublasStatus_t status, const char* call, const char* what) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  int device = -1;
  (void)cudaGetDevice(&device);
  throw Error(ErrorKind::runtime, std::string("cuBLAS ") + call + " failed on device " + std::to_string(device) + " (" +
                                      what + "): " + cublasGetStatusName(status) + ", " + cublasGetStatusString(status));
}

/// The number of CUDA devices this process sees; 0 when there is no device or no driver.
inline int cuda_device_count() noexcept {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

}  // namespace tessera::detail
