/* C99 tests of the model runner (pyadr.h, "model runner"): a tiny hand-written model file
 * (conv -> ReLU -> LRN -> pool, conv -> LRN, linear) against a brute-force double forward, the
 * file read from memory and from a path, version 1 files, the input normalisation, reuse and the
 * reuse cache on a layer, workspaces across batch sizes, and every malformed file and bad
 * argument giving a clear status and message. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "c_check.h"
#include "pyadr/pyadr.h"
#include "pyadr/reuse_cache.h"

/* ---- a little-endian byte writer ---------------------------------------------------------- */
typedef struct {
  unsigned char data[4096];
  size_t n;
  size_t layer_at[3]; /* byte offset of each layer record (write_model) */
} buf;

static void put_u32(buf* b, uint32_t v) {
  int i;
  for (i = 0; i < 4; ++i) b->data[b->n++] = (unsigned char)(v >> (8 * i));
}
static void put_f32(buf* b, float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  put_u32(b, u);
}
static uint32_t get_u32(const buf* b, size_t at) {
  return (uint32_t)b->data[at] | (uint32_t)b->data[at + 1] << 8 | (uint32_t)b->data[at + 2] << 16 |
         (uint32_t)b->data[at + 3] << 24;
}
static void set_u32(buf* b, size_t at, uint32_t v) {
  int i;
  for (i = 0; i < 4; ++i) b->data[at + i] = (unsigned char)(v >> (8 * i));
}

/* ---- the tiny model ------------------------------------------------------------------------ */
typedef struct {
  uint32_t kind, out, in, kh, kw, stride, pad, has_bias, relu, pool_k, pool_s, pool_p, lrn_pos, lrn_size;
  float alpha, beta, k;
  const char* name;
  float w[64], b[8];
} spec;

/* input 1x5x5; c1: 3 ch 3x3 pad 1 -> ReLU -> LRN(3, 0.5, 0.75, 1) -> pool 3/2 pad 1 -> 3x3;
 * c2: 4 ch 2x2 stride 2 pad 1 -> 2x2 -> LRN(2, 1, 0.6, 2) (pos 2, no pool); fc: 16 -> 3, no bias */
static spec g_layers[3];
static const float g_mean = 0.5f, g_std = 0.25f;

static void make_specs(void) {
  spec* s = g_layers;
  int i;
  memset(g_layers, 0, sizeof g_layers);
  s[0].kind = 1, s[0].name = "c1", s[0].out = 3, s[0].in = 1, s[0].kh = s[0].kw = 3, s[0].stride = 1, s[0].pad = 1;
  s[0].has_bias = 1, s[0].relu = 1, s[0].pool_k = 3, s[0].pool_s = 2, s[0].pool_p = 1;
  s[0].lrn_pos = 1, s[0].lrn_size = 3, s[0].alpha = 0.5f, s[0].beta = 0.75f, s[0].k = 1.0f;
  s[1].kind = 1, s[1].name = "c2", s[1].out = 4, s[1].in = 3, s[1].kh = s[1].kw = 2, s[1].stride = 2, s[1].pad = 1;
  s[1].has_bias = 1, s[1].lrn_pos = 2, s[1].lrn_size = 2, s[1].alpha = 1.0f, s[1].beta = 0.6f, s[1].k = 2.0f;
  s[2].kind = 2, s[2].name = "fc", s[2].out = 3, s[2].in = 16, s[2].kh = s[2].kw = 1, s[2].stride = 1;
  for (i = 0; i < 64; ++i) {
    s[0].w[i] = (float)sin(0.7 * i + 0.3);
    s[1].w[i] = (float)cos(1.3 * i) * 0.8f;
    s[2].w[i] = (float)sin(2.1 * i + 1.0) * 0.5f;
  }
  for (i = 0; i < 8; ++i) s[0].b[i] = 0.1f * (float)i - 0.05f, s[1].b[i] = 0.2f - 0.1f * (float)i;
}

