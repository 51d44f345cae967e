/* pyadr C API: exact and deep-reuse convolution / linear layers for C and other languages.
 *
 * Pure C (C99) interface over the C++17 core (pyadr/core.hpp). Link with pyadr::core
 * (find_package(pyadr) in CMake) and the C++ runtime. Semantics are those of DESIGN.md
 * ("Semantics"): NCHW tensors, weights (M, C, kh, kw) as in PyTorch, im2col rows ordered
 * (b, oh, ow), sub-vectors of length L in "hwc" or "chw" column order, sign or l2 LSH.
 *
 * Conventions
 *   - Every function returns a pyadr_status; PYADR_OK (0) on success. On failure, nothing the
 *     caller owns has been freed, outputs may be partially written, and pyadr_last_error()
 *     returns a message naming the problem (thread-local: each thread sees its own last error).
 *   - No C++ exception ever crosses this boundary.
 *   - Arrays are dense, C-contiguous, in the dtype of the function: float for the plain names,
 *     double for the *_f64 names. Outputs are caller-allocated; the library allocates its own
 *     workspaces internally (tiles, cluster tables, the reuse state kept for the backward).
 *   - Thread safety: distinct calls may run concurrently on distinct outputs. A context may be
 *     used by one backward call at a time.
 */
#ifndef PYADR_PYADR_H
#define PYADR_PYADR_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32) && defined(PYADR_SHARED)
#  define PYADR_API __declspec(dllimport)
#else
#  define PYADR_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status codes ------------------------------------------------------------------------ */
typedef enum pyadr_status {
  PYADR_OK = 0,
  PYADR_ERR_INVALID_ARGUMENT = 1, /* bad value: shape, size, null pointer, parameter out of range */
  PYADR_ERR_OUT_OF_MEMORY = 2,    /* an internal allocation failed */
  PYADR_ERR_INTERNAL = 3,         /* a bug or an unexpected failure; see pyadr_last_error() */
  PYADR_ERR_TYPE = 4              /* wrong kind: a context of another op or of another dtype */
} pyadr_status;

/* Message of the last failed call on this thread ("" if none). Valid until the next pyadr call
 * on this thread. Never NULL. */
PYADR_API const char* pyadr_last_error(void);

/* Clears this thread's last error message. */
PYADR_API void pyadr_clear_error(void);

/* Library version, e.g. "0.1.0". Static string. */
PYADR_API const char* pyadr_version(void);

/* Threads used by the kernels (n >= 1). Default: OpenMP's max threads (OMP_NUM_THREADS), 1
 * without OpenMP. Returns PYADR_ERR_INVALID_ARGUMENT for n < 1. */
PYADR_API pyadr_status pyadr_set_num_threads(int n);

/* Threads the kernels will use. */
PYADR_API int pyadr_get_num_threads(void);

/* 1 if the library was built with OpenMP, else 0. */
PYADR_API int pyadr_openmp_enabled(void);

/* SIMD level the kernels dispatch to at run time: "avx512", "avx2" or "baseline". */
PYADR_API const char* pyadr_simd_level(void);

/* ---- exact-convolution provider ------------------------------------------------------------
 * The exact float convolution can run on oneDNN v3 (libdnnl.so.3 built on OpenMP, e.g. PyPI's
 * onednn-cpu-gomp), loaded at run time; double always runs on the builtin kernels. */
typedef enum pyadr_conv_provider {
  PYADR_CONV_AUTO = 0,    /* default: oneDNN once pyadr_onednn_load() succeeded, else builtin */
  PYADR_CONV_BUILTIN = 1, /* the core's own kernels */
  PYADR_CONV_ONEDNN = 2   /* oneDNN (must be loaded) */
} pyadr_conv_provider;

/* Loads oneDNN from path (NULL: "libdnnl.so.3" through the dynamic loader's search path). OK if
 * loaded (or already loaded); PYADR_ERR_INVALID_ARGUMENT with the reason otherwise. */
PYADR_API pyadr_status pyadr_onednn_load(const char* path);

/* Chooses the provider (a pyadr_conv_provider). PYADR_CONV_ONEDNN before a successful
 * pyadr_onednn_load() is PYADR_ERR_INVALID_ARGUMENT. */
PYADR_API pyadr_status pyadr_set_conv_provider(int provider);
PYADR_API int pyadr_get_conv_provider(void);

