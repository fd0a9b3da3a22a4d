// tessera/device/concepts.hpp - what a device is to tessera's engines and kernels.
//
// A device gives memory (`vector<T>`, allocated when a workspace is sized, never inside a step),
// the Thrust execution policy every elementwise kernel is launched with (`exec()`, on the calling
// lane's stream), matrix products (`gemm`, `gemv`, row-major), copies between host and device
// memory, and a per-lane context (`Lane`: a GPU's stream, cuBLAS handle and allocator; nothing on
// the CPU) that a lane binds on its own thread for the length of its work. Work is issued in
// stream order; `synchronize()` waits for the calling lane's stream (a no-op on the CPU), and
// `wait(check)` does so while calling check() - the communicator's failure check - so that a lane
// whose peers failed never blocks inside the device.
#pragma once

#include <concepts>
#include <cstddef>

namespace tessera {

template <class D>
concept DeviceType = requires(float* p, const float* cp, std::size_t n, bool t, float a) {
  typename D::template vector<float>;
  typename D::template vector<double>;
  typename D::Lane;
  { D::name } -> std::convertible_to<const char*>;
  D::exec();
  D::gemm(t, t, n, n, n, a, cp, n, cp, n, a, p, n);
  D::gemv(t, n, n, a, cp, n, cp, a, p);
  D::upload(cp, p, n);
  D::download(cp, p, n);
  D::synchronize();
} && std::constructible_from<typename D::Lane, int>;

namespace detail {
/// Whether the host reads a device's memory: the shipped host communicators (threads, MPI) then
/// serve it. A device of the user's says so with `static constexpr bool host_memory = true`.
template <class D>
inline constexpr bool host_memory = requires { requires D::host_memory; };
}  // namespace detail

}  // namespace tessera
