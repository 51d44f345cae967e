// C API of the model runner (pyadr/pyadr.h, section "model runner"): load an exported model
// (model_file.cpp parses and validates the file) and run its inference on the core's kernels.
//
// One forward over a batch B, per layer i (shapes per model_file.hpp's shape chain):
//   x (B, in_c, in_h, in_w) -> product: conv2d / linear, exact, reuse or reuse cache
//                           -> (B, out, conv_h, conv_w) -> ReLU? -> LRN before pool? -> max-pool?
//                           -> LRN after pool? -> (B, out, res_h, res_w)
// Stages ping-pong between two workspaces of B * max_stage_elements floats owned by the model
// (none of the kernels works in place); the last stage is copied to the caller's logits. The
// workspaces grow to the largest batch seen and are kept. Errors as in c_api_internal.hpp.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include <sys/stat.h>

#include "c_api_internal.hpp"
#include "model_file.hpp"
#include "pyadr/core.hpp"
#include "pyadr/params.hpp"
#include "pyadr/pyadr.h"
#include "pyadr/reuse_cache.h"

namespace {

using pyadr_capi::bad;
using pyadr_capi::guard;
using pyadr_capi::need_ptr;
using pyadr_weights::LayerSpec;

// How one layer's product runs, and what it did last.
struct LayerRun {
  int mode = PYADR_LAYER_EXACT;
  pyadr_reuse_config cfg{};            // planes / offsets point into the copies below
  std::vector<double> planes, offsets;
  pyadr_reuse_cache* cache = nullptr;  // owned, PYADR_LAYER_REUSE_CACHE only
  double last_seconds = 0, last_rc = 1;
  LayerRun() = default;
  LayerRun(const LayerRun&) = delete;
  LayerRun& operator=(const LayerRun&) = delete;
  ~LayerRun() { pyadr_reuse_cache_free(cache); }
};

// A C API call inside this file failed: rethrow it so that guard() reports its status.
void rethrow(pyadr_status s) {
  const std::string msg = pyadr_last_error();
  if (s == PYADR_ERR_OUT_OF_MEMORY) throw std::bad_alloc();
  if (s == PYADR_ERR_TYPE) throw pyadr::TypeError(msg);
  if (s == PYADR_ERR_INVALID_ARGUMENT) throw pyadr::Error(msg);
  throw std::runtime_error(msg);
}

pyadr::ConvGeom layer_geom(const LayerSpec& L, int64_t batch) {
  if (L.kind == pyadr_weights::kLinear) return pyadr::linear_geometry(batch, L.in, L.out);
  pyadr::ConvGeom g;
  g.B = batch;
  g.C = L.in_c;
  g.H = L.in_h;
  g.W = L.in_w;
  g.M = L.out;
  g.kh = L.kh;
  g.kw = L.kw;
  g.sh = g.sw = L.stride;
  g.ph = g.pw = L.pad;
  g.validate();
  return g;
}

}  // namespace

struct pyadr_model {
  pyadr_weights::ModelSpec spec;
  std::vector<std::unique_ptr<LayerRun>> runs;  // one per layer
  std::vector<float> bufA, bufB, lrn_s;         // workspaces, batch_cap * max_stage_elements each
  int64_t batch_cap = 0;

  const LayerSpec& layer(int i) const {
    const int n = static_cast<int>(spec.layers.size());
    if (i < 0 || i >= n) bad("index must be in [0, " + std::to_string(n) + "), got " + std::to_string(i));
    return spec.layers[static_cast<size_t>(i)];
  }

  void reserve(int64_t batch) {
    if (batch <= batch_cap) return;
    const int64_t per = spec.max_stage_elements;
    if (per > pyadr::limits::kMaxElements / batch)
      bad("batch = " + std::to_string(batch) + " is too large for this model's activations");
    const size_t n = static_cast<size_t>(batch * per);
    bufA.resize(n);
    bufB.resize(n);
    for (const LayerSpec& L : spec.layers)
      if (L.lrn_pos != pyadr_weights::kLrnNone) lrn_s.resize(n);  // s of the LRN, only if one
    batch_cap = batch;
  }