/* What runs the exact float convolution: "builtin" or "onednn 3.2.0 (/path/libdnnl.so.3)".
 * Valid until the next call on this thread. */
PYADR_API const char* pyadr_conv_provider_info(void);

/* ---- geometry ---------------------------------------------------------------------------- */
/* One convolution: x (batch, in_channels, height, width), w (out_channels, in_channels,
 * kernel_h, kernel_w), y (batch, out_channels, OH, OW) with
 *   OH = (height + 2*pad_h - dilation_h*(kernel_h-1) - 1) / stride_h + 1   (same for OW).
 * Use pyadr_conv_geom_init() to get stride 1, padding 0, dilation 1 defaults. */
typedef struct pyadr_conv_geom {
  int64_t batch, in_channels, height, width;
  int64_t out_channels, kernel_h, kernel_w;
  int64_t stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
} pyadr_conv_geom;

/* Fills *g with the given shapes, stride 1, padding 0, dilation 1. g must not be NULL. */
PYADR_API void pyadr_conv_geom_init(pyadr_conv_geom* g, int64_t batch, int64_t in_channels, int64_t height,
                                    int64_t width, int64_t out_channels, int64_t kernel_h, int64_t kernel_w);

/* Validates *g and writes the output height/width (either pointer may be NULL). */
PYADR_API pyadr_status pyadr_conv2d_output_shape(const pyadr_conv_geom* g, int64_t* out_h, int64_t* out_w);

/* ---- deep-reuse configuration ------------------------------------------------------------ */
typedef enum pyadr_order { PYADR_ORDER_HWC = 0, PYADR_ORDER_CHW = 1 } pyadr_order;
typedef enum pyadr_hash { PYADR_HASH_SIGN = 0, PYADR_HASH_L2 = 1 } pyadr_hash;
typedef enum pyadr_scope { PYADR_SCOPE_BATCH = 0, PYADR_SCOPE_INPUT = 1 } pyadr_scope;
/* Bits of pyadr_reuse_config.exact: the products of a reusing layer computed exactly. */
typedef enum pyadr_exact {
  PYADR_EXACT_NONE = 0,    /* forward, dw and dx all reuse the clusters (the default) */
  PYADR_EXACT_FORWARD = 1, /* y = conv2d(x, w) + b exactly; the clusters are formed for dw / dx */
  PYADR_EXACT_DW = 2,      /* dw = X^T . dy exactly (the context keeps a copy of x) */
  PYADR_EXACT_DX = 4       /* dx = col2im(dy . W) exactly: one full GEMM, most of reuse's accuracy back */
} pyadr_exact;

/* How a layer clusters its neuron sub-vectors (DESIGN.md, "Semantics").
 *   L        sub-vector length, 1 <= L <= K (K = in_channels*kernel_h*kernel_w, or in_features)
 *   H        number of hash functions, 1 <= H <= 64
 *   order    PYADR_ORDER_HWC (default) or PYADR_ORDER_CHW column order of a row
 *   hash     PYADR_HASH_SIGN: bit h = [x . planes[:, h] > 0]
 *            PYADR_HASH_L2:   q_h = floor((x . planes[:, h] + offsets[h]) / width)
 *   scope    PYADR_SCOPE_BATCH (cluster all rows) or PYADR_SCOPE_INPUT (each image alone)
 *   planes   (L, H) row-major doubles, required (converted to the call's dtype internally, so a
 *            float32 call gives the same result as Python's pyadr with the same planes)
 *   offsets  (H) doubles in [0, width), required for L2, ignored for sign
 *   width    L2 bucket width (finite, > 0), ignored for sign
 *   exact    products computed exactly: a bitwise OR of PYADR_EXACT_FORWARD, PYADR_EXACT_DW and
 *            PYADR_EXACT_DX; 0 (PYADR_EXACT_NONE, also what a zeroed struct holds) reuses all
 *            three. All three is PYADR_ERR_INVALID_ARGUMENT: pass reuse = NULL for an exact layer.
 *            The reuse cache (reuse_cache.h) takes no PYADR_EXACT_FORWARD. Added after width
 *            (fields are only ever appended).
 * The struct only borrows planes/offsets for the duration of a call. */
typedef struct pyadr_reuse_config {
  int L, H;
  int order;
  int hash;
  int scope;
  const double* planes;
  const double* offsets;
  double width;
  int exact;
} pyadr_reuse_config;

/* Fills *cfg with L, H, the given planes, order "hwc", sign hash, scope "batch", exact 0 (all
 * three products reused). */
