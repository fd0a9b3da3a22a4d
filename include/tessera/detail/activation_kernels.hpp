// tessera/detail/activation_kernels.hpp - fused bias + activation forward and the activation
// derivative backward, as __host__ __device__ row functors.
#pragma once

#include <cmath>
#include <cstddef>

#include "tessera/detail/launch.hpp"
#include "tessera/model/activation.hpp"

namespace tessera::detail {

TESSERA_HD inline float activate(Activation a, float z) {
  switch (a) {
    case Activation::relu: return z < 0.0f ? 0.0f : z;  // NaN passes through, as it must
    case Activation::tanh: return std::tanh(z);
    case Activation::sigmoid: return z >= 0.0f ? 1.0f / (1.0f + std::exp(-z)) : std::exp(z) / (1.0f + std::exp(z));
    case Activation::identity: break;
  }
  return z;
}

/// Derivative expressed through the activation's output y = act(z), so that z need not be kept.
TESSERA_HD inline float activate_grad_from_output(Activation a, float y) {
  switch (a) {
    case Activation::relu: return y > 0.0f ? 1.0f : 0.0f;
    case Activation::tanh: return 1.0f - y * y;
    case Activation::sigmoid: return y * (1.0f - y);
    case Activation::identity: break;
  }
  return 1.0f;
}

/// Row r of y (rows x cols): y = act(y + b), in place after the matrix product.
template <Activation A>
struct BiasActivate {
  float* y;
  const float* b;
  std::size_t cols;
  TESSERA_HD void operator()(std::size_t r) const {
    float* row = y + r * cols;
    for (std::size_t j = 0; j < cols; ++j) row[j] = activate(A, row[j] + b[j]);
  }
};

/// Row r: dy *= act'(y), turning the gradient at the output into the gradient at the input.
template <Activation A>
struct ActivationBackward {
  float* dy;
  const float* y;
  std::size_t cols;
  TESSERA_HD void operator()(std::size_t r) const {
    float* d = dy + r * cols;
    const float* o = y + r * cols;
    for (std::size_t j = 0; j < cols; ++j) d[j] *= activate_grad_from_output(A, o[j]);
  }
};

/// Element i of y (rows x cols), for fine-grained systems: neighbouring threads, neighbouring
/// elements of a row.
template <Activation A>
struct BiasActivateAt {
  float* y;
  const float* b;
  std::size_t cols;
  TESSERA_HD void operator()(std::size_t i) const { y[i] = activate(A, y[i] + b[i % cols]); }
};
template <Activation A>
struct ActivationBackwardAt {
  float* dy;
  const float* y;
  TESSERA_HD void operator()(std::size_t i) const { dy[i] *= activate_grad_from_output(A, y[i]); }
};

template <class Exec>
void bias_activate(Exec&& exec, Activation a, float* y, const float* b, std::size_t rows, std::size_t cols) {
  if constexpr (fine_grained<Exec>) {
    const std::size_t n = rows * cols;
    switch (a) {
      case Activation::identity: for_each_index(exec, n, BiasActivateAt<Activation::identity>{y, b, cols}); break;
      case Activation::relu: for_each_index(exec, n, BiasActivateAt<Activation::relu>{y, b, cols}); break;
      case Activation::tanh: for_each_index(exec, n, BiasActivateAt<Activation::tanh>{y, b, cols}); break;
      case Activation::sigmoid: for_each_index(exec, n, BiasActivateAt<Activation::sigmoid>{y, b, cols}); break;
    }
    return;
  }
  switch (a) {
    case Activation::identity: for_each_index(exec, rows, BiasActivate<Activation::identity>{y, b, cols}); break;
    case Activation::relu: for_each_index(exec, rows, BiasActivate<Activation::relu>{y, b, cols}); break;
    case Activation::tanh: for_each_index(exec, rows, BiasActivate<Activation::tanh>{y, b, cols}); break;
    case Activation::sigmoid: for_each_index(exec, rows, BiasActivate<Activation::sigmoid>{y, b, cols}); break;
  }
}

template <class Exec>
void activation_backward(Exec&& exec, Activation a, float* dy, const float* y, std::size_t rows, std::size_t cols) {
  if constexpr (fine_grained<Exec>) {
    const std::size_t n = rows * cols;
    switch (a) {
      case Activation::identity: break;
      case Activation::relu: for_each_index(exec, n, ActivationBackwardAt<Activation::relu>{dy, y}); break;
      case Activation::tanh: for_each_index(exec, n, ActivationBackwardAt<Activation::tanh>{dy, y}); break;
      case Activation::sigmoid: for_each_index(exec, n, ActivationBackwardAt<Activation::sigmoid>{dy, y}); break;
    }
    return;
  }
  switch (a) {
    case Activation::identity: break;
    case Activation::relu: for_each_index(exec, rows, ActivationBackward<Activation::relu>{dy, y, cols}); break;
    case Activation::tanh: for_each_index(exec, rows, ActivationBackward<Activation::tanh>{dy, y, cols}); break;
    case Activation::sigmoid: for_each_index(exec, rows, ActivationBackward<Activation::sigmoid>{dy, y, cols}); break;
  }
}

}  // namespace tessera::detail
