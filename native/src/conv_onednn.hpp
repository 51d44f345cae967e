// Dispatch of the exact convolution to oneDNN (conv_onednn.cpp). Each call returns true when
// oneDNN computed the result, false when the caller must use its builtin kernels: provider
// "builtin", library not loaded, double, a 1x1 linear layer, a call from inside a parallel
// region, or a shape oneDNN does not implement.
#pragma once

#include "pyadr/core.hpp"

namespace pyadr {
namespace onednn {

bool forward(const ConvGeom& g, const float* x, const float* w, const float* b, float* y);
// dx, dw, db may each be null; x may be null when dw is.
bool backward(const ConvGeom& g, const float* x, const float* w, const float* dy, float* dx, float* dw,
              float* db);

inline bool forward(const ConvGeom&, const double*, const double*, const double*, double*) { return false; }
inline bool backward(const ConvGeom&, const double*, const double*, const double*, double*, double*,
                     double*) {
  return false;
}

}  // namespace onednn
}  // namespace pyadr