PYADR_API void pyadr_reuse_config_init(pyadr_reuse_config* cfg, int L, int H, const double* planes);

/* Writes L*H standard-normal numbers to planes, drawn from `seed` with a portable generator
 * (splitmix64 + Box-Muller). Deterministic across platforms, but NOT the stream Python's
 * ReuseConfig(seed=...) draws: to reproduce a Python run pass ctx.planes explicitly. */
PYADR_API pyadr_status pyadr_random_planes(double* planes, int L, int H, uint64_t seed);

/* ---- contexts ---------------------------------------------------------------------------- */
/* What a forward call keeps for its backward. Opaque; free with pyadr_context_free().
 * An exact context BORROWS the caller's x and w: they must stay alive and unchanged until the
 * backward. A reuse context owns its state (cluster ids, counts, centroids, reordered weights,
 * and a copy of x with PYADR_EXACT_DW; never the im2col matrix) and borrows nothing. */
typedef struct pyadr_context pyadr_context;

/* Frees a context; NULL is a no-op. */
PYADR_API void pyadr_context_free(pyadr_context* ctx);

/* 1 if ctx comes from a reuse call, 0 if exact (or ctx is NULL). */
PYADR_API int pyadr_context_is_reuse(const pyadr_context* ctx);

/* Remaining ratio rc of a reuse context (mean over sub-matrices of clusters / rows); 1.0 for an
 * exact context. */
PYADR_API pyadr_status pyadr_context_remaining_ratio(const pyadr_context* ctx, double* rc);

/* Number of sub-matrices and, for sub-matrix j, its clusters (reuse contexts only). */
PYADR_API pyadr_status pyadr_context_blocks(const pyadr_context* ctx, int64_t* nblocks);
PYADR_API pyadr_status pyadr_context_clusters(const pyadr_context* ctx, int64_t j, int64_t* clusters);

/* Bytes the context holds for the backward (borrowed inputs not counted). */
PYADR_API pyadr_status pyadr_context_bytes(const pyadr_context* ctx, size_t* bytes);

/* ---- convolution ------------------------------------------------------------------------- */
/* y = conv2d(x, w) + b. x, w, y required; b may be NULL (no bias). reuse NULL: exact
 * convolution; otherwise deep reuse with *reuse. ctx may be NULL when no backward is needed
 * (inference); else *ctx receives a new context (set to NULL on failure). */
PYADR_API pyadr_status pyadr_conv2d_forward(const pyadr_conv_geom* g, const float* x, const float* w,
                                            const float* b, const pyadr_reuse_config* reuse, float* y,
                                            pyadr_context** ctx);
PYADR_API pyadr_status pyadr_conv2d_forward_f64(const pyadr_conv_geom* g, const double* x, const double* w,
                                                const double* b, const pyadr_reuse_config* reuse, double* y,
                                                pyadr_context** ctx);

/* Gradients of the forward that made ctx, for upstream gradient dy (batch, out_channels, OH, OW).
 * dx (like x), dw (like w), db (out_channels) may each be NULL when not wanted. With reuse this is
 * the exact derivative of the reuse forward with its clusters held fixed; db is always exact.
 * The dtype and the op (conv2d / linear) must match the forward's (PYADR_ERR_TYPE otherwise). */
PYADR_API pyadr_status pyadr_conv2d_backward(const pyadr_context* ctx, const float* dy, float* dx, float* dw,
                                             float* db);
PYADR_API pyadr_status pyadr_conv2d_backward_f64(const pyadr_context* ctx, const double* dy, double* dx,
                                                 double* dw, double* db);

/* ---- linear ------------------------------------------------------------------------------ */
/* y (batch, out_features) = x (batch, in_features) . w^T (w: (out_features, in_features)) + b.
 * Rows (samples) are clustered for reuse; K = in_features. Otherwise as pyadr_conv2d_forward. */
PYADR_API pyadr_status pyadr_linear_forward(int64_t batch, int64_t in_features, int64_t out_features,
                                            const float* x, const float* w, const float* b,
                                            const pyadr_reuse_config* reuse, float* y, pyadr_context** ctx);
PYADR_API pyadr_status pyadr_linear_forward_f64(int64_t batch, int64_t in_features, int64_t out_features,
                                                const double* x, const double* w, const double* b,
                                                const pyadr_reuse_config* reuse, double* y,
                                                pyadr_context** ctx);

