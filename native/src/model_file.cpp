// Parser and validator of the pyadr edge weights file (see model_file.hpp for the layout).
// Every read is bounds-checked against the buffer, every count against the bytes left before
// anything is allocated, every shape against the previous layer's output.
#include "model_file.hpp"

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <cstring>
#include <string>

#include "pyadr/core.hpp"

namespace pyadr_weights {
namespace {

std::string str(int64_t v) { return std::to_string(v); }

// Little-endian reads over [data, data + size), each naming its field when the file ends early.
class Reader {
 public:
  Reader(const unsigned char* data, size_t size, const std::string& origin)
      : p_(data), n_(size), origin_(origin) {}

  [[noreturn]] void fail(const std::string& what) const { throw pyadr::Error(origin_ + ": " + what); }

  uint32_t u32(const std::string& field) {
    need(4, field);
    const unsigned char* b = p_ + pos_;
    pos_ += 4;
    return uint32_t(b[0]) | uint32_t(b[1]) << 8 | uint32_t(b[2]) << 16 | uint32_t(b[3]) << 24;
  }

  float f32(const std::string& field) {
    const uint32_t u = u32(field);
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }

  // count little-endian floats; the count is checked against the bytes left first.
  void f32s(std::vector<float>& out, int64_t count, const std::string& field) {
    if (count < 0 || static_cast<uint64_t>(count) > (n_ - pos_) / 4)
      fail("truncated: " + field + " needs " + str(count) + " floats (" + bytes_of(count) + ") at byte " +
           str(static_cast<int64_t>(pos_)) + ", only " + str(static_cast<int64_t>(n_ - pos_)) + " bytes left");
    out.resize(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) out[static_cast<size_t>(i)] = f32(field);
  }

  std::string bytes(size_t count, const std::string& field) {
    need(count, field);
    std::string s(reinterpret_cast<const char*>(p_ + pos_), count);
    pos_ += count;
    return s;
  }

  size_t pos() const { return pos_; }
  size_t left() const { return n_ - pos_; }

