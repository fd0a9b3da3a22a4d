// tessera/detail/launch.hpp - how every kernel is launched: Thrust algorithms over index ranges
// with an explicit execution policy, never the global device-system macro.
#pragma once

#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/transform_reduce.h>
#include <thrust/functional.h>

#include <cstddef>
#include <type_traits>

#include "tessera/detail/config.hpp"

namespace tessera::detail {

/// Calls a copy of f held in a local: a parallel loop reaches its functor through a pointer, and
/// the compiler must then assume that every store the functor makes may change the functor's own
/// fields (its pointers and sizes) and reload them; a local copy's fields cannot be aliased.
template <class F>
struct Local {
  F f;
  TESSERA_HD void operator()(std::size_t i) const {
    const F local = f;
    local(i);
  }
};

/// Calls f(i) for i in [0, n) in parallel on the system of `exec`.
template <class Exec, class F>
void for_each_index(Exec&& exec, std::size_t n, F f) {
  thrust::for_each(exec, thrust::counting_iterator<std::size_t>(0), thrust::counting_iterator<std::size_t>(n),
                   Local<F>{f});
}

/// Wraps an elementwise functor so that one parallel item handles a contiguous chunk: on the CPU
/// the inner loop vectorises and the scheduling cost is paid once per chunk, not per element.
template <class F>
struct Chunked {
  F f;
  std::size_t n, chunk;
  TESSERA_HD void operator()(std::size_t c) const {
    const F local = f;  // see Local
    const std::size_t lo = c * chunk, hi = lo + chunk < n ? lo + chunk : n;
    for (std::size_t i = lo; i < hi; ++i) local(i);
  }
};

/// True for an execution policy of a system with many light threads (a GPU): its type says so with
/// a member `tessera_fine_grained` (the CUDA device's policy does). There each parallel item is one
/// element, so that neighbouring threads touch neighbouring addresses; on the CPU items are chunks.
template <class Exec>
inline constexpr bool fine_grained = requires { requires std::remove_cvref_t<Exec>::tessera_fine_grained; };

/// Elementwise launch: f(i) for every i in [0, n), in chunks (one element per item on a
/// fine-grained system).
template <class Exec, class F>
void for_each_element(Exec&& exec, std::size_t n, F f, std::size_t chunk = 4096) {
  if (n == 0) return;
  if constexpr (fine_grained<Exec>) {
    for_each_index(exec, n, f);
  } else {
    for_each_index(exec, (n + chunk - 1) / chunk, Chunked<F>{f, n, chunk});
  }
}

/// Sum over i in [0, n) of f(i) (f returns double), reduced on the system of `exec`.
template <class Exec, class F>
double sum_over(Exec&& exec, std::size_t n, F f) {
  return thrust::transform_reduce(exec, thrust::counting_iterator<std::size_t>(0),
                                  thrust::counting_iterator<std::size_t>(n), f, 0.0, thrust::plus<double>());
}

/// Smallest f(i) over i in [0, n) (f returns std::size_t), or `none` when n is 0, reduced on the
/// system of `exec`: the host learns one index without reading the device's memory itself.
template <class Exec, class F>
std::size_t min_over(Exec&& exec, std::size_t n, F f, std::size_t none) {
  return thrust::transform_reduce(exec, thrust::counting_iterator<std::size_t>(0),
                                  thrust::counting_iterator<std::size_t>(n), f, none, thrust::minimum<std::size_t>());
}

}  // namespace tessera::detail