static void write_model(buf* b, uint32_t version) {
  int i;
  size_t j, nw;
  b->n = 0;
  memcpy(b->data, "PADR", 4);
  b->n = 4;
  put_u32(b, version);
  put_u32(b, 1), put_u32(b, 5), put_u32(b, 5), put_u32(b, 3);
  if (version >= 2) put_f32(b, g_mean), put_f32(b, g_std);
  for (i = 0; i < 3; ++i) {
    const spec* s = &g_layers[i];
    const size_t len = strlen(s->name);
    b->layer_at[i] = b->n;
    put_u32(b, s->kind), put_u32(b, (uint32_t)len);
    memcpy(b->data + b->n, s->name, len);
    b->n += len;
    put_u32(b, s->out), put_u32(b, s->in), put_u32(b, s->kh), put_u32(b, s->kw), put_u32(b, s->stride);
    put_u32(b, s->pad), put_u32(b, s->has_bias), put_u32(b, s->relu), put_u32(b, s->pool_k), put_u32(b, s->pool_s);
    put_u32(b, s->pool_p);
    if (version >= 2) put_u32(b, s->lrn_pos), put_u32(b, s->lrn_size), put_f32(b, s->alpha), put_f32(b, s->beta),
        put_f32(b, s->k);
    nw = (size_t)s->out * s->in * s->kh * s->kw;
    for (j = 0; j < nw; ++j) put_f32(b, s->w[j]);
    if (s->has_bias)
      for (j = 0; j < s->out; ++j) put_f32(b, s->b[j]);
  }
}

/* byte offset of u32 field `f` (0 = out, 1 = in, ..., 10 = pool_padding, 11 = lrn_pos) of layer i */
static size_t field_at(const buf* b, int i, int f) { return b->layer_at[i] + 8 + strlen(g_layers[i].name) + 4 * (size_t)f; }

/* ---- brute force forward in double --------------------------------------------------------- */
static void bf_conv(const spec* s, const double* x, int C, int H, int W, double* y, int* OH, int* OW) {
  int m, c, i, j, a, b;
  *OH = (H + 2 * (int)s->pad - (int)s->kh) / (int)s->stride + 1;
  *OW = (W + 2 * (int)s->pad - (int)s->kw) / (int)s->stride + 1;
  for (m = 0; m < (int)s->out; ++m)
    for (i = 0; i < *OH; ++i)
      for (j = 0; j < *OW; ++j) {
        double acc = s->has_bias ? s->b[m] : 0;
        for (c = 0; c < C; ++c)
          for (a = 0; a < (int)s->kh; ++a)
            for (b = 0; b < (int)s->kw; ++b) {
              const int r = i * (int)s->stride - (int)s->pad + a, q = j * (int)s->stride - (int)s->pad + b;
              if (r >= 0 && r < H && q >= 0 && q < W)
                acc += s->w[((m * C + c) * (int)s->kh + a) * (int)s->kw + b] * x[(c * H + r) * W + q];
            }
        y[(m * *OH + i) * *OW + j] = acc;
      }
}

static void bf_lrn(const spec* s, double* x, int C, int HW) {
  double t[256];
  int c, p, d;
  for (c = 0; c < C; ++c)
    for (p = 0; p < HW; ++p) {
      double sum = 0;
      for (d = c - (int)s->lrn_size / 2; d <= c + ((int)s->lrn_size - 1) / 2; ++d)
        if (d >= 0 && d < C) sum += x[d * HW + p] * x[d * HW + p];
      t[c * HW + p] = x[c * HW + p] * pow(s->k + s->alpha / s->lrn_size * sum, -(double)s->beta);
    }
  memcpy(x, t, sizeof(double) * (size_t)(C * HW));
}

static void bf_pool(const spec* s, const double* x, int C, int H, int W, double* y, int* OH, int* OW) {
  int c, i, j, a, b;
  *OH = (H + 2 * (int)s->pool_p - (int)s->pool_k) / (int)s->pool_s + 1;
  *OW = (W + 2 * (int)s->pool_p - (int)s->pool_k) / (int)s->pool_s + 1;
  for (c = 0; c < C; ++c)
    for (i = 0; i < *OH; ++i)
      for (j = 0; j < *OW; ++j) {
        double best = -INFINITY;
        for (a = 0; a < (int)s->pool_k; ++a)
          for (b = 0; b < (int)s->pool_k; ++b) {
            const int r = i * (int)s->pool_s - (int)s->pool_p + a, q = j * (int)s->pool_s - (int)s->pool_p + b;
            if (r >= 0 && r < H && q >= 0 && q < W && x[(c * H + r) * W + q] > best) best = x[(c * H + r) * W + q];
          }
        y[(c * *OH + i) * *OW + j] = best;
      }
}

