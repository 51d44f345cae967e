// Limits of the native core and the validation of every argument VALUE, written once: used by
// the kernels (conv_reuse.cpp, reuse_cache.cpp), the C API (c_api.cpp) and the Python binding.
// Messages name the argument as the Python user writes it (stride, padding, dilation, reuse.L,
// reuse.H, reuse.width, ...; the C API passes its own prefix for the reuse fields) and give the
// allowed range. Types and dtypes are the callers' business: Python checks them, the C API has
// them in its signatures. Every function throws pyadr::Error (std::invalid_argument).
#pragma once

#include <cstdint>
#include <string>

#include "pyadr/core.hpp"

namespace pyadr {
namespace limits {
constexpr int kMaxHashBits = 64;                    // reuse.H: a sign key is one 64-bit word
constexpr int64_t kMaxRowsPerCall = 2147483647;     // im2col rows N = B*OH*OW: cluster ids are int32
constexpr int64_t kMaxSubvectorLength = 2147483647; // reuse.L is an int
constexpr int64_t kMaxElements = int64_t(1) << 62;  // any tensor or im2col size, in elements
}  // namespace limits

// Fills g.OH/g.OW and checks every size of one convolution: batch, channels, height, width,
// out_channels, kernel >= 1; stride >= 1, padding >= 0, dilation >= 1; the dilated kernel fits
// the padded input; no size overflows (every tensor, the padded input and B*OH*OW*K below
// limits::kMaxElements). ConvGeom::validate() calls this.
void validate_geometry(ConvGeom& g);

// The geometry of a linear layer y (batch, out) = x (batch, in) . w^T: a 1x1 convolution of 1x1
// images; batch, in_features, out_features >= 1.
ConvGeom linear_geometry(int64_t batch, int64_t in_features, int64_t out_features);

// order, hash and scope as integers (the C API's and the binding's enums).
void validate_reuse_enums(int order, int hash, int scope, const std::string& prefix = "reuse.");

// Reuse parameters for a validated geometry g: 1 <= L <= K, 1 <= H <= 64, planes given and
// finite, for l2 offsets given and finite and width finite > 0, exact a combination of the
// kExact* bits other than all three, at most kMaxRowsPerCall rows.
// `prefix` names the config ("reuse." for Python, "reuse->" for the C API).
template <class T>
void validate_reuse(const ConvGeom& g, const ReuseParams<T>& p, const std::string& prefix = "reuse.");

// The inference cache (ReuseCache): validate_reuse plus sign hashing only, a reused forward
// (no kExactForward bit) and max_entries >= 0.
template <class T>
void validate_reuse_cache(const ConvGeom& g, const ReuseParams<T>& p, int64_t max_entries);

// batch of a call (ReuseCache::forward, the C API's linear layers): >= 1.
void validate_batch(int64_t batch);

}  // namespace pyadr