 private:
  static std::string bytes_of(int64_t count) {
    return count > INT64_MAX / 4 ? std::string("more than 2^63 bytes") : str(4 * count) + " bytes";
  }
  void need(size_t count, const std::string& field) const {
    if (count > n_ - pos_)
      fail("truncated: " + field + " at byte " + str(static_cast<int64_t>(pos_)) + " needs " +
           str(static_cast<int64_t>(count)) + " bytes, the file has " + str(static_cast<int64_t>(n_)));
  }
  const unsigned char* p_;
  size_t n_, pos_ = 0;
  const std::string& origin_;
};

// a field that must lie in [lo, hi]
int64_t ranged(Reader& r, uint32_t v, int64_t lo, int64_t hi, const std::string& field) {
  if (v < lo || v > hi) r.fail(field + " must be in [" + str(lo) + ", " + str(hi) + "], got " + str(v));
  return v;
}

// a * b * ... <= kMaxSampleElements, or an error naming `what`
int64_t elements(Reader& r, std::initializer_list<int64_t> dims, const std::string& what) {
  int64_t n = 1;
  for (int64_t d : dims) {
    if (d != 0 && n > kMaxSampleElements / d)
      r.fail(what + " has more than 2^31-1 elements per sample");
    n *= d;
  }
  return n;
}

void read_lrn(Reader& r, LayerSpec& L, const std::string& at) {
  L.lrn_pos = static_cast<uint32_t>(ranged(r, r.u32(at + ".lrn_pos"), 0, 2, at + ".lrn_pos"));
  const uint32_t size = r.u32(at + ".lrn_size");
  L.lrn_alpha = r.f32(at + ".lrn_alpha");
  L.lrn_beta = r.f32(at + ".lrn_beta");
  L.lrn_k = r.f32(at + ".lrn_k");
  if (L.lrn_pos == kLrnNone) return;  // the other fields are padding (export writes zeros)
  if (L.kind != kConv) r.fail(at + ".lrn_pos must be 0 on a linear layer, got " + str(L.lrn_pos));
  L.lrn_size = static_cast<int>(ranged(r, size, 1, INT32_MAX, at + ".lrn_size"));
  if (!(std::isfinite(L.lrn_alpha) && L.lrn_alpha >= 0))
    r.fail(at + ".lrn_alpha must be finite and >= 0, got " + std::to_string(L.lrn_alpha));
  if (!std::isfinite(L.lrn_beta)) r.fail(at + ".lrn_beta must be finite");
  if (!(std::isfinite(L.lrn_k) && L.lrn_k > 0))
    r.fail(at + ".lrn_k must be finite and > 0, got " + std::to_string(L.lrn_k));
}

// The product's output shape for an input (C, H, W) per sample; the layer's in must match.
void chain_product(Reader& r, LayerSpec& L, int64_t C, int64_t H, int64_t W, const std::string& at) {
  L.in_c = C;
  L.in_h = H;
  L.in_w = W;
  if (L.kind == kLinear) {
    const int64_t features = C * H * W;
    if (L.in != features)
      r.fail(at + ".in = " + str(L.in) + " does not match the " + str(features) + " features (" + str(C) + "x" +
             str(H) + "x" + str(W) + " flattened) the previous stage produces");
    return;  // conv_h = conv_w = 1
  }
  if (L.in != C)
    r.fail(at + ".in = " + str(L.in) + " does not match the " + str(C) + " channels the previous stage produces");
  pyadr::ConvGeom g;
  g.B = 1;
  g.C = C;
  g.H = H;
  g.W = W;
  g.M = L.out;
  g.kh = L.kh;
  g.kw = L.kw;
  g.sh = g.sw = L.stride;
  g.ph = g.pw = L.pad;
  try {
    g.validate();
  } catch (const pyadr::Error& e) {
    r.fail(at + ": its convolution does not fit its " + str(H) + "x" + str(W) + " input: " + e.what());
  }
  L.conv_h = g.OH;
  L.conv_w = g.OW;
}

void chain_pool(Reader& r, LayerSpec& L, const std::string& at) {
  L.res_h = L.conv_h;
  L.res_w = L.conv_w;
  if (!L.pool_k) return;
  if (2 * L.pool_p > L.pool_k)
    r.fail(at + ".pool_padding = " + str(L.pool_p) + " must be at most half of pool_k = " + str(L.pool_k));
  if (L.pool_k > L.conv_h + 2 * L.pool_p || L.pool_k > L.conv_w + 2 * L.pool_p)
    r.fail(at + ".pool_k = " + str(L.pool_k) + " is larger than the padded " + str(L.conv_h) + "x" +
           str(L.conv_w) + " output it pools");
  L.res_h = (L.conv_h + 2 * L.pool_p - L.pool_k) / L.pool_s + 1;
  L.res_w = (L.conv_w + 2 * L.pool_p - L.pool_k) / L.pool_s + 1;
}

LayerSpec read_layer(Reader& r, uint32_t version, int64_t C, int64_t H, int64_t W, int i) {
  LayerSpec L;
  std::string at = "layers[" + str(i) + "]";
  L.kind = static_cast<uint32_t>(ranged(r, r.u32(at + ".kind"), 1, 2, at + ".kind (1 conv2d, 2 linear)"));
  const uint32_t len = r.u32(at + ".name_len");
  if (len >= 64) r.fail(at + ".name_len must be < 64, got " + str(len));
  L.name = r.bytes(len, at + ".name");
  if (L.name.find('\0') != std::string::npos) r.fail(at + ".name must not contain a NUL byte");
  at += " (" + L.name + ")";
  const int64_t big = INT32_MAX;
  L.out = ranged(r, r.u32(at + ".out"), 1, big, at + ".out");
  L.in = ranged(r, r.u32(at + ".in"), 1, big, at + ".in");
  L.kh = ranged(r, r.u32(at + ".kh"), 1, big, at + ".kh");
  L.kw = ranged(r, r.u32(at + ".kw"), 1, big, at + ".kw");
  L.stride = ranged(r, r.u32(at + ".stride"), 1, big, at + ".stride");
  L.pad = ranged(r, r.u32(at + ".padding"), 0, big, at + ".padding");
  L.has_bias = ranged(r, r.u32(at + ".has_bias"), 0, 1, at + ".has_bias") != 0;
  L.relu = ranged(r, r.u32(at + ".relu"), 0, 1, at + ".relu") != 0;
  L.pool_k = ranged(r, r.u32(at + ".pool_k"), 0, big, at + ".pool_k");
  const uint32_t ps = r.u32(at + ".pool_stride"), pp = r.u32(at + ".pool_padding");
  if (L.kind == kLinear) {
    if (L.kh != 1 || L.kw != 1 || L.stride != 1 || L.pad != 0)
      r.fail(at + ": a linear layer has kh = kw = 1, stride 1, padding 0, got kh " + str(L.kh) + ", kw " +
             str(L.kw) + ", stride " + str(L.stride) + ", padding " + str(L.pad));
    if (L.pool_k) r.fail(at + ".pool_k must be 0 on a linear layer, got " + str(L.pool_k));
  }
  if (L.pool_k) {
    L.pool_s = ranged(r, ps, 1, big, at + ".pool_stride");
    L.pool_p = ranged(r, pp, 0, big, at + ".pool_padding");
  }
  if (version >= 2) read_lrn(r, L, at);
  chain_product(r, L, C, H, W, at);
  elements(r, {L.out, L.conv_h, L.conv_w}, at + "'s output");
  chain_pool(r, L, at);
  int64_t count = L.out;  // weights: out * in * kh * kw, any overflow is a count past the file
  for (int64_t d : {L.in, L.kh, L.kw}) count = count > INT64_MAX / 4 / d ? INT64_MAX : count * d;
  r.f32s(L.weight, count, at + ".weight");
  if (L.has_bias) r.f32s(L.bias, L.out, at + ".bias");
  return L;
}

}  // namespace

ModelSpec parse_model(const unsigned char* data, size_t size, const std::string& origin) {
  Reader r(data, size, origin);
  ModelSpec m;
  if (size < 4 || std::memcmp(data, "PADR", 4) != 0) r.fail("not a pyadr weights file (magic must be \"PADR\")");
  r.bytes(4, "magic");
  m.version = r.u32("version");
  if (m.version != 1 && m.version != 2)
    r.fail("unsupported version " + str(m.version) + " (this library reads versions 1 and 2)");
  m.in_c = ranged(r, r.u32("in_c"), 1, kMaxInputChannels, "in_c");
  m.in_h = ranged(r, r.u32("in_h"), 1, INT32_MAX, "in_h");
  m.in_w = ranged(r, r.u32("in_w"), 1, INT32_MAX, "in_w");
  elements(r, {m.in_c, m.in_h, m.in_w}, "the input (in_c x in_h x in_w)");
  const int64_t n = ranged(r, r.u32("layer count"), 1, kMaxLayers, "layer count");
  if (m.version >= 2) {
    r.f32s(m.mean, m.in_c, "mean");
    r.f32s(m.std, m.in_c, "std");
    for (int64_t c = 0; c < m.in_c; ++c) {
      if (!std::isfinite(m.mean[c])) r.fail("mean[" + str(c) + "] must be finite");
      if (!(std::isfinite(m.std[c]) && m.std[c] > 0)) r.fail("std[" + str(c) + "] must be finite and > 0");
    }
  } else {  // version 1: Fashion-MNIST's normalisation, as pyadr/export.py documents
    m.mean.assign(static_cast<size_t>(m.in_c), 0.2860f);
    m.std.assign(static_cast<size_t>(m.in_c), 0.3530f);
  }
  int64_t C = m.in_c, H = m.in_h, W = m.in_w;
  m.max_stage_elements = m.input_elements();
  for (int64_t i = 0; i < n; ++i) {
    m.layers.push_back(read_layer(r, m.version, C, H, W, static_cast<int>(i)));
    const LayerSpec& L = m.layers.back();
    C = L.out;
    H = L.res_h;
    W = L.res_w;
    m.max_stage_elements = std::max(m.max_stage_elements, L.conv_elements());
  }
  if (r.left())
    r.fail(str(static_cast<int64_t>(r.left())) + " trailing bytes after the last layer (byte " +
           str(static_cast<int64_t>(r.pos())) + " of " + str(static_cast<int64_t>(size)) + ")");
  return m;
}

}  // namespace pyadr_weights