/* one sample x (1, 5, 5) -> logits (3), all layers of g_layers */
static void bf_forward(const float* xin, double* logits) {
  double a[256], b[256];
  int C = 1, H = 5, W = 5, i, l, OH, OW;
  for (i = 0; i < 25; ++i) a[i] = xin[i];
  for (l = 0; l < 3; ++l) {
    const spec* s = &g_layers[l];
    if (s->kind == 2) {
      int o, f;
      for (o = 0; o < (int)s->out; ++o) {
        double acc = s->has_bias ? s->b[o] : 0;
        for (f = 0; f < (int)s->in; ++f) acc += s->w[o * (int)s->in + f] * a[f];
        b[o] = acc;
      }
      OH = OW = 1;
    } else {
      bf_conv(s, a, C, H, W, b, &OH, &OW);
    }
    C = (int)s->out, H = OH, W = OW;
    if (s->relu)
      for (i = 0; i < C * H * W; ++i) b[i] = b[i] < 0 ? 0 : b[i];
    if (s->lrn_pos == 1) bf_lrn(s, b, C, H * W);
    if (s->pool_k) {
      bf_pool(s, b, C, H, W, a, &OH, &OW);
      H = OH, W = OW;
      memcpy(b, a, sizeof(double) * (size_t)(C * H * W));
    }
    if (s->lrn_pos == 2) bf_lrn(s, b, C, H * W);
    memcpy(a, b, sizeof(double) * (size_t)(C * H * W));
  }
  for (i = 0; i < 3; ++i) logits[i] = a[i];
}

/* ---- tests ---------------------------------------------------------------------------------- */
#define NB 4
static float g_x[NB * 25];

static void make_inputs(void) {
  int i;
  for (i = 0; i < NB * 25; ++i) g_x[i] = (float)sin(0.37 * i * i + 0.1 * i) * 1.5f;
}

static void check_against_brute_force(pyadr_model* m, int batch) {
  float logits[NB * 3];
  double ref[3], scale = 0;
  int i, k;
  CHECK_OK(pyadr_model_forward(m, g_x, batch, logits));
  for (i = 0; i < batch; ++i) {
    bf_forward(g_x + 25 * i, ref);
    for (k = 0; k < 3; ++k) scale = fabs(ref[k]) > scale ? fabs(ref[k]) : scale;
    for (k = 0; k < 3; ++k) {
      if (!(fabs(logits[3 * i + k] - ref[k]) <= 1e-5 * (1 + fabs(ref[k])))) {
        fprintf(stderr, "sample %d logit %d: %.8g vs brute force %.8g\n", i, k, logits[3 * i + k], ref[k]);
        ++g_failures;
      }
    }
  }
  CHECK(scale > 1e-2); /* not a degenerate all-zero comparison */
}

static void test_forward_and_queries(const buf* file) {
  pyadr_model* m = NULL;
  int64_t c, h, w, out;
  int n, idx;
  pyadr_model_layer_info info;
  CHECK_OK(pyadr_model_load_memory(file->data, file->n, &m));
  if (!m) return;
  CHECK_OK(pyadr_model_input_shape(m, &c, &h, &w));
  CHECK(c == 1 && h == 5 && w == 5);
  CHECK_OK(pyadr_model_output_size(m, &out));
  CHECK(out == 3);
  CHECK_OK(pyadr_model_num_layers(m, &n));
  CHECK(n == 3);
  CHECK_OK(pyadr_model_find_layer(m, "c2", &idx));
  CHECK(idx == 1);
  CHECK_ERR(pyadr_model_find_layer(m, "conv9", &idx), PYADR_ERR_INVALID_ARGUMENT, "no layer named 'conv9' (layers: c1, c2, fc)");
  CHECK_OK(pyadr_model_get_layer_info(m, 0, &info));
  CHECK(!strcmp(info.name, "c1") && info.kind == PYADR_LAYER_CONV2D && info.mode == PYADR_LAYER_EXACT);
  CHECK(info.in_channels == 1 && info.in_height == 5 && info.out_channels == 3 && info.out_height == 3 &&
        info.out_width == 3);
  CHECK_OK(pyadr_model_get_layer_info(m, 2, &info));
  CHECK(info.kind == PYADR_LAYER_LINEAR && info.in_channels == 4 && info.in_height == 2 && info.out_channels == 3 &&
        info.out_height == 1);
  CHECK_ERR(pyadr_model_get_layer_info(m, 3, &info), PYADR_ERR_INVALID_ARGUMENT, "index must be in [0, 3), got 3");
  /* batch 1, then more (the workspaces grow), then 1 again (they are kept) */
  check_against_brute_force(m, 1);
  check_against_brute_force(m, NB);
  check_against_brute_force(m, 2);
  CHECK_OK(pyadr_model_get_layer_info(m, 1, &info));
  CHECK(info.last_seconds >= 0 && info.last_rc == 1.0);
  pyadr_model_free(m);
}