  // The product of layer i on x (batch, in_c, in_h, in_w) into y (batch, out, conv_h, conv_w).
  void product(size_t i, int64_t batch, const float* x, float* y) {
    const LayerSpec& L = spec.layers[i];
    LayerRun& r = *runs[i];
    const float* b = L.has_bias ? L.bias.data() : nullptr;
    const auto t0 = std::chrono::steady_clock::now();
    r.last_rc = 1.0;
    if (r.mode == PYADR_LAYER_REUSE_CACHE) {
      pyadr_status s = pyadr_reuse_cache_conv2d(r.cache, batch, x, y);
      pyadr_reuse_cache_stats st;
      if (s == PYADR_OK) s = pyadr_reuse_cache_get_stats(r.cache, &st);
      if (s != PYADR_OK) rethrow(s);
      r.last_rc = st.last_rc;
    } else {
      const pyadr::ConvGeom g = layer_geom(L, batch);
      if (r.mode == PYADR_LAYER_REUSE) {
        pyadr_capi::ReuseArgs<float> p;
        pyadr_capi::to_reuse_params<float>(&r.cfg, g, "layers[" + std::to_string(i) + "] reuse: ", p);
        r.last_rc = pyadr::conv2d_forward_reuse<float>(g, p.p, x, L.weight.data(), b, y)->remaining_ratio();
      } else {
        pyadr::conv2d_forward_exact<float>(g, x, L.weight.data(), b, y);
      }
    }
    r.last_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

  void forward(const float* x, int64_t batch, float* logits) {
    reserve(batch);
    const float* cur = x;
    auto next = [&](const float* p) { return p == bufA.data() ? bufB.data() : bufA.data(); };
    for (size_t i = 0; i < spec.layers.size(); ++i) {
      const LayerSpec& L = spec.layers[i];
      float* y = next(cur);
      product(i, batch, cur, y);
      cur = y;
      const int64_t HW = L.conv_h * L.conv_w, n = batch * L.out * HW;
      if (L.relu) {
        y = next(cur);
        pyadr::relu_forward<float>(n, cur, y);
        cur = y;
      }
      auto lrn = [&](int64_t spatial) {
        y = next(cur);
        pyadr::lrn_forward<float>(batch, L.out, spatial, L.lrn_size, L.lrn_alpha, L.lrn_beta, L.lrn_k, cur, y,
                                  lrn_s.data(), nullptr);
        cur = y;
      };
      if (L.lrn_pos == pyadr_weights::kLrnBeforePool) lrn(HW);
      if (L.pool_k) {
        pyadr::PoolGeom g;
        g.P = batch * L.out;
        g.H = L.conv_h;
        g.W = L.conv_w;
        g.kh = g.kw = L.pool_k;
        g.sh = g.sw = L.pool_s;
        g.ph = g.pw = L.pool_p;
        y = next(cur);
        pyadr::maxpool2d_forward<float>(g, cur, y, nullptr);
        cur = y;
      }
      if (L.lrn_pos == pyadr_weights::kLrnAfterPool) lrn(L.res_h * L.res_w);
    }
    std::memcpy(logits, cur, static_cast<size_t>(batch * spec.output_elements()) * sizeof(float));
  }
};

namespace {

pyadr_model* new_model(const unsigned char* data, size_t size, const std::string& origin) {
  std::unique_ptr<pyadr_model> m(new pyadr_model());
  m->spec = pyadr_weights::parse_model(data, size, origin);
  for (size_t i = 0; i < m->spec.layers.size(); ++i) m->runs.emplace_back(new LayerRun());
  return m.release();
}

std::vector<unsigned char> read_file(const char* path) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path, "rb"), &std::fclose);
  const std::string at = std::string("'") + path + "'";
  if (!f) bad("cannot open " + at + ": " + std::strerror(errno));
  struct stat st;  // a directory opens on POSIX, and its "size" is no file's
  if (stat(path, &st) == 0 && (st.st_mode & S_IFMT) != S_IFREG) bad(at + " is not a regular file");
  if (std::fseek(f.get(), 0, SEEK_END) != 0) bad("cannot seek in " + at + " (not a regular file?)");
  const long size = std::ftell(f.get());
  if (size < 0 || std::fseek(f.get(), 0, SEEK_SET) != 0) bad("cannot determine the size of " + at);
  std::vector<unsigned char> data(static_cast<size_t>(size));
  if (size && std::fread(data.data(), 1, data.size(), f.get()) != data.size())
    bad("cannot read " + at + " (" + std::to_string(size) + " bytes expected)");
  return data;
}

