/* pyadr edge example: a CifarNet-sized forward pass in plain C over the pyadr C API.
 *
 *   conv1 5x5 64 -> ReLU -> maxpool 3x3/2 -> conv2 5x5 64 -> ReLU -> maxpool 3x3/2
 *   -> FC 384 -> ReLU -> FC 192 -> ReLU -> FC 10
 * (a file exported from a trainer checkpoint also has the trainer's local response normalisation
 * after conv1's pool and before conv2's, and its input normalisation). Every layer runs through
 * the C API: convolutions and linear layers, and ReLU, max-pooling and LRN (pyadr.h's nn ops).
 *
 * Weights come from a pyadr weights file (docs/edge.md; written by pyadr/export.py) or, without
 * --weights, are drawn at random (He init) for the Fashion-MNIST shape 1x28x28. Inputs come from
 * an uncompressed IDX image file (--images, e.g. gunzipped t10k-images-idx3-ubyte) or are
 * synthetic smooth images. A stream of --reps batches of --batch images runs twice: all layers
 * exact, then conv2 with deep reuse (with --cache: through the persistent inference reuse cache,
 * pyadr/reuse_cache.h, which keeps centroid products across batches). It prints the total time of
 * each, of conv2 alone, the mean remaining ratio and the agreement of the logits with exact.
 *
 * Usage: see usage() below, or run pyadr_edge --help.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pyadr/pyadr.h"
#include "pyadr/reuse_cache.h"

#define MAX_LAYERS 16
enum { KIND_CONV = 1, KIND_LINEAR = 2 };

typedef struct {
  uint32_t kind;
  char name[64];
  uint32_t out, in, kh, kw, stride, pad, has_bias, relu, pool_k, pool_s, pool_p;
  uint32_t lrn_pos, lrn_size; /* lrn_pos 0: none, 1: after the ReLU, before the pool, 2: after the pool */
  float lrn_alpha, lrn_beta, lrn_k;
  float* w;
  float* b;
} layer;

#define MAX_IN_CHANNELS 16

typedef struct {
  uint32_t in_c, in_h, in_w, n;
  float mean[MAX_IN_CHANNELS], std[MAX_IN_CHANNELS]; /* inputs: (pixel / 255 - mean) / std */
  layer l[MAX_LAYERS];
} model;

static void die(const char* msg) {
  fprintf(stderr, "pyadr_edge: %s\n", msg);
  exit(1);
}

static void usage(FILE* out) {
  fputs("usage: pyadr_edge [--weights FILE] [--images FILE.idx] [--labels FILE.idx] [--batch N]\n"
        "                  [--reps R] [--L L] [--H H] [--threads T] [--cache] [--seed S] [--dump FILE]\n"
        "\n"
        "Runs a CifarNet-style forward pass over the pyadr C API on a stream of R batches of N images,\n"
        "once exact and once with deep reuse on conv2, and prints times, remaining ratio and agreement.\n"
        "\n"
        "  --weights FILE    pyadr weights file (pyadr export); default: random He-initialised CifarNet\n"
        "  --images FILE     uncompressed IDX3 ubyte images (gunzip t10k-images-idx3-ubyte.gz first);\n"
        "                    default: synthetic smooth images\n"
        "  --labels FILE     uncompressed IDX1 ubyte labels: also print the accuracy of both passes\n"
        "  --batch N         images per batch (default 64)\n"
        "  --reps R          batches in the stream (default 5)\n"
        "  --L L, --H H      conv2's sub-vector length and hash bits (default 32, 10)\n"
        "  --threads T       threads of the kernels (default: OpenMP's)\n"
        "  --cache           run conv2 through the inference reuse cache (pyadr/reuse_cache.h)\n"
        "  --seed S          seed of the synthetic data, random weights and hash planes (default 0)\n"
        "  --dump FILE       write the inputs, then the exact logits, as raw float32\n"
        "  --help, -h        print this and exit\n",
        out);
}

static int takes_value(const char* opt) {
  static const char* const opts[] = {"--weights", "--images", "--labels", "--dump", "--batch",
                                     "--reps",    "--L",      "--H",      "--threads", "--seed"};
  size_t i;
  for (i = 0; i < sizeof opts / sizeof opts[0]; ++i)
    if (!strcmp(opt, opts[i])) return 1;
  return 0;
}