static void test_load_path(const buf* file) {
  const char* path = "test_model_runner.tmp.bin";
  FILE* f = fopen(path, "wb");
  pyadr_model *m = NULL, *mm = NULL;
  float a[NB * 3], b[NB * 3];
  CHECK(f != NULL);
  if (!f) return;
  fwrite(file->data, 1, file->n, f);
  fclose(f);
  CHECK_OK(pyadr_model_load(path, &m));
  CHECK_OK(pyadr_model_load_memory(file->data, file->n, &mm));
  if (m && mm) {
    CHECK_OK(pyadr_model_forward(m, g_x, NB, a));
    CHECK_OK(pyadr_model_forward(mm, g_x, NB, b));
    CHECK(!memcmp(a, b, sizeof a));
  }
  pyadr_model_free(m);
  pyadr_model_free(mm);
  remove(path);
  m = (pyadr_model*)&m;
  CHECK_ERR(pyadr_model_load("/nonexistent/dir/model.bin", &m), PYADR_ERR_INVALID_ARGUMENT,
            "cannot open '/nonexistent/dir/model.bin'");
  CHECK(m == NULL);
  CHECK_ERR(pyadr_model_load(".", &m), PYADR_ERR_INVALID_ARGUMENT, "'.' is not a regular file");
}

/* normalize: (pixel * (1/(255 std))) - mean/std in float, the trainer loader's arithmetic */
static void test_normalize(const buf* file) {
  pyadr_model* m = NULL;
  uint8_t px[2 * 25];
  float x[2 * 25];
  int i;
  const float scale = 1.0f / (255.0f * g_std), shift = g_mean / g_std;
  for (i = 0; i < 50; ++i) px[i] = (uint8_t)(i * 37 % 256);
  CHECK_OK(pyadr_model_load_memory(file->data, file->n, &m));
  if (!m) return;
  CHECK_OK(pyadr_model_normalize(m, px, 2, x));
  for (i = 0; i < 50; ++i) {
    volatile float v = (float)px[i] * scale; /* volatile: no FMA in the reference either */
    CHECK(x[i] == v - shift);
  }
  CHECK(fabs(x[0] + 2.0) < 1e-6 && fabs(x[1] - (37 / 255.0 - 0.5) / 0.25) < 1e-5);
  CHECK_ERR(pyadr_model_normalize(m, px, 0, x), PYADR_ERR_INVALID_ARGUMENT, "batch must be in [1,");
  CHECK_ERR(pyadr_model_normalize(m, NULL, 1, x), PYADR_ERR_INVALID_ARGUMENT, "pixels must not be NULL");
  pyadr_model_free(m);
}

/* version 1: no mean/std (Fashion-MNIST's), no LRN fields */
static void test_version1(void) {
  buf v1;
  pyadr_model* m = NULL;
  uint8_t px[25] = {0};
  float x[25];
  spec saved[3];
  memcpy(saved, g_layers, sizeof saved);
  g_layers[0].lrn_pos = g_layers[1].lrn_pos = 0;
  write_model(&v1, 1);
  CHECK_OK(pyadr_model_load_memory(v1.data, v1.n, &m));
  if (m) {
    px[1] = 255;
    CHECK_OK(pyadr_model_normalize(m, px, 1, x));
    CHECK(fabs(x[0] + 0.2860 / 0.3530) < 1e-6 && fabs(x[1] - (1 - 0.2860) / 0.3530) < 1e-5);
    check_against_brute_force(m, NB);
  }
  pyadr_model_free(m);
  memcpy(g_layers, saved, sizeof saved);
}