/* Gradients of pyadr_linear_forward: dx (batch, in), dw (out, in), db (out); each may be NULL. */
PYADR_API pyadr_status pyadr_linear_backward(const pyadr_context* ctx, const float* dy, float* dx, float* dw,
                                             float* db);
PYADR_API pyadr_status pyadr_linear_backward_f64(const pyadr_context* ctx, const double* dy, double* dx,
                                                 double* dw, double* db);

/* ==== nn ops: max-pooling, local response normalisation, ReLU (native/src/c_api_nn.cpp) ======
 * The layers between the convolutions of CifarNet/AlexNet-style models, so that a forward (or a
 * training step) in C needs nothing but this header. They run the kernels pyadr.nn runs on NumPy
 * arrays (MaxPool2d, LocalResponseNorm, ReLU). Conventions as above: a pyadr_status per call,
 * pyadr_last_error() names the bad argument, dense C-contiguous arrays in the function's dtype
 * (float; double for *_f64), every output caller-allocated (nothing to free). Outputs must not
 * overlap inputs (no in-place call): an overlap is PYADR_ERR_INVALID_ARGUMENT. Each call is
 * independent (no state); distinct calls may run concurrently on distinct outputs. */

/* One max-pooling of x (batch, channels, height, width) to y (batch, channels, OH, OW), with
 *   OH = (height + 2*pad_h - kernel_h) / stride_h + 1   (same for OW; floor, as PyTorch's default).
 * Constraints (PYADR_ERR_INVALID_ARGUMENT otherwise): batch, channels, height, width, kernel,
 * stride >= 1, pad >= 0, every field < 2^31, height*width < 2^31, 2*pad <= kernel (PyTorch's
 * rule: every window holds an input element), kernel <= padded input (height + 2*pad_h, ...). */
typedef struct pyadr_pool_geom {
  int64_t batch, channels, height, width;
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w;
} pyadr_pool_geom;

/* Fills *g with the shapes, stride = kernel (PyTorch's default), padding 0. g must not be NULL. */
PYADR_API void pyadr_pool_geom_init(pyadr_pool_geom* g, int64_t batch, int64_t channels, int64_t height,
                                    int64_t width, int64_t kernel_h, int64_t kernel_w);

/* Validates *g and writes OH and OW (either pointer may be NULL). */
PYADR_API pyadr_status pyadr_maxpool2d_output_shape(const pyadr_pool_geom* g, int64_t* out_h, int64_t* out_w);

/* y[b, c, oh, ow] = max of x[b, c] over the window at (oh*stride_h - pad_h, ow*stride_w - pad_w);
 * padding never wins, NaN propagates. argmax (batch, channels, OH, OW) int32 receives the flat
 * in-plane index (i*width + j) of each window's first maximum in row-major window order
 * (PyTorch's tie rule); argmax may be NULL (inference). x, y required. */
PYADR_API pyadr_status pyadr_maxpool2d_forward(const pyadr_pool_geom* g, const float* x, float* y, int32_t* argmax);
PYADR_API pyadr_status pyadr_maxpool2d_forward_f64(const pyadr_pool_geom* g, const double* x, double* y,
                                                   int32_t* argmax);

/* dx (batch, channels, height, width) = 0, then dx[b, c, argmax[b, c, o]] += dy[b, c, o]: each
 * gradient goes to its window's maximum. dy and argmax (batch, channels, OH, OW) with the argmax
 * written by the forward with the same *g; an index outside the plane is
 * PYADR_ERR_INVALID_ARGUMENT (dx then untouched). dy, argmax, dx required. */
PYADR_API pyadr_status pyadr_maxpool2d_backward(const pyadr_pool_geom* g, const float* dy, const int32_t* argmax,
                                                float* dx);
PYADR_API pyadr_status pyadr_maxpool2d_backward_f64(const pyadr_pool_geom* g, const double* dy,
                                                    const int32_t* argmax, double* dx);

/* Local response normalisation across channels (torch.nn.LocalResponseNorm) of x (batch,
 * channels, spatial), spatial = height*width of an NCHW tensor:
 *   s[b, c, p] = k + alpha/size * sum_{c' in [c - size/2, c + (size-1)/2], 0 <= c' < channels} x[b, c', p]^2
 *   y = x * s^-beta     (beta = 0.75 takes two square roots instead of pow, as pyadr.nn)
 * size >= 1, alpha finite >= 0, beta finite, k finite > 0 (so s > 0). x, y required. s and scale
 * (= s^-beta), both (batch, channels, spatial), receive what the backward needs; pass NULL for
 * both in inference (s then lives in a workspace the call allocates and frees). alpha, beta, k
 * are converted to the call's dtype. */
