// C API (pyadr/pyadr.h) over the C++ core: argument checks, status codes, thread-local errors.
// Every entry point runs its body inside guard(), which turns any exception into a status code.
#include "pyadr/pyadr.h"

#include <cmath>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "c_api_internal.hpp"
#include "pyadr/core.hpp"
#include "pyadr/params.hpp"

namespace pyadr_capi {

void need_ptr(const void* p, const char* name) {
  if (!p) bad(std::string(name) + " must not be NULL");
}

pyadr::ConvGeom to_geom(const pyadr_conv_geom* c) {
  need_ptr(c, "g");
  pyadr::ConvGeom g;
  g.B = c->batch;
  g.C = c->in_channels;
  g.H = c->height;
  g.W = c->width;
  g.M = c->out_channels;
  g.kh = c->kernel_h;
  g.kw = c->kernel_w;
  g.sh = c->stride_h;
  g.sw = c->stride_w;
  g.ph = c->pad_h;
  g.pw = c->pad_w;
  g.dh = c->dilation_h;
  g.dw = c->dilation_w;
  g.validate();
  return g;
}

template <class T>
void to_reuse_params(const pyadr_reuse_config* c, const pyadr::ConvGeom& g, const std::string& prefix,
                     ReuseArgs<T>& out) {
  need_ptr(c, "reuse");
  // The enums must be valid before the casts, L and H before they size the copies.
  pyadr::validate_reuse_enums(c->order, c->hash, c->scope, prefix);
  out.p.L = c->L;
  out.p.H = c->H;
  out.p.order = static_cast<pyadr::Order>(c->order);
  out.p.hash = static_cast<pyadr::HashKind>(c->hash);
  out.p.scope = static_cast<pyadr::Scope>(c->scope);
  out.p.exact = c->exact;
  const bool sizes_ok = c->L >= 1 && c->L <= g.K() && c->H >= 1 && c->H <= pyadr::limits::kMaxHashBits;
  if (sizes_ok && c->planes) {
    out.planes.resize(static_cast<size_t>(c->L) * c->H);
    for (size_t i = 0; i < out.planes.size(); ++i) {
      if (!std::isfinite(c->planes[i])) bad(prefix + "planes must be finite");
      out.planes[i] = static_cast<T>(c->planes[i]);
    }
    out.p.planes = out.planes.data();
  }
  if (c->hash == PYADR_HASH_L2) {
    out.p.width = static_cast<T>(c->width);
    if (sizes_ok && c->offsets) {
      out.offsets.resize(c->H);
      for (int h = 0; h < c->H; ++h) {  // in double, before the conversion may round up to width
        if (!(c->offsets[h] >= 0 && c->offsets[h] < c->width)) bad(prefix + "offsets must lie in [0, width)");
        out.offsets[h] = static_cast<T>(c->offsets[h]);
      }
      out.p.offsets = out.offsets.data();
    }
  }
  pyadr::validate_reuse(g, out.p, prefix);  // ranges, presence, finiteness, rows per call
}

template void to_reuse_params<float>(const pyadr_reuse_config*, const pyadr::ConvGeom&, const std::string&,
                                     ReuseArgs<float>&);
template void to_reuse_params<double>(const pyadr_reuse_config*, const pyadr::ConvGeom&, const std::string&,
                                      ReuseArgs<double>&);

}  // namespace pyadr_capi

namespace {

using pyadr_capi::bad;
using pyadr_capi::bad_type;
using pyadr_capi::fail;
using pyadr_capi::guard;
using pyadr_capi::g_last_error;

using pyadr_capi::need_ptr;
using pyadr_capi::to_geom;

enum class Kind { Conv, Linear };

}  // namespace

struct pyadr_context {
  Kind kind = Kind::Conv;
  int dtype = 0;  // 0 float32, 1 float64
  pyadr::ConvGeom g;
  // exact: borrowed inputs
  const void* x = nullptr;
  const void* w = nullptr;
  std::unique_ptr<pyadr::ReuseState<float>> sf;
  std::unique_ptr<pyadr::ReuseState<double>> sd;
  bool reuse() const { return sf || sd; }
  double rc() const { return sf ? sf->remaining_ratio() : sd ? sd->remaining_ratio() : 1.0; }
};