pyadr_model& need_model(pyadr_model* m) {
  need_ptr(m, "model");
  return *m;
}
const pyadr_model& need_model(const pyadr_model* m) {
  need_ptr(m, "model");
  return *m;
}

}  // namespace

extern "C" {

pyadr_status pyadr_model_load(const char* path, pyadr_model** out) {
  if (out) *out = nullptr;
  return guard("pyadr_model_load", [&] {
    need_ptr(path, "path");
    need_ptr(out, "out");
    const std::vector<unsigned char> data = read_file(path);
    *out = new_model(data.data(), data.size(), path);
  });
}

pyadr_status pyadr_model_load_memory(const void* data, size_t size, pyadr_model** out) {
  if (out) *out = nullptr;
  return guard("pyadr_model_load_memory", [&] {
    need_ptr(data, "data");
    need_ptr(out, "out");
    *out = new_model(static_cast<const unsigned char*>(data), size, "memory");
  });
}

void pyadr_model_free(pyadr_model* model) { delete model; }

pyadr_status pyadr_model_input_shape(const pyadr_model* model, int64_t* channels, int64_t* height, int64_t* width) {
  return guard("pyadr_model_input_shape", [&] {
    const pyadr_model& m = need_model(model);
    if (channels) *channels = m.spec.in_c;
    if (height) *height = m.spec.in_h;
    if (width) *width = m.spec.in_w;
  });
}

pyadr_status pyadr_model_output_size(const pyadr_model* model, int64_t* size) {
  return guard("pyadr_model_output_size", [&] {
    const pyadr_model& m = need_model(model);
    need_ptr(size, "size");
    *size = m.spec.output_elements();
  });
}

pyadr_status pyadr_model_num_layers(const pyadr_model* model, int* count) {
  return guard("pyadr_model_num_layers", [&] {
    const pyadr_model& m = need_model(model);
    need_ptr(count, "count");
    *count = static_cast<int>(m.spec.layers.size());
  });
}

pyadr_status pyadr_model_find_layer(const pyadr_model* model, const char* name, int* index) {
  return guard("pyadr_model_find_layer", [&] {
    const pyadr_model& m = need_model(model);
    need_ptr(name, "name");
    need_ptr(index, "index");
    std::string names;
    for (size_t i = 0; i < m.spec.layers.size(); ++i) {
      if (m.spec.layers[i].name == name) {
        *index = static_cast<int>(i);
        return;
      }
      names += (i ? ", " : "") + m.spec.layers[i].name;
    }
    bad(std::string("the model has no layer named '") + name + "' (layers: " + names + ")");
  });
}

pyadr_status pyadr_model_get_layer_info(const pyadr_model* model, int index, pyadr_model_layer_info* info) {
  return guard("pyadr_model_get_layer_info", [&] {
    const pyadr_model& m = need_model(model);
    need_ptr(info, "info");
    const LayerSpec& L = m.layer(index);
    const LayerRun& r = *m.runs[static_cast<size_t>(index)];
    std::memset(info, 0, sizeof *info);
    std::snprintf(info->name, sizeof info->name, "%s", L.name.c_str());
    info->kind = static_cast<int>(L.kind);
    info->mode = r.mode;
    info->in_channels = L.in_c;
    info->in_height = L.in_h;
    info->in_width = L.in_w;
    info->out_channels = L.out;
    info->out_height = L.res_h;
    info->out_width = L.res_w;
    info->last_seconds = r.last_seconds;
    info->last_rc = r.last_rc;
  });
}

pyadr_status pyadr_model_normalize(const pyadr_model* model, const uint8_t* pixels, int64_t batch, float* x) {
  return guard("pyadr_model_normalize", [&] {
    const pyadr_model& m = need_model(model);
    need_ptr(pixels, "pixels");
    need_ptr(x, "x");
    const int64_t C = m.spec.in_c, HW = m.spec.in_h * m.spec.in_w;
    if (batch < 1 || batch > pyadr::limits::kMaxElements / (C * HW))
      bad("batch must be in [1, " + std::to_string(pyadr::limits::kMaxElements / (C * HW)) + "], got " +
          std::to_string(batch));
    for (int64_t c = 0; c < C; ++c) {
      // pyadr.train's BatchLoader: scale = 1 / (255 std), shift = mean / std, x = pixel * scale -
      // shift, all float32, two roundings (this file is compiled without FMA contraction).
      const float scale = 1.0f / (255.0f * m.spec.std[c]), shift = m.spec.mean[c] / m.spec.std[c];
      for (int64_t b = 0; b < batch; ++b) {
        const int64_t o = (b * C + c) * HW;
        for (int64_t i = 0; i < HW; ++i) {
          const float v = static_cast<float>(pixels[o + i]) * scale;
          x[o + i] = v - shift;
        }
      }
    }
  });
}

pyadr_status pyadr_model_forward(pyadr_model* model, const float* x, int64_t batch, float* logits) {
  return guard("pyadr_model_forward", [&] {
    pyadr_model& m = need_model(model);
    need_ptr(x, "x");
    need_ptr(logits, "logits");
    pyadr::validate_batch(batch);
    const int64_t in = m.spec.input_elements(), out = m.spec.output_elements();
    if (batch > pyadr::limits::kMaxElements / 4 / std::max({in, out, m.spec.max_stage_elements}))
      bad("batch = " + std::to_string(batch) + " is too large for this model");
    const uintptr_t x0 = reinterpret_cast<uintptr_t>(x), y0 = reinterpret_cast<uintptr_t>(logits);
    if (x0 < y0 + static_cast<uintptr_t>(batch * out * 4) && y0 < x0 + static_cast<uintptr_t>(batch * in * 4))
      bad("x and logits must not overlap");
    m.forward(x, batch, logits);
  });
}

pyadr_status pyadr_model_set_reuse(pyadr_model* model, int index, const pyadr_reuse_config* cfg) {
  return guard("pyadr_model_set_reuse", [&] {
    pyadr_model& m = need_model(model);
    const LayerSpec& L = m.layer(index);
    std::unique_ptr<LayerRun> r(new LayerRun());
    if (cfg) {
      pyadr_capi::ReuseArgs<float> check;  // validated against the layer's geometry (batch 1)
      pyadr_capi::to_reuse_params<float>(cfg, layer_geom(L, 1), "cfg->", check);
      r->mode = PYADR_LAYER_REUSE;
      r->cfg = *cfg;
      r->planes.assign(cfg->planes, cfg->planes + static_cast<size_t>(cfg->L) * cfg->H);
      r->cfg.planes = r->planes.data();
      if (cfg->hash == PYADR_HASH_L2) {
        r->offsets.assign(cfg->offsets, cfg->offsets + cfg->H);
        r->cfg.offsets = r->offsets.data();
      } else {
        r->cfg.offsets = nullptr;
      }
    }
    m.runs[static_cast<size_t>(index)] = std::move(r);
  });
}

pyadr_status pyadr_model_set_reuse_cache(pyadr_model* model, int index, const pyadr_reuse_config* cfg,
                                         int64_t max_entries) {
  return guard("pyadr_model_set_reuse_cache", [&] {
    pyadr_model& m = need_model(model);
    const LayerSpec& L = m.layer(index);
    need_ptr(cfg, "cfg");
    if (L.kind != pyadr_weights::kConv)
      bad("layer " + std::to_string(index) + " (" + L.name + ") is linear: the reuse cache takes conv2d layers");
    const pyadr::ConvGeom g = layer_geom(L, 1);
    pyadr_conv_geom cg;
    pyadr_conv_geom_init(&cg, 1, g.C, g.H, g.W, g.M, g.kh, g.kw);
    cg.stride_h = cg.stride_w = L.stride;
    cg.pad_h = cg.pad_w = L.pad;
    std::unique_ptr<LayerRun> r(new LayerRun());
    const pyadr_status s = pyadr_reuse_cache_create(&cg, L.weight.data(), L.has_bias ? L.bias.data() : nullptr,
                                                    cfg, max_entries, &r->cache);
    if (s != PYADR_OK) rethrow(s);
    r->mode = PYADR_LAYER_REUSE_CACHE;
    m.runs[static_cast<size_t>(index)] = std::move(r);
  });
}

pyadr_status pyadr_model_reuse_cache(pyadr_model* model, int index, struct pyadr_reuse_cache** cache) {
  if (cache) *cache = nullptr;
  return guard("pyadr_model_reuse_cache", [&] {
    pyadr_model& m = need_model(model);
    need_ptr(cache, "cache");
    m.layer(index);
    *cache = m.runs[static_cast<size_t>(index)]->cache;
  });
}

}  // extern "C"