static void check(pyadr_status s, const char* what) {
  if (s != PYADR_OK) {
    fprintf(stderr, "pyadr_edge: %s failed (%d): %s\n", what, (int)s, pyadr_last_error());
    exit(1);
  }
}

static double now_s(void) {
  struct timespec ts;
  timespec_get(&ts, TIME_UTC);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void* xmalloc(size_t n) {
  void* p = malloc(n ? n : 1);
  if (!p) die("out of memory");
  return p;
}

/* ---- little-endian readers (the file format is little-endian regardless of the host) ------- */
static uint32_t rd_u32(FILE* f) {
  unsigned char b[4];
  if (fread(b, 1, 4, f) != 4) die("weights file truncated");
  return (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
}

static float* rd_f32(FILE* f, size_t n) {
  float* out = (float*)xmalloc(n * sizeof(float));
  size_t i;
  for (i = 0; i < n; ++i) {
    uint32_t u = rd_u32(f);
    memcpy(&out[i], &u, 4);
  }
  return out;
}

static size_t weight_count(const layer* L) { return (size_t)L->out * L->in * L->kh * L->kw; }

static void load_model(const char* path, model* m) {
  FILE* f = fopen(path, "rb");
  char magic[4];
  uint32_t version, i;
  if (!f) die("cannot open the weights file");
  if (fread(magic, 1, 4, f) != 4 || memcmp(magic, "PADR", 4) != 0) die("not a pyadr weights file (bad magic)");
  version = rd_u32(f);
  if (version != 1 && version != 2) die("unsupported weights file version");
  m->in_c = rd_u32(f);
  m->in_h = rd_u32(f);
  m->in_w = rd_u32(f);
  m->n = rd_u32(f);
  if (m->n > MAX_LAYERS) die("too many layers");
  if (m->in_c < 1 || m->in_c > MAX_IN_CHANNELS) die("unsupported number of input channels");
  for (i = 0; i < m->in_c; ++i) { /* version 1: Fashion-MNIST's normalisation */
    m->mean[i] = 0.2860f;
    m->std[i] = 0.3530f;
  }
  if (version >= 2) {
    float* v = rd_f32(f, 2 * (size_t)m->in_c);
    for (i = 0; i < m->in_c; ++i) {
      m->mean[i] = v[i];
      m->std[i] = v[m->in_c + i];
      if (!(m->std[i] > 0)) die("input std must be > 0");
    }
    free(v);
  }
  for (i = 0; i < m->n; ++i) {
    layer* L = &m->l[i];
    uint32_t len;
    L->kind = rd_u32(f);
    if (L->kind != KIND_CONV && L->kind != KIND_LINEAR) die("unknown layer kind");
    len = rd_u32(f);
    if (len >= sizeof L->name) die("layer name too long");
    if (fread(L->name, 1, len, f) != len) die("weights file truncated");
    L->name[len] = 0;
    L->out = rd_u32(f);
    L->in = rd_u32(f);
    L->kh = rd_u32(f);
    L->kw = rd_u32(f);
    L->stride = rd_u32(f);
    L->pad = rd_u32(f);
    L->has_bias = rd_u32(f);
    L->relu = rd_u32(f);
    L->pool_k = rd_u32(f);
    L->pool_s = rd_u32(f);
    L->pool_p = rd_u32(f);
    L->lrn_pos = L->lrn_size = 0;
    if (version >= 2) {
      float* v;
      L->lrn_pos = rd_u32(f);
      L->lrn_size = rd_u32(f);
      v = rd_f32(f, 3);
      L->lrn_alpha = v[0];
      L->lrn_beta = v[1];
      L->lrn_k = v[2];
      free(v);
      if (L->lrn_pos > 2 || (L->lrn_pos && (L->lrn_size < 1 || L->kind != KIND_CONV))) die("bad LRN fields");
    }
    L->w = rd_f32(f, weight_count(L));
    L->b = L->has_bias ? rd_f32(f, L->out) : NULL;
  }
  fclose(f);
}

static uint64_t g_rng = 0x1234567ULL;
static double urand(void) {
  g_rng = g_rng * 6364136223846793005ULL + 1442695040888963407ULL;
  return ((double)(g_rng >> 11) + 0.5) / 9007199254740992.0;
}
static double nrand(void) { return sqrt(-2.0 * log(urand())) * cos(6.283185307179586 * urand()); }

static void add_layer(model* m, uint32_t kind, const char* name, uint32_t out, uint32_t in, uint32_t k, uint32_t pad,
                      uint32_t relu, uint32_t pool) {
  layer* L = &m->l[m->n++];
  size_t i, n;
  double sd;
  memset(L, 0, sizeof *L);
  L->kind = kind;
  snprintf(L->name, sizeof L->name, "%s", name);
  L->out = out;
  L->in = in;
  L->kh = L->kw = k;
  L->stride = 1;
  L->pad = pad;
  L->has_bias = 1;
  L->relu = relu;
  if (pool) {
    L->pool_k = 3;
    L->pool_s = 2;
    L->pool_p = 1;
  }
  n = weight_count(L);
  sd = sqrt(2.0 / (double)(in * k * k));
  L->w = (float*)xmalloc(n * sizeof(float));
  L->b = (float*)xmalloc(out * sizeof(float));
  for (i = 0; i < n; ++i) L->w[i] = (float)(sd * nrand());
  for (i = 0; i < out; ++i) L->b[i] = 0.01f;
}

/* CifarNet for 1x28x28 inputs: 28 -> pool 14 -> pool 7, 64*7*7 = 3136 features. */
static void random_model(model* m) {
  m->in_c = 1;
  m->mean[0] = 0.2860f;
  m->std[0] = 0.3530f;
  m->in_h = m->in_w = 28;
  m->n = 0;
  add_layer(m, KIND_CONV, "conv1", 64, 1, 5, 2, 1, 1);
  add_layer(m, KIND_CONV, "conv2", 64, 64, 5, 2, 1, 1);
  add_layer(m, KIND_LINEAR, "fc1", 384, 64 * 7 * 7, 1, 0, 1, 0);
  add_layer(m, KIND_LINEAR, "fc2", 192, 384, 1, 0, 1, 0);
  add_layer(m, KIND_LINEAR, "fc3", 10, 192, 1, 0, 0, 0);
}

/* ---- inputs ------------------------------------------------------------------------------- */
static uint32_t rd_be32(FILE* f) {
  unsigned char b[4];
  if (fread(b, 1, 4, f) != 4) die("IDX file truncated");
  return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | (uint32_t)b[3];
}

/* Uncompressed IDX (ubyte) images -> floats, normalised like the trainer: (v/255 - mean) / std
 * with the weights file's mean/std (Fashion-MNIST's 0.2860/0.3530 for version 1 files). */
static float* load_idx_images(const char* path, size_t batch, const model* m) {
  FILE* f = fopen(path, "rb");
  uint32_t magic, n, h, w;
  size_t i, per;
  unsigned char* raw;
  float* x;
  if (!f) die("cannot open the images file");
  magic = rd_be32(f);
  if (magic != 0x00000803) die("images file is not an uncompressed IDX3 ubyte file (gunzip it first)");
  n = rd_be32(f);
  h = rd_be32(f);
  w = rd_be32(f);
  if (m->in_c != 1 || h != m->in_h || w != m->in_w) die("image shape does not match the model input");
  if (batch > n) die("--batch exceeds the number of images");
  per = (size_t)h * w;
  raw = (unsigned char*)xmalloc(batch * per);
  if (fread(raw, 1, batch * per, f) != batch * per) die("IDX file truncated");
  fclose(f);
  x = (float*)xmalloc(batch * per * sizeof(float));
  for (i = 0; i < batch * per; ++i) x[i] = ((float)raw[i] / 255.0f - m->mean[0]) / m->std[0];
  free(raw);
  return x;
}

static unsigned char* load_idx_labels(const char* path, size_t batch) {
  FILE* f = fopen(path, "rb");
  unsigned char* y;
  if (!f) die("cannot open the labels file");
  if (rd_be32(f) != 0x00000801) die("labels file is not an uncompressed IDX1 ubyte file");
  if (rd_be32(f) < batch) die("--batch exceeds the number of labels");
  y = (unsigned char*)xmalloc(batch);
  if (fread(y, 1, batch, f) != batch) die("IDX file truncated");
  fclose(f);
  return y;
}

/* Smooth synthetic images (a few Gaussian blobs each): unlike white noise they have the local
 * similarity deep reuse exploits. */
static float* synthetic_images(size_t batch, const model* m) {
  const size_t C = m->in_c, H = m->in_h, W = m->in_w;
  float* x = (float*)xmalloc(batch * C * H * W * sizeof(float));
  size_t b, c, i, j, k;
  for (b = 0; b < batch; ++b)
    for (c = 0; c < C; ++c) {
      float* p = x + (b * C + c) * H * W;
      double cy[3], cx[3], s[3], a[3];
      for (k = 0; k < 3; ++k) {
        cy[k] = urand() * H;
        cx[k] = urand() * W;
        s[k] = 2.0 + 4.0 * urand();
        a[k] = 2.0 * urand() - 0.5;
      }
      for (i = 0; i < H; ++i)
        for (j = 0; j < W; ++j) {
          double v = -0.5;
          for (k = 0; k < 3; ++k) {
            const double dy = (double)i - cy[k], dx = (double)j - cx[k];
            v += a[k] * exp(-(dy * dy + dx * dx) / (2 * s[k] * s[k]));
          }
          p[i * W + j] = (float)v;
        }
    }
  return x;
}

/* ---- the forward pass --------------------------------------------------------------------- */
/* The layers between the convolutions run through the C API's nn ops (pyadr_relu_forward,
 * pyadr_maxpool2d_forward, pyadr_lrn_forward: the kernels pyadr.nn runs in Python). None works in
 * place, so each writes the other scratch buffer; these return the buffer now holding the data. */
static float* other_buffer(const float* p, float* bufA, float* bufB) { return p == bufA ? bufB : bufA; }

static float* relu_layer(float* x, size_t n, float* bufA, float* bufB) {
  float* y = other_buffer(x, bufA, bufB);
  check(pyadr_relu_forward((int64_t)n, x, y), "pyadr_relu_forward");
  return y;
}

static float* maxpool_layer(float* x, size_t B, size_t C, size_t* H, size_t* W, const layer* L, float* bufA,
                            float* bufB) {
  float* y = other_buffer(x, bufA, bufB);
  pyadr_pool_geom g;
  int64_t oh, ow;
  pyadr_pool_geom_init(&g, (int64_t)B, (int64_t)C, (int64_t)*H, (int64_t)*W, L->pool_k, L->pool_k);
  g.stride_h = g.stride_w = L->pool_s;
  g.pad_h = g.pad_w = L->pool_p;
  check(pyadr_maxpool2d_output_shape(&g, &oh, &ow), "pyadr_maxpool2d_output_shape");
  check(pyadr_maxpool2d_forward(&g, x, y, NULL), "pyadr_maxpool2d_forward");
  *H = (size_t)oh;
  *W = (size_t)ow;
  return y;
}

/* Local response normalisation across channels (torch.nn.LocalResponseNorm); inference: no s. */
static float* lrn_layer(float* x, size_t B, size_t C, size_t HW, const layer* L, float* bufA, float* bufB) {
  float* y = other_buffer(x, bufA, bufB);
  check(pyadr_lrn_forward((int64_t)B, (int64_t)C, (int64_t)HW, (int)L->lrn_size, L->lrn_alpha, L->lrn_beta,
                          L->lrn_k, x, y, NULL, NULL),
        "pyadr_lrn_forward");
  return y;
}

typedef struct {
  int reuse_layer;                 /* index of the layer run with reuse, -1: none */
  const pyadr_reuse_config* cfg;   /* its config */
  pyadr_reuse_cache* cache;        /* non-NULL: run that layer through the cache instead */
  double reuse_layer_s;            /* out: time of that layer */
  double rc;                       /* out: its remaining ratio */
} run_opts;

/* Runs the model on x (batch, in_c, in_h, in_w); writes logits to out (batch, classes). bufs are
 * two scratch buffers of `cap` floats each. */
static void forward(const model* m, const float* x, size_t batch, float* bufA, float* bufB, float* out, run_opts* o) {
  size_t C = m->in_c, H = m->in_h, W = m->in_w, i;
  const float* cur = x;
  float* nxt = bufA;
  for (i = 0; i < m->n; ++i) {
    const layer* L = &m->l[i];
    const int reuse = (int)i == o->reuse_layer;
    double t0 = now_s();
    size_t OC, OH, OW;
    if (L->kind == KIND_CONV) {
      pyadr_conv_geom g;
      int64_t oh, ow;
      if (L->in != C) die("layer input channels do not match");
      pyadr_conv_geom_init(&g, (int64_t)batch, (int64_t)C, (int64_t)H, (int64_t)W, L->out, L->kh, L->kw);
      g.stride_h = g.stride_w = L->stride;
      g.pad_h = g.pad_w = L->pad;
      check(pyadr_conv2d_output_shape(&g, &oh, &ow), "output shape");
      if (reuse && o->cache) {
        pyadr_reuse_cache_stats st;
        check(pyadr_reuse_cache_conv2d(o->cache, (int64_t)batch, cur, nxt), "pyadr_reuse_cache_conv2d");
        check(pyadr_reuse_cache_get_stats(o->cache, &st), "cache stats");
        o->rc = st.last_rc;
      } else if (reuse) {
        pyadr_context* ctx = NULL;
        check(pyadr_conv2d_forward(&g, cur, L->w, L->b, o->cfg, nxt, &ctx), "pyadr_conv2d_forward (reuse)");
        check(pyadr_context_remaining_ratio(ctx, &o->rc), "rc");
        pyadr_context_free(ctx);
      } else {
        check(pyadr_conv2d_forward(&g, cur, L->w, L->b, NULL, nxt, NULL), "pyadr_conv2d_forward");
      }
      OC = L->out;
      OH = (size_t)oh;
      OW = (size_t)ow;
    } else {
      if (L->in != C * H * W) die("linear layer input features do not match (flattened NCHW)");
      check(pyadr_linear_forward((int64_t)batch, L->in, L->out, cur, L->w, L->b, reuse ? o->cfg : NULL, nxt, NULL),
            "pyadr_linear_forward");
      OC = L->out;
      OH = OW = 1;
    }
    if (reuse) o->reuse_layer_s = now_s() - t0;
    /* cur is consumed: from here on the two scratch buffers alternate */
    if (L->relu) nxt = relu_layer(nxt, batch * OC * OH * OW, bufA, bufB);
    if (L->lrn_pos == 1) nxt = lrn_layer(nxt, batch, OC, OH * OW, L, bufA, bufB);
    if (L->pool_k) nxt = maxpool_layer(nxt, batch, OC, &OH, &OW, L, bufA, bufB);
    if (L->lrn_pos == 2) nxt = lrn_layer(nxt, batch, OC, OH * OW, L, bufA, bufB);
    C = OC;
    H = OH;
    W = OW;
    cur = nxt;
    nxt = cur == bufA ? bufB : bufA;
  }
  memcpy(out, cur, batch * C * H * W * sizeof(float));
}

static size_t argmax(const float* v, size_t n) {
  size_t i, best = 0;
  for (i = 1; i < n; ++i)
    if (v[i] > v[best]) best = i;
  return best;
}

int main(int argc, char** argv) {
  const char *weights = NULL, *images = NULL, *labels = NULL, *dump = NULL;
  size_t batch = 64, reps = 5, i, r, classes, cap, Hc, Wc;
  int L = 32, H = 10, threads = 0, use_cache = 0, conv2 = -1, li;
  unsigned long long seed = 0;
  model m;
  float *x, *bufA, *bufB, *ye, *yr;
  double* planes;
  pyadr_reuse_config cfg;
  run_opts oe, orr;
  double te, tr, te_layer, tr_layer, maxdiff = 0, maxref = 0, rc_sum = 0;
  size_t agree = 0, correct_e = 0, correct_r = 0;
  unsigned char* lab = NULL;

  for (li = 1; li < argc; ++li) {
    const char* a = argv[li];
    const char* v = li + 1 < argc ? argv[li + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    }
    if (!strcmp(a, "--cache")) { use_cache = 1; continue; }
    if (!takes_value(a)) {
      fprintf(stderr, "pyadr_edge: unknown option %s\n", a);
      usage(stderr);
      return 2;
    }
    if (!v) {
      fprintf(stderr, "pyadr_edge: missing value after %s\n", a);
      usage(stderr);
      return 2;
    }
    if (!strcmp(a, "--weights")) weights = v;
    else if (!strcmp(a, "--images")) images = v;
    else if (!strcmp(a, "--labels")) labels = v;
    else if (!strcmp(a, "--dump")) dump = v;
    else if (!strcmp(a, "--batch")) batch = (size_t)strtoul(v, NULL, 10);
    else if (!strcmp(a, "--reps")) reps = (size_t)strtoul(v, NULL, 10);
    else if (!strcmp(a, "--L")) L = atoi(v);
    else if (!strcmp(a, "--H")) H = atoi(v);
    else if (!strcmp(a, "--threads")) threads = atoi(v);
    else seed = strtoull(v, NULL, 10); /* --seed */
    ++li;
  }
  if (batch < 1 || reps < 1) die("--batch and --reps must be >= 1");
  g_rng += seed;
  if (threads > 0) check(pyadr_set_num_threads(threads), "set_num_threads");
  if (weights) load_model(weights, &m);
  else random_model(&m);
  for (li = 0; li < (int)m.n; ++li)
    if (!strcmp(m.l[li].name, "conv2")) conv2 = li;
  if (conv2 < 0) die("the model has no layer named conv2");
  if (m.l[conv2].kind != KIND_CONV) die("conv2 is not a convolution");

  x = images ? load_idx_images(images, batch * reps, &m) : synthetic_images(batch * reps, &m);
  if (labels) lab = load_idx_labels(labels, batch * reps);

  /* scratch: the largest activation (conv outputs before pooling) */
  cap = (size_t)m.in_c * m.in_h * m.in_w;
  Hc = m.in_h;
  Wc = m.in_w;
  for (i = 0; i < m.n; ++i) {
    const layer* Ly = &m.l[i];
    if (Ly->kind == KIND_CONV) {
      Hc = (Hc + 2 * Ly->pad - Ly->kh) / Ly->stride + 1;
      Wc = (Wc + 2 * Ly->pad - Ly->kw) / Ly->stride + 1;
      if ((size_t)Ly->out * Hc * Wc > cap) cap = (size_t)Ly->out * Hc * Wc;
      if (Ly->pool_k) {
        Hc = (Hc + 2 * Ly->pool_p - Ly->pool_k) / Ly->pool_s + 1;
        Wc = (Wc + 2 * Ly->pool_p - Ly->pool_k) / Ly->pool_s + 1;
      }
    } else if (Ly->out > cap) {
      cap = Ly->out;
    }
  }
  classes = m.l[m.n - 1].out;
  bufA = (float*)xmalloc(batch * cap * sizeof(float));
  bufB = (float*)xmalloc(batch * cap * sizeof(float));
  ye = (float*)xmalloc(batch * reps * classes * sizeof(float));
  yr = (float*)xmalloc(batch * reps * classes * sizeof(float));

  planes = (double*)xmalloc((size_t)L * H * sizeof(double));
  check(pyadr_random_planes(planes, L, H, 1000 + seed), "random planes");
  pyadr_reuse_config_init(&cfg, L, H, planes);

  memset(&oe, 0, sizeof oe);
  oe.reuse_layer = -1;
  memset(&orr, 0, sizeof orr);
  orr.reuse_layer = conv2;
  orr.cfg = &cfg;
  if (use_cache) {
    const layer* c2 = &m.l[conv2];
    size_t hh = m.in_h, ww = m.in_w;
    pyadr_conv_geom g;
    /* conv2's input size: after conv1 (+pool) */
    const layer* c1 = &m.l[0];
    hh = (hh + 2 * c1->pad - c1->kh) / c1->stride + 1;
    ww = (ww + 2 * c1->pad - c1->kw) / c1->stride + 1;
    if (c1->pool_k) {
      hh = (hh + 2 * c1->pool_p - c1->pool_k) / c1->pool_s + 1;
      ww = (ww + 2 * c1->pool_p - c1->pool_k) / c1->pool_s + 1;
    }
    if (conv2 != 1) die("--cache expects conv2 to be the second layer");
    pyadr_conv_geom_init(&g, 1, c2->in, (int64_t)hh, (int64_t)ww, c2->out, c2->kh, c2->kw);
    g.stride_h = g.stride_w = c2->stride;
    g.pad_h = g.pad_w = c2->pad;
    check(pyadr_reuse_cache_create(&g, c2->w, c2->b, &cfg, 0, &orr.cache), "pyadr_reuse_cache_create");
  }

  printf("pyadr %s (simd %s, openmp %d, %d threads); model %s, %u layers; batch %zu; conv2 reuse L=%d H=%d%s\n",
         pyadr_version(), pyadr_simd_level(), pyadr_openmp_enabled(), pyadr_get_num_threads(),
         weights ? weights : "<random>", m.n, batch, L, H, use_cache ? " via the inference cache" : "");
  /* A stream of `reps` distinct batches: sums of times over the stream (first batch included, so
   * a cache starts cold). */
  te = tr = te_layer = tr_layer = 0;
  for (r = 0; r < reps; ++r) {
    const float* xr = x + r * batch * (size_t)m.in_c * m.in_h * m.in_w;
    double t0 = now_s(), t1;
    forward(&m, xr, batch, bufA, bufB, ye + r * batch * classes, &oe);
    t1 = now_s();
    te += t1 - t0;
    oe.reuse_layer = conv2; /* again, timing conv2 alone (cfg NULL: exact) */
    oe.cfg = NULL;
    forward(&m, xr, batch, bufA, bufB, ye + r * batch * classes, &oe);
    te_layer += oe.reuse_layer_s;
    oe.reuse_layer = -1;
    t0 = now_s();
    forward(&m, xr, batch, bufA, bufB, yr + r * batch * classes, &orr);
    t1 = now_s();
    tr += t1 - t0;
    tr_layer += orr.reuse_layer_s;
    rc_sum += orr.rc;
  }
  orr.rc = rc_sum / (double)reps;
  batch *= reps; /* statistics over the whole stream */
  for (i = 0; i < batch; ++i) {
    size_t k, ae = argmax(ye + i * classes, classes), ar = argmax(yr + i * classes, classes);
    agree += ae == ar;
    if (lab) {
      correct_e += ae == lab[i];
      correct_r += ar == lab[i];
    }
    for (k = 0; k < classes; ++k) {
      const double d = fabs((double)ye[i * classes + k] - (double)yr[i * classes + k]);
      if (d > maxdiff) maxdiff = d;
      if (fabs((double)ye[i * classes + k]) > maxref) maxref = fabs((double)ye[i * classes + k]);
    }
  }
  printf("stream of %zu batches; times summed over it\n", reps);
  printf("forward exact : %8.2f ms   (conv2 %7.2f ms)\n", 1e3 * te, 1e3 * te_layer);
  printf("forward reuse : %8.2f ms   (conv2 %7.2f ms, mean rc %.4f)   speed-up %.2fx (conv2 %.2fx)\n", 1e3 * tr,
         1e3 * tr_layer, orr.rc, te / tr, te_layer / tr_layer);
  printf("agreement     : top-1 %zu/%zu (%.1f %%), max |logit diff| %.4g (max |logit| %.4g)\n", agree, batch,
         100.0 * (double)agree / (double)batch, maxdiff, maxref);
  if (lab)
    printf("accuracy      : exact %.2f %%, reuse %.2f %%\n", 100.0 * (double)correct_e / (double)batch,
           100.0 * (double)correct_r / (double)batch);
  if (dump) { /* inputs then exact logits, raw float32 (host order), for cross-checks */
    FILE* f = fopen(dump, "wb");
    if (!f) die("cannot open the --dump file");
    fwrite(x, sizeof(float), batch * (size_t)m.in_c * m.in_h * m.in_w, f);
    fwrite(ye, sizeof(float), batch * classes, f);
    fclose(f);
  }
  if (orr.cache) {
    pyadr_reuse_cache_stats st;
    check(pyadr_reuse_cache_get_stats(orr.cache, &st), "cache stats");
    printf("cache         : %lld entries, hit rate %.3f over %lld lookups\n", (long long)st.entries,
           st.lookups ? (double)st.hits / (double)st.lookups : 0.0, (long long)st.lookups);
    pyadr_reuse_cache_free(orr.cache);
  }
  for (i = 0; i < m.n; ++i) {
    free(m.l[i].w);
    free(m.l[i].b);
  }
  free(x);
  free(bufA);
  free(bufB);
  free(ye);
  free(yr);
  free(planes);
  free(lab);
  return 0;
}