namespace {

template <class T>
constexpr int dtype_code() {
  return sizeof(T) == 4 ? 0 : 1;
}

template <class T>
void set_state(pyadr_context& c, std::unique_ptr<pyadr::ReuseState<T>> s);
template <>
void set_state<float>(pyadr_context& c, std::unique_ptr<pyadr::ReuseState<float>> s) {
  c.sf = std::move(s);
}
template <>
void set_state<double>(pyadr_context& c, std::unique_ptr<pyadr::ReuseState<double>> s) {
  c.sd = std::move(s);
}
const pyadr::ReuseState<float>* get_state(const pyadr_context& c, float*) { return c.sf.get(); }
const pyadr::ReuseState<double>* get_state(const pyadr_context& c, double*) { return c.sd.get(); }

template <class T>
void forward(Kind kind, const pyadr::ConvGeom& g, const T* x, const T* w, const T* b,
             const pyadr_reuse_config* reuse, T* y, pyadr_context** ctx) {
  need_ptr(x, "x");
  need_ptr(w, "w");
  need_ptr(y, "y");
  std::unique_ptr<pyadr_context> c;
  if (ctx) {
    c.reset(new pyadr_context());
    c->kind = kind;
    c->dtype = dtype_code<T>();
    c->g = g;
  }
  if (!reuse) {
    pyadr::conv2d_forward_exact<T>(g, x, w, b, y);
    if (c) {
      c->x = x;
      c->w = w;
    }
  } else {
    pyadr_capi::ReuseArgs<T> p;
    pyadr_capi::to_reuse_params<T>(reuse, g, "reuse->", p);
    auto st = pyadr::conv2d_forward_reuse<T>(g, p.p, x, w, b, y);
    if (c) set_state<T>(*c, std::move(st));
  }
  if (ctx) *ctx = c.release();
}

template <class T>
void backward(Kind kind, const pyadr_context* ctx, const T* dy, T* dx, T* dw, T* db) {
  need_ptr(ctx, "ctx");
  need_ptr(dy, "dy");
  const char* fwd = kind == Kind::Conv ? "pyadr_conv2d_forward" : "pyadr_linear_forward";
  if (ctx->kind != kind)
    bad_type(std::string("ctx must come from ") + fwd + ", got a context of a " +
             (ctx->kind == Kind::Conv ? "conv2d" : "linear") + " call");
  if (ctx->dtype != dtype_code<T>())
    bad_type(std::string("dtype mismatch: the context is ") + (ctx->dtype == 0 ? "float32" : "float64") +
        "; use the " + (ctx->dtype == 0 ? "float32" : "_f64") + " backward");
  if (const auto* st = get_state(*ctx, static_cast<T*>(nullptr))) {
    pyadr::conv2d_backward_reuse<T>(*st, dy, dx, dw, db);
  } else {
    pyadr::conv2d_backward_exact<T>(ctx->g, static_cast<const T*>(ctx->x), static_cast<const T*>(ctx->w), dy, dx,
                                    dw, db);
  }
}

const pyadr_context& need_ctx(const pyadr_context* c) {
  need_ptr(c, "ctx");
  return *c;
}

}  // namespace

