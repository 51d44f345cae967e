// The pyadr edge weights file (docs/edge.md, written by src/pyadr/export.py), parsed and
// validated into a ModelSpec: the C model runner's (c_api_model.cpp) view of a model.
//
//   file: "PADR", u32 version (1 or 2), u32 in_c, in_h, in_w, u32 n, [v2: f32 mean (in_c),
//         f32 std (in_c)], n layer records (kind, name, shape, stride/padding, bias, ReLU, pool,
//         [v2: LRN], f32 weights, f32 bias), nothing after the last record.
//   per layer: conv2d/linear -> ReLU? -> LRN (lrn_pos 1)? -> max-pool? -> LRN (lrn_pos 2)?
//
// parse_model() checks every field before it is used (ranges, the shape chain from layer to
// layer, sizes against the bytes left, so a huge count never allocates) and throws pyadr::Error
// with a message naming the field ("layers[1] (conv2).in") and the byte offset.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace pyadr_weights {

enum LayerKind : uint32_t { kConv = 1, kLinear = 2 };
enum LrnPos : uint32_t { kLrnNone = 0, kLrnBeforePool = 1, kLrnAfterPool = 2 };

// Bounds of what the runner accepts (larger values are malformed files, not models).
constexpr uint32_t kMaxLayers = 1024;
constexpr uint32_t kMaxInputChannels = 65536;
constexpr int64_t kMaxSampleElements = INT32_MAX;  // per-sample activation of any stage

struct LayerSpec {
  uint32_t kind = kConv;
  std::string name;
  int64_t out = 0, in = 0, kh = 1, kw = 1, stride = 1, pad = 0;
  bool has_bias = false, relu = false;
  int64_t pool_k = 0, pool_s = 0, pool_p = 0;  // pool_k 0: no pooling
  uint32_t lrn_pos = kLrnNone;
  int lrn_size = 0;
  float lrn_alpha = 0, lrn_beta = 0, lrn_k = 0;
  std::vector<float> weight;  // (out, in, kh, kw) / (out, in)
  std::vector<float> bias;    // (out) or empty
  // The shape chain, per sample: the layer reads (in_c, in_h, in_w), its product writes
  // (out, conv_h, conv_w) and its result after the pool is (out, res_h, res_w).
  int64_t in_c = 0, in_h = 0, in_w = 0, conv_h = 1, conv_w = 1, res_h = 1, res_w = 1;
  int64_t conv_elements() const { return out * conv_h * conv_w; }
  int64_t result_elements() const { return out * res_h * res_w; }
};

struct ModelSpec {
  uint32_t version = 2;
  int64_t in_c = 0, in_h = 0, in_w = 0;
  std::vector<float> mean, std;  // (in_c): x = (pixel/255 - mean) / std (v1: Fashion-MNIST's)
  std::vector<LayerSpec> layers;
  int64_t max_stage_elements = 0;  // largest per-sample activation of any stage, input included
  int64_t input_elements() const { return in_c * in_h * in_w; }
  int64_t output_elements() const { return layers.back().result_elements(); }
};

// Parses and validates size bytes at data; `origin` prefixes the messages (a path or "memory").
ModelSpec parse_model(const unsigned char* data, size_t size, const std::string& origin);

}  // namespace pyadr_weights