PYADR_API pyadr_status pyadr_lrn_forward(int64_t batch, int64_t channels, int64_t spatial, int size, double alpha,
                                         double beta, double k, const float* x, float* y, float* s, float* scale);
PYADR_API pyadr_status pyadr_lrn_forward_f64(int64_t batch, int64_t channels, int64_t spatial, int size,
                                             double alpha, double beta, double k, const double* x, double* y,
                                             double* s, double* scale);

/* Gradient of pyadr_lrn_forward for upstream dy (batch, channels, spatial):
 *   dx_c = dy_c scale_c - 2 alpha beta / size * x_c * sum_{c': c in window(c')} dy_c' x_c' scale_c' / s_c'
 * x, s, scale are the forward's input and outputs (same size, alpha, beta); all pointers required. */
PYADR_API pyadr_status pyadr_lrn_backward(int64_t batch, int64_t channels, int64_t spatial, int size, double alpha,
                                          double beta, const float* x, const float* s, const float* scale,
                                          const float* dy, float* dx);
PYADR_API pyadr_status pyadr_lrn_backward_f64(int64_t batch, int64_t channels, int64_t spatial, int size,
                                              double alpha, double beta, const double* x, const double* s,
                                              const double* scale, const double* dy, double* dx);

/* ReLU on n >= 0 values of any layout: y = x < 0 ? 0 : x (NaN propagates). Backward (PyTorch's
 * threshold_backward): dx = y > 0 ? dy : 0, from the forward's output y. All pointers required. */
PYADR_API pyadr_status pyadr_relu_forward(int64_t n, const float* x, float* y);
PYADR_API pyadr_status pyadr_relu_forward_f64(int64_t n, const double* x, double* y);
PYADR_API pyadr_status pyadr_relu_backward(int64_t n, const float* y, const float* dy, float* dx);
PYADR_API pyadr_status pyadr_relu_backward_f64(int64_t n, const double* y, const double* dy, double* dx);
/* ==== end of nn ops ======================================================================== */

/* ==== model runner: load an exported model and run its inference (native/src/c_api_model.cpp)
 * A model is a file in the pyadr edge weights format (docs/edge.md; `pyadr export` writes it from
 * a trainer checkpoint, pyadr/export.py from arrays): conv2d / linear layers, each followed by an
 * optional ReLU, local response normalisation and max-pooling, and the input normalisation.
 * pyadr_model_forward runs the same core kernels pyadr.nn's eval-mode model runs, in float32.
 *
 * Input: pyadr_model_forward takes NORMALISED float32 inputs (batch, C, H, W), what the Python
 * model's forward takes. pyadr_model_normalize turns raw 0-255 pixels into them exactly as the
 * trainer's loader does (pyadr.train: x = pixel * (1 / (255 std)) - mean / std, in float32), so
 * raw image -> normalize -> forward gives the logits of pyadr's Python evaluation.
 *
 * Ownership and threads: a model owns copies of its weights, its reuse settings and its
 * workspaces (activations, LRN scratch; grown to the largest batch seen and reused by later
 * calls, released by pyadr_model_free). A model is NOT thread-safe: one call at a time per model
 * (the forward writes its workspaces and statistics); use one model per thread to run several
 * forwards at once (the kernels use pyadr_set_num_threads threads inside each call). Loading
 * and distinct models are independent. */
typedef struct pyadr_model pyadr_model;
struct pyadr_reuse_cache; /* pyadr/reuse_cache.h */

/* Layer kinds, as in the file. */
typedef enum pyadr_layer_kind { PYADR_LAYER_CONV2D = 1, PYADR_LAYER_LINEAR = 2 } pyadr_layer_kind;
/* How a layer's product runs (pyadr_model_set_reuse / pyadr_model_set_reuse_cache). */
typedef enum pyadr_layer_mode { PYADR_LAYER_EXACT = 0, PYADR_LAYER_REUSE = 1, PYADR_LAYER_REUSE_CACHE = 2 } pyadr_layer_mode;