/* an l2 config with a bucket width far below the spread of the projections: distinct rows get
 * distinct keys (unlike the sign hash, which only sees directions and merges the sparse,
 * non-negative rows after a ReLU), so reuse computes the exact product up to summation order */
static void fine_l2_config(pyadr_reuse_config* cfg, double* planes, double* offsets, int L, uint64_t seed) {
  int h;
  pyadr_random_planes(planes, L, 64, seed);
  pyadr_reuse_config_init(cfg, L, 64, planes);
  cfg->hash = PYADR_HASH_L2;
  cfg->width = 1e-4;
  for (h = 0; h < 64; ++h) offsets[h] = 1e-4 * (h + 0.5) / 64;
  cfg->offsets = offsets;
}

static int close_to(const float* a, const float* b, int n, int period) {
  int i, ok = 1;
  for (i = 0; i < n; ++i) ok &= fabs(a[i] - b[i % period]) <= 1e-5 * (1 + fabs(b[i % period]));
  return ok;
}

static void test_reuse(const buf* file) {
  pyadr_model* m = NULL;
  pyadr_reuse_config cfg;
  double planes[27 * 64], offsets[64];
  float exact[NB * 3], r[NB * 3], r2[NB * 3], x2[NB * 25];
  pyadr_model_layer_info info;
  pyadr_reuse_cache* cache = NULL;
  pyadr_reuse_cache_stats st;
  int i;
  CHECK_OK(pyadr_model_load_memory(file->data, file->n, &m));
  if (!m) return;
  CHECK_OK(pyadr_model_forward(m, g_x, NB, exact));
  /* c2 (K = 3*2*2 = 12) with L = K and fine buckets: every distinct row its own cluster */
  fine_l2_config(&cfg, planes, offsets, 12, 5);
  CHECK_OK(pyadr_model_set_reuse(m, 1, &cfg));
  memset(planes, 0, sizeof planes); /* the model copied them */
  memset(offsets, 0, sizeof offsets);
  CHECK_OK(pyadr_model_forward(m, g_x, NB, r));
  CHECK_OK(pyadr_model_get_layer_info(m, 1, &info));
  CHECK(info.mode == PYADR_LAYER_REUSE && info.last_rc > 0.5 && info.last_rc <= 1.0);
  CHECK(close_to(r, exact, NB * 3, NB * 3));
  /* a batch of one image repeated: rows repeat, rc <= 1/NB, every copy gets the image's logits */
  for (i = 0; i < NB * 25; ++i) x2[i] = g_x[i % 25];
  CHECK_OK(pyadr_model_forward(m, x2, NB, r));
  CHECK_OK(pyadr_model_get_layer_info(m, 1, &info));
  CHECK(info.last_rc <= 1.0 / NB + 1e-12);
  CHECK(close_to(r, exact, NB * 3, 3));
  /* reuse on the linear layer too (K = 16) */
  fine_l2_config(&cfg, planes, offsets, 16, 6);
  CHECK_OK(pyadr_model_set_reuse(m, 2, &cfg));
  CHECK_OK(pyadr_model_forward(m, g_x, NB, r));
  CHECK(close_to(r, exact, NB * 3, NB * 3));
  /* back to exact: bit-identical */
  CHECK_OK(pyadr_model_set_reuse(m, 1, NULL));
  CHECK_OK(pyadr_model_set_reuse(m, 2, NULL));
  CHECK_OK(pyadr_model_forward(m, g_x, NB, r));
  CHECK(!memcmp(r, exact, sizeof r));
  CHECK_OK(pyadr_model_get_layer_info(m, 1, &info));
  CHECK(info.mode == PYADR_LAYER_EXACT && info.last_rc == 1.0);
  /* the reuse cache on c2 (sign hash): its first call equals plain reuse with the same config
   * (scope batch), a repeated call is all hits and bit-identical */
  CHECK_OK(pyadr_random_planes(planes, 12, 8, 7));
  pyadr_reuse_config_init(&cfg, 12, 8, planes);
  CHECK_OK(pyadr_model_set_reuse(m, 1, &cfg));
  CHECK_OK(pyadr_model_forward(m, g_x, NB, r2));
  CHECK_OK(pyadr_model_reuse_cache(m, 1, &cache));
  CHECK(cache == NULL);
  CHECK_OK(pyadr_model_set_reuse_cache(m, 1, &cfg, 0));
  CHECK_OK(pyadr_model_forward(m, g_x, NB, r));
  CHECK(close_to(r, r2, NB * 3, NB * 3));
  CHECK_OK(pyadr_model_forward(m, g_x, NB, x2));
  CHECK(!memcmp(r, x2, sizeof r));
  CHECK_OK(pyadr_model_reuse_cache(m, 1, &cache));
  CHECK(cache != NULL);
  if (cache) {
    CHECK_OK(pyadr_reuse_cache_get_stats(cache, &st));
    CHECK(st.calls == 2 && st.lookups > 0 && st.hits >= st.lookups / 2 && st.last_rc == 0.0);
  }
  CHECK_OK(pyadr_model_get_layer_info(m, 1, &info));
  CHECK(info.mode == PYADR_LAYER_REUSE_CACHE && info.last_rc == 0.0);
  /* bad settings */
  pyadr_reuse_config_init(&cfg, 13, 8, planes);
  CHECK_ERR(pyadr_model_set_reuse(m, 1, &cfg), PYADR_ERR_INVALID_ARGUMENT, "cfg->L must be in [1, K=12], got 13");
  pyadr_reuse_config_init(&cfg, 4, 8, NULL);
  CHECK_ERR(pyadr_model_set_reuse(m, 0, &cfg), PYADR_ERR_INVALID_ARGUMENT, "planes");
  pyadr_reuse_config_init(&cfg, 4, 8, planes);
  CHECK_ERR(pyadr_model_set_reuse(m, 7, &cfg), PYADR_ERR_INVALID_ARGUMENT, "index must be in [0, 3), got 7");
  CHECK_ERR(pyadr_model_set_reuse_cache(m, 2, &cfg, 0), PYADR_ERR_INVALID_ARGUMENT, "(fc) is linear");
  cfg.hash = PYADR_HASH_L2;
  CHECK_ERR(pyadr_model_set_reuse_cache(m, 1, &cfg, 0), PYADR_ERR_INVALID_ARGUMENT, "PYADR_HASH_SIGN only");
  CHECK_ERR(pyadr_model_set_reuse_cache(m, 1, NULL, 0), PYADR_ERR_INVALID_ARGUMENT, "cfg must not be NULL");
  /* a failed setting leaves the layer as it was (still the cache) */
  CHECK_OK(pyadr_model_get_layer_info(m, 1, &info));
  CHECK(info.mode == PYADR_LAYER_REUSE_CACHE);
  pyadr_model_free(m);
}