extern "C" {

const char* pyadr_last_error(void) { return g_last_error.c_str(); }
void pyadr_clear_error(void) { g_last_error.clear(); }
const char* pyadr_version(void) { return pyadr::version(); }

pyadr_status pyadr_set_num_threads(int n) {
  return guard("pyadr_set_num_threads", [&] { pyadr::set_num_threads(n); });
}
int pyadr_get_num_threads(void) { return pyadr::num_threads(); }
int pyadr_openmp_enabled(void) { return pyadr::openmp_enabled() ? 1 : 0; }
const char* pyadr_simd_level(void) { return pyadr::simd_level(); }

pyadr_status pyadr_onednn_load(const char* path) {
  return guard("pyadr_onednn_load", [&] {
    std::string why;
    if (!pyadr::onednn_load(path, &why)) bad(why);
  });
}
pyadr_status pyadr_set_conv_provider(int provider) {
  return guard("pyadr_set_conv_provider", [&] {
    if (provider < PYADR_CONV_AUTO || provider > PYADR_CONV_ONEDNN)
      bad("provider must be PYADR_CONV_AUTO, PYADR_CONV_BUILTIN or PYADR_CONV_ONEDNN, got " + std::to_string(provider));
    pyadr::set_conv_provider(static_cast<pyadr::ConvProvider>(provider));
  });
}
int pyadr_get_conv_provider(void) { return static_cast<int>(pyadr::conv_provider()); }
const char* pyadr_conv_provider_info(void) {
  thread_local std::string info;
  const bool onednn = pyadr::onednn_loaded() && pyadr::conv_provider() != pyadr::ConvProvider::Builtin;
  info = onednn ? "onednn " + pyadr::onednn_library() : std::string("builtin");
  return info.c_str();
}

void pyadr_conv_geom_init(pyadr_conv_geom* g, int64_t batch, int64_t in_channels, int64_t height, int64_t width,
                          int64_t out_channels, int64_t kernel_h, int64_t kernel_w) {
  if (!g) return;
  g->batch = batch;
  g->in_channels = in_channels;
  g->height = height;
  g->width = width;
  g->out_channels = out_channels;
  g->kernel_h = kernel_h;
  g->kernel_w = kernel_w;
  g->stride_h = g->stride_w = 1;
  g->pad_h = g->pad_w = 0;
  g->dilation_h = g->dilation_w = 1;
}

pyadr_status pyadr_conv2d_output_shape(const pyadr_conv_geom* g, int64_t* out_h, int64_t* out_w) {
  return guard("pyadr_conv2d_output_shape", [&] {
    const pyadr::ConvGeom cg = to_geom(g);
    if (out_h) *out_h = cg.OH;
    if (out_w) *out_w = cg.OW;
  });
}

void pyadr_reuse_config_init(pyadr_reuse_config* cfg, int L, int H, const double* planes) {
  if (!cfg) return;
  cfg->L = L;
  cfg->H = H;
  cfg->order = PYADR_ORDER_HWC;
  cfg->hash = PYADR_HASH_SIGN;
  cfg->scope = PYADR_SCOPE_BATCH;
  cfg->planes = planes;
  cfg->offsets = nullptr;
  cfg->width = 1.0;
  cfg->exact = PYADR_EXACT_NONE;
}

pyadr_status pyadr_random_planes(double* planes, int L, int H, uint64_t seed) {
  return guard("pyadr_random_planes", [&] {
    need_ptr(planes, "planes");
    if (L < 1) bad("L must be >= 1, got " + std::to_string(L));
    if (H < 1) bad("H must be >= 1, got " + std::to_string(H));
    uint64_t s = seed;
    auto next = [&s]() {  // splitmix64
      uint64_t z = (s += 0x9E3779B97F4A7C15ull);
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      return z ^ (z >> 31);
    };
    auto uniform = [&]() { return (static_cast<double>(next() >> 11) + 0.5) * (1.0 / 9007199254740992.0); };
    const double two_pi = 6.283185307179586476925286766559;
    const size_t n = static_cast<size_t>(L) * H;
    for (size_t i = 0; i < n; i += 2) {
      const double u1 = uniform(), u2 = uniform();
      const double r = std::sqrt(-2.0 * std::log(u1));
      planes[i] = r * std::cos(two_pi * u2);
      if (i + 1 < n) planes[i + 1] = r * std::sin(two_pi * u2);
    }
  });
}

void pyadr_context_free(pyadr_context* ctx) { delete ctx; }

int pyadr_context_is_reuse(const pyadr_context* ctx) { return ctx && ctx->reuse() ? 1 : 0; }

pyadr_status pyadr_context_remaining_ratio(const pyadr_context* ctx, double* rc) {
  return guard("pyadr_context_remaining_ratio", [&] {
    const auto& c = need_ctx(ctx);
    need_ptr(rc, "rc");
    *rc = c.rc();
  });
}

pyadr_status pyadr_context_blocks(const pyadr_context* ctx, int64_t* nblocks) {
  return guard("pyadr_context_blocks", [&] {
    const auto& c = need_ctx(ctx);
    need_ptr(nblocks, "nblocks");
    if (!c.reuse()) bad("ctx comes from an exact call: it has no clusters");
    *nblocks = c.sf ? c.sf->nblocks : c.sd->nblocks;
  });
}

pyadr_status pyadr_context_clusters(const pyadr_context* ctx, int64_t j, int64_t* clusters) {
  return guard("pyadr_context_clusters", [&] {
    const auto& c = need_ctx(ctx);
    need_ptr(clusters, "clusters");
    if (!c.reuse()) bad("ctx comes from an exact call: it has no clusters");
    const int64_t nb = c.sf ? c.sf->nblocks : c.sd->nblocks;
    if (j < 0 || j >= nb) bad("j must be in [0, " + std::to_string(nb) + "), got " + std::to_string(j));
    *clusters = c.sf ? c.sf->clusters(j) : c.sd->clusters(j);
  });
}

pyadr_status pyadr_context_bytes(const pyadr_context* ctx, size_t* bytes) {
  return guard("pyadr_context_bytes", [&] {
    const auto& c = need_ctx(ctx);
    need_ptr(bytes, "bytes");
    *bytes = sizeof(pyadr_context) + (c.sf ? c.sf->bytes() : 0) + (c.sd ? c.sd->bytes() : 0);
  });
}

#define PYADR_CLEAR_CTX(ctx) \
  do {                       \
    if (ctx) *(ctx) = nullptr; \
  } while (0)

pyadr_status pyadr_conv2d_forward(const pyadr_conv_geom* g, const float* x, const float* w, const float* b,
                                  const pyadr_reuse_config* reuse, float* y, pyadr_context** ctx) {
  PYADR_CLEAR_CTX(ctx);
  return guard("pyadr_conv2d_forward", [&] { forward<float>(Kind::Conv, to_geom(g), x, w, b, reuse, y, ctx); });
}

pyadr_status pyadr_conv2d_forward_f64(const pyadr_conv_geom* g, const double* x, const double* w, const double* b,
                                      const pyadr_reuse_config* reuse, double* y, pyadr_context** ctx) {
  PYADR_CLEAR_CTX(ctx);
  return guard("pyadr_conv2d_forward_f64",
               [&] { forward<double>(Kind::Conv, to_geom(g), x, w, b, reuse, y, ctx); });
}

pyadr_status pyadr_conv2d_backward(const pyadr_context* ctx, const float* dy, float* dx, float* dw, float* db) {
  return guard("pyadr_conv2d_backward", [&] { backward<float>(Kind::Conv, ctx, dy, dx, dw, db); });
}

pyadr_status pyadr_conv2d_backward_f64(const pyadr_context* ctx, const double* dy, double* dx, double* dw,
                                       double* db) {
  return guard("pyadr_conv2d_backward_f64", [&] { backward<double>(Kind::Conv, ctx, dy, dx, dw, db); });
}

pyadr_status pyadr_linear_forward(int64_t batch, int64_t in_features, int64_t out_features, const float* x,
                                  const float* w, const float* b, const pyadr_reuse_config* reuse, float* y,
                                  pyadr_context** ctx) {
  PYADR_CLEAR_CTX(ctx);
  return guard("pyadr_linear_forward", [&] {
    forward<float>(Kind::Linear, pyadr::linear_geometry(batch, in_features, out_features), x, w, b, reuse, y, ctx);
  });
}

pyadr_status pyadr_linear_forward_f64(int64_t batch, int64_t in_features, int64_t out_features, const double* x,
                                      const double* w, const double* b, const pyadr_reuse_config* reuse, double* y,
                                      pyadr_context** ctx) {
  PYADR_CLEAR_CTX(ctx);
  return guard("pyadr_linear_forward_f64", [&] {
    forward<double>(Kind::Linear, pyadr::linear_geometry(batch, in_features, out_features), x, w, b, reuse, y, ctx);
  });
}

pyadr_status pyadr_linear_backward(const pyadr_context* ctx, const float* dy, float* dx, float* dw, float* db) {
  return guard("pyadr_linear_backward", [&] { backward<float>(Kind::Linear, ctx, dy, dx, dw, db); });
}

pyadr_status pyadr_linear_backward_f64(const pyadr_context* ctx, const double* dy, double* dx, double* dw,
                                       double* db) {
  return guard("pyadr_linear_backward_f64", [&] { backward<double>(Kind::Linear, ctx, dy, dx, dw, db); });
}

}  // extern "C"