/* Reads and validates the file at path. *out receives the model (NULL on failure). A malformed
 * file (bad magic, unsupported version, truncated, a field out of range, a huge count, a layer
 * whose input does not match the previous layer's output, trailing bytes) is
 * PYADR_ERR_INVALID_ARGUMENT with a message naming the field, e.g. "layers[1] (conv2).in"; a file
 * that cannot be opened or read is PYADR_ERR_INVALID_ARGUMENT naming the path. */
PYADR_API pyadr_status pyadr_model_load(const char* path, pyadr_model** out);

/* Same from `size` bytes at data (copied; data may be freed after the call). */
PYADR_API pyadr_status pyadr_model_load_memory(const void* data, size_t size, pyadr_model** out);

/* Frees a model (its reuse caches included); NULL is a no-op. */
PYADR_API void pyadr_model_free(pyadr_model* model);

/* Shape of one input sample (each pointer may be NULL). */
PYADR_API pyadr_status pyadr_model_input_shape(const pyadr_model* model, int64_t* channels, int64_t* height,
                                               int64_t* width);

/* Values per sample of the output (the logits: the last layer's result, flattened NCHW). */
PYADR_API pyadr_status pyadr_model_output_size(const pyadr_model* model, int64_t* size);

/* Number of layers (conv2d / linear records of the file). */
PYADR_API pyadr_status pyadr_model_num_layers(const pyadr_model* model, int* count);

/* Index of the layer named `name` (the file's names, e.g. "conv2"); PYADR_ERR_INVALID_ARGUMENT
 * if there is none. */
PYADR_API pyadr_status pyadr_model_find_layer(const pyadr_model* model, const char* name, int* index);

/* What one layer is and did in the last pyadr_model_forward. */
typedef struct pyadr_model_layer_info {
  char name[64];                               /* NUL-terminated */
  int kind;                                    /* pyadr_layer_kind */
  int mode;                                    /* pyadr_layer_mode */
  int64_t in_channels, in_height, in_width;    /* per-sample input of the layer */
  int64_t out_channels, out_height, out_width; /* its result after ReLU / LRN / pool (linear: out, 1, 1) */
  double last_seconds;                         /* wall time of its conv2d / linear product alone in the
                                                  last forward (not ReLU / LRN / pool); 0 before any */
  double last_rc;                              /* remaining ratio of that product (1.0 exact) */
} pyadr_model_layer_info;

PYADR_API pyadr_status pyadr_model_get_layer_info(const pyadr_model* model, int index, pyadr_model_layer_info* info);

/* pixels (batch, C, H, W) uint8 in 0-255 -> x (batch, C, H, W) float32 normalised with the
 * file's mean/std, bit-identical to pyadr.train's loader. */
PYADR_API pyadr_status pyadr_model_normalize(const pyadr_model* model, const uint8_t* pixels, int64_t batch, float* x);

/* logits (batch, output_size) = the model on x (batch, C, H, W), normalised inputs (see above).
 * batch >= 1; x and logits must not overlap. Layers run exactly unless set otherwise below. */
PYADR_API pyadr_status pyadr_model_forward(pyadr_model* model, const float* x, int64_t batch, float* logits);

/* Runs layer `index`'s product with deep reuse (pyadr_conv2d_forward / pyadr_linear_forward with
 * *cfg, a new clustering per call); cfg NULL runs it exactly again. cfg and its planes/offsets
 * are copied and validated against the layer (L <= K of that layer, ...). Replaces a cache. */
PYADR_API pyadr_status pyadr_model_set_reuse(pyadr_model* model, int index, const pyadr_reuse_config* cfg);

/* Runs conv2d layer `index` through an inference reuse cache (pyadr/reuse_cache.h:
 * pyadr_reuse_cache_create(layer geometry, its weights, cfg, max_entries)) kept across forwards,
 * replacing any earlier setting (an earlier cache is freed). Sign hash only; conv2d layers only. */
PYADR_API pyadr_status pyadr_model_set_reuse_cache(pyadr_model* model, int index, const pyadr_reuse_config* cfg,
                                                   int64_t max_entries);

/* The cache of layer `index` (borrowed: owned by the model, valid until the layer's setting
 * changes or the model is freed), for pyadr_reuse_cache_get_stats / _clear; NULL if the layer
 * runs without one. */
PYADR_API pyadr_status pyadr_model_reuse_cache(pyadr_model* model, int index, struct pyadr_reuse_cache** cache);
/* ==== end of model runner ================================================================== */

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* PYADR_PYADR_H */