static void test_bad_arguments(const buf* file) {
  pyadr_model* m = NULL;
  float logits[NB * 3], xy[200];
  int64_t v;
  int n;
  CHECK_ERR(pyadr_model_load_memory(NULL, 10, &m), PYADR_ERR_INVALID_ARGUMENT, "data must not be NULL");
  CHECK_ERR(pyadr_model_load_memory(file->data, file->n, NULL), PYADR_ERR_INVALID_ARGUMENT, "out must not be NULL");
  CHECK_ERR(pyadr_model_load(NULL, &m), PYADR_ERR_INVALID_ARGUMENT, "path must not be NULL");
  CHECK_ERR(pyadr_model_forward(NULL, g_x, 1, logits), PYADR_ERR_INVALID_ARGUMENT, "model must not be NULL");
  CHECK_ERR(pyadr_model_output_size(NULL, &v), PYADR_ERR_INVALID_ARGUMENT, "model must not be NULL");
  CHECK_ERR(pyadr_model_num_layers(NULL, &n), PYADR_ERR_INVALID_ARGUMENT, "model must not be NULL");
  pyadr_model_free(NULL);
  CHECK_OK(pyadr_model_load_memory(file->data, file->n, &m));
  if (!m) return;
  CHECK_ERR(pyadr_model_forward(m, g_x, 0, logits), PYADR_ERR_INVALID_ARGUMENT, "batch must be >= 1, got 0");
  CHECK_ERR(pyadr_model_forward(m, NULL, 1, logits), PYADR_ERR_INVALID_ARGUMENT, "x must not be NULL");
  CHECK_ERR(pyadr_model_forward(m, g_x, 1, NULL), PYADR_ERR_INVALID_ARGUMENT, "logits must not be NULL");
  CHECK_ERR(pyadr_model_forward(m, g_x, INT64_MAX / 2, logits), PYADR_ERR_INVALID_ARGUMENT, "too large");
  memcpy(xy, g_x, 2 * 25 * sizeof(float));
  CHECK_ERR(pyadr_model_forward(m, xy, 2, xy + 40), PYADR_ERR_INVALID_ARGUMENT, "x and logits must not overlap");
  CHECK_OK(pyadr_model_forward(m, xy, 2, xy + 50)); /* adjacent is fine */
  CHECK_ERR(pyadr_model_output_size(m, NULL), PYADR_ERR_INVALID_ARGUMENT, "size must not be NULL");
  pyadr_model_free(m);
}

/* load_memory of `b` must fail with INVALID_ARGUMENT and a message containing needle */
static void expect_bad(const buf* b, const char* needle, int line) {
  pyadr_model* m = (pyadr_model*)&m;
  pyadr_status s;
  pyadr_clear_error();
  s = pyadr_model_load_memory(b->data, b->n, &m);
  if (s != PYADR_ERR_INVALID_ARGUMENT || !strstr(pyadr_last_error(), needle) || m != NULL) {
    fprintf(stderr, "%s:%d: bad file -> %d (\"%s\"), expected %d with \"%s\"\n", __FILE__, line, (int)s,
            pyadr_last_error(), (int)PYADR_ERR_INVALID_ARGUMENT, needle);
    ++g_failures;
  }
  if (s == PYADR_OK) pyadr_model_free(m);
}
#define EXPECT_BAD(b, needle) expect_bad((b), (needle), __LINE__)

/* the good file with u32 at `at` replaced by v */
static void expect_patched(const buf* good, size_t at, uint32_t v, const char* needle, int line) {
  buf b = *good;
  set_u32(&b, at, v);
  expect_bad(&b, needle, line);
}
#define EXPECT_PATCHED(at, v, needle) expect_patched(file, (at), (v), (needle), __LINE__)

static void test_bad_files(const buf* file) {
  buf b;
  size_t n;
  /* every proper prefix is a truncated (or, shorter than the magic, not a) weights file */
  for (n = 0; n < file->n; ++n) {
    b = *file;
    b.n = n;
    EXPECT_BAD(&b, n < 4 ? "magic" : "truncated");
  }
  b = *file;
  b.data[b.n++] = 0;
  EXPECT_BAD(&b, "memory: 1 trailing bytes after the last layer");
  b = *file;
  memcpy(b.data, "PADX", 4);
  EXPECT_BAD(&b, "not a pyadr weights file (magic must be \"PADR\")");
  EXPECT_PATCHED(4, 3, "unsupported version 3");
  EXPECT_PATCHED(8, 0, "in_c must be in [1, 65536], got 0");
  EXPECT_PATCHED(8, 0xFFFFFFFFu, "in_c must be in [1, 65536], got 4294967295");
  EXPECT_PATCHED(12, 0, "in_h must be in [1,");
  EXPECT_PATCHED(20, 0xFFFFFFFFu, "layer count must be in [1, 1024], got 4294967295");
  EXPECT_PATCHED(20, 0, "layer count must be in [1, 1024], got 0");
  EXPECT_PATCHED(20, 4, "truncated: layers[3].kind");
  EXPECT_PATCHED(20, 2, "trailing bytes");
  EXPECT_PATCHED(28, 0, "std[0] must be finite and > 0");
  EXPECT_PATCHED(24, 0x7FC00000u, "mean[0] must be finite");
  EXPECT_PATCHED(file->layer_at[0], 3, "layers[0].kind (1 conv2d, 2 linear) must be in [1, 2], got 3");
  EXPECT_PATCHED(file->layer_at[0] + 4, 64, "layers[0].name_len must be < 64, got 64");
  EXPECT_PATCHED(file->layer_at[0] + 4, 0xFFFFFFFFu, "layers[0].name_len must be < 64");
  EXPECT_PATCHED(field_at(file, 0, 0), 0, "layers[0] (c1).out must be in [1,");
  EXPECT_PATCHED(field_at(file, 0, 1), 2, "layers[0] (c1).in = 2 does not match the 1 channels");
  EXPECT_PATCHED(field_at(file, 1, 1), 4, "layers[1] (c2).in = 4 does not match the 3 channels the previous stage produces");
  EXPECT_PATCHED(field_at(file, 2, 1), 15, "layers[2] (fc).in = 15 does not match the 16 features (4x2x2 flattened)");
  EXPECT_PATCHED(field_at(file, 0, 2), 9, "layers[0] (c1): its convolution does not fit its 5x5 input");
  EXPECT_PATCHED(field_at(file, 0, 4), 0, "layers[0] (c1).stride must be in [1,");
  EXPECT_PATCHED(field_at(file, 0, 6), 2, "layers[0] (c1).has_bias must be in [0, 1], got 2");
  EXPECT_PATCHED(field_at(file, 0, 7), 7, "layers[0] (c1).relu must be in [0, 1]");
  EXPECT_PATCHED(field_at(file, 0, 8), 9, "layers[0] (c1).pool_k = 9 is larger than the padded 5x5 output");
  EXPECT_PATCHED(field_at(file, 0, 9), 0, "layers[0] (c1).pool_stride must be in [1,");
  EXPECT_PATCHED(field_at(file, 0, 10), 2, "layers[0] (c1).pool_padding = 2 must be at most half of pool_k = 3");
  EXPECT_PATCHED(field_at(file, 0, 11), 3, "layers[0] (c1).lrn_pos must be in [0, 2], got 3");
  EXPECT_PATCHED(field_at(file, 0, 12), 0, "layers[0] (c1).lrn_size must be in [1,");
  EXPECT_PATCHED(field_at(file, 0, 13), 0xBF800000u, "layers[0] (c1).lrn_alpha must be finite and >= 0");
  EXPECT_PATCHED(field_at(file, 0, 14), 0x7F800000u, "layers[0] (c1).lrn_beta must be finite");
  EXPECT_PATCHED(field_at(file, 0, 15), 0, "layers[0] (c1).lrn_k must be finite and > 0");
  EXPECT_PATCHED(field_at(file, 2, 2), 3, "layers[2] (fc): a linear layer has kh = kw = 1, stride 1, padding 0");
  EXPECT_PATCHED(field_at(file, 2, 8), 2, "layers[2] (fc).pool_k must be 0 on a linear layer");
  EXPECT_PATCHED(field_at(file, 2, 11), 1, "layers[2] (fc).lrn_pos must be 0 on a linear layer");
  /* huge counts: the weights of a 2^31-1-output linear layer are checked against the bytes left
   * (no allocation), a huge conv output against the per-sample bound */
  EXPECT_PATCHED(field_at(file, 2, 0), 0x7FFFFFFFu, "truncated: layers[2] (fc).weight needs 34359738352 floats");
  EXPECT_PATCHED(field_at(file, 0, 0), 0x7FFFFFFFu, "layers[0] (c1)'s output has more than 2^31-1 elements per sample");
  EXPECT_PATCHED(field_at(file, 0, 0), 0x80000000u, "layers[0] (c1).out must be in [1, 2147483647], got 2147483648");
  {
    buf bias = *file; /* has_bias on fc: its bias runs past the end */
    set_u32(&bias, field_at(file, 2, 6), 1);
    EXPECT_BAD(&bias, "truncated: layers[2] (fc).bias needs 3 floats");
  }
}

int main(void) {
  buf file;
  make_specs();
  make_inputs();
  write_model(&file, 2);
  CHECK(get_u32(&file, 4) == 2);
  test_forward_and_queries(&file);
  test_load_path(&file);
  test_normalize(&file);
  test_version1();
  test_reuse(&file);
  test_bad_arguments(&file);
  test_bad_files(&file);
  if (g_failures) fprintf(stderr, "%d check(s) failed\n", g_failures);
  else printf("test_model_runner: all checks passed\n");
  return g_failures ? 1 : 0;
}
