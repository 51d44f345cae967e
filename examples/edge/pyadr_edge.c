/* pyadr edge example: a model exported by pyadr (or a random CifarNet) run in plain C through the
 * pyadr C API's model runner (pyadr.h, "model runner": pyadr_model_load, pyadr_model_forward).
 *
 * This file is only argument parsing, input and output: the weights file reader, the layers
 * (convolutions, linear layers, ReLU, max-pooling, LRN) and the input normalisation are the
 * library's. Weights come from a pyadr weights file (docs/edge.md; `pyadr export` writes one from
 * a trainer checkpoint) or, without --weights, are a random He-initialised CifarNet for the
 * Fashion-MNIST shape 1x28x28 (written to memory in the same format and loaded from there):
 *   conv1 5x5 64 -> ReLU -> maxpool 3x3/2 -> conv2 5x5 64 -> ReLU -> maxpool 3x3/2
 *   -> FC 384 -> ReLU -> FC 192 -> ReLU -> FC 10
 * Inputs come from an uncompressed IDX image file (--images, e.g. gunzipped
 * t10k-images-idx3-ubyte), normalised by pyadr_model_normalize as the trainer does, or are
 * synthetic smooth images. A stream of --reps batches of --batch images runs twice: all layers
 * exact, then one layer (--layer, default conv2) with deep reuse (with --cache: through the
 * persistent inference reuse cache, which keeps centroid products across batches). It prints the
 * total time of each, of that layer alone, its mean remaining ratio and the agreement of the
 * logits with exact.
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

static void die(const char* msg) {
  fprintf(stderr, "pyadr_edge: %s\n", msg);
  exit(1);
}

static void usage(FILE* out) {
  fputs("usage: pyadr_edge [--weights FILE] [--images FILE.idx] [--labels FILE.idx] [--batch N]\n"
        "                  [--reps R] [--layer NAME] [--L L] [--H H] [--threads T] [--cache] [--seed S]\n"
        "                  [--dump FILE]\n"
        "\n"
        "Runs a model over the pyadr C API's model runner on a stream of R batches of N images, once\n"
        "exact and once with deep reuse on one layer, and prints times, remaining ratio and agreement.\n"
        "\n"
        "  --weights FILE    pyadr weights file (pyadr export); default: random He-initialised CifarNet\n"
        "  --images FILE     uncompressed IDX3 ubyte images (gunzip t10k-images-idx3-ubyte.gz first);\n"
        "                    default: synthetic smooth images\n"
        "  --labels FILE     uncompressed IDX1 ubyte labels: also print the accuracy of both passes\n"
        "  --batch N         images per batch (default 64)\n"
        "  --reps R          batches in the stream (default 5)\n"
        "  --layer NAME      the layer run with deep reuse (default conv2)\n"
        "  --L L, --H H      its sub-vector length and hash bits (default 32, 10)\n"
        "  --threads T       threads of the kernels (default: OpenMP's)\n"
        "  --cache           run that layer through the inference reuse cache (pyadr/reuse_cache.h)\n"
        "  --seed S          seed of the synthetic data, random weights and hash planes (default 0)\n"
        "  --dump FILE       write the inputs (normalised), then the exact logits, as raw float32\n"
        "  --help, -h        print this and exit\n",
        out);
}

static int takes_value(const char* opt) {
  static const char* const opts[] = {"--weights", "--images", "--labels",  "--dump", "--batch", "--reps",
                                     "--layer",   "--L",      "--H",       "--threads", "--seed"};
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

static uint64_t g_rng = 0x1234567ULL;
static double urand(void) {
  g_rng = g_rng * 6364136223846793005ULL + 1442695040888963407ULL;
  return ((double)(g_rng >> 11) + 0.5) / 9007199254740992.0;
}
static double nrand(void) { return sqrt(-2.0 * log(urand())) * cos(6.283185307179586 * urand()); }

/* ---- a random CifarNet, written in the weights format (docs/edge.md) to memory ---------------- */
typedef struct {
  unsigned char* p;
  size_t n;
} bytes;

static void put_u32(bytes* b, uint32_t v) {
  int i;
  for (i = 0; i < 4; ++i) b->p[b->n++] = (unsigned char)(v >> (8 * i));
}
static void put_f32(bytes* b, float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  put_u32(b, u);
}

/* one layer record: kind 1 conv / 2 linear, square kernel k, stride 1, He-initialised weights,
 * bias 0.01, ReLU, max-pool 3/2 pad 1 if pool, no LRN */
static void put_layer(bytes* b, uint32_t kind, const char* name, uint32_t out, uint32_t in, uint32_t k, uint32_t pad,
                      uint32_t relu, uint32_t pool) {
  const size_t len = strlen(name), nw = (size_t)out * in * k * k;
  const double sd = sqrt(2.0 / (double)(in * k * k));
  size_t i;
  put_u32(b, kind);
  put_u32(b, (uint32_t)len);
  memcpy(b->p + b->n, name, len);
  b->n += len;
  put_u32(b, out), put_u32(b, in), put_u32(b, k), put_u32(b, k), put_u32(b, 1), put_u32(b, pad);
  put_u32(b, 1), put_u32(b, relu), put_u32(b, pool ? 3 : 0), put_u32(b, pool ? 2 : 0), put_u32(b, pool ? 1 : 0);
  put_u32(b, 0), put_u32(b, 0), put_f32(b, 0), put_f32(b, 0), put_f32(b, 0); /* no LRN */
  for (i = 0; i < nw; ++i) put_f32(b, (float)(sd * nrand()));
  for (i = 0; i < out; ++i) put_f32(b, 0.01f);
}

/* CifarNet for 1x28x28 inputs: 28 -> pool 14 -> pool 7, 64*7*7 = 3136 features. */
static pyadr_model* random_cifarnet(void) {
  bytes b;
  pyadr_model* m = NULL;
  b.p = (unsigned char*)xmalloc(8u << 20); /* 1.3 M floats + headers */
  b.n = 0;
  memcpy(b.p, "PADR", 4);
  b.n = 4;
  put_u32(&b, 2), put_u32(&b, 1), put_u32(&b, 28), put_u32(&b, 28), put_u32(&b, 5);
  put_f32(&b, 0.2860f), put_f32(&b, 0.3530f); /* Fashion-MNIST's mean, std */
  put_layer(&b, 1, "conv1", 64, 1, 5, 2, 1, 1);
  put_layer(&b, 1, "conv2", 64, 64, 5, 2, 1, 1);
  put_layer(&b, 2, "fc1", 384, 64 * 7 * 7, 1, 0, 1, 0);
  put_layer(&b, 2, "fc2", 192, 384, 1, 0, 1, 0);
  put_layer(&b, 2, "fc3", 10, 192, 1, 0, 0, 0);
  check(pyadr_model_load_memory(b.p, b.n, &m), "pyadr_model_load_memory");
  free(b.p);
  return m;
}

/* ---- inputs ------------------------------------------------------------------------------- */
static uint32_t rd_be32(FILE* f) {
  unsigned char b[4];
  if (fread(b, 1, 4, f) != 4) die("IDX file truncated");
  return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | (uint32_t)b[3];
}

/* Uncompressed IDX (ubyte) images -> floats normalised by the library as the trainer does. */
static float* load_idx_images(const char* path, size_t count, pyadr_model* m) {
  FILE* f = fopen(path, "rb");
  uint32_t n, h, w;
  int64_t mc, mh, mw;
  size_t per;
  unsigned char* raw;
  float* x;
  if (!f) die("cannot open the images file");
  if (rd_be32(f) != 0x00000803) die("images file is not an uncompressed IDX3 ubyte file (gunzip it first)");
  n = rd_be32(f);
  h = rd_be32(f);
  w = rd_be32(f);
  check(pyadr_model_input_shape(m, &mc, &mh, &mw), "pyadr_model_input_shape");
  if (mc != 1 || h != mh || w != mw) die("image shape does not match the model input");
  if (count > n) die("--batch x --reps exceeds the number of images");
  per = (size_t)h * w;
  raw = (unsigned char*)xmalloc(count * per);
  if (fread(raw, 1, count * per, f) != count * per) die("IDX file truncated");
  fclose(f);
  x = (float*)xmalloc(count * per * sizeof(float));
  check(pyadr_model_normalize(m, raw, (int64_t)count, x), "pyadr_model_normalize");
  free(raw);
  return x;
}

static unsigned char* load_idx_labels(const char* path, size_t count) {
  FILE* f = fopen(path, "rb");
  unsigned char* y;
  if (!f) die("cannot open the labels file");
  if (rd_be32(f) != 0x00000801) die("labels file is not an uncompressed IDX1 ubyte file");
  if (rd_be32(f) < count) die("--batch x --reps exceeds the number of labels");
  y = (unsigned char*)xmalloc(count);
  if (fread(y, 1, count, f) != count) die("IDX file truncated");
  fclose(f);
  return y;
}

/* Smooth synthetic images (a few Gaussian blobs each): unlike white noise they have the local
 * similarity deep reuse exploits. */
static float* synthetic_images(size_t count, size_t C, size_t H, size_t W) {
  float* x = (float*)xmalloc(count * C * H * W * sizeof(float));
  size_t b, c, i, j, k;
  for (b = 0; b < count; ++b)
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

static size_t argmax(const float* v, size_t n) {
  size_t i, best = 0;
  for (i = 1; i < n; ++i)
    if (v[i] > v[best]) best = i;
  return best;
}

/* The stream through the model: logits (reps*batch, classes); sums of the time of the whole
 * forward and of `layer` alone, and of its remaining ratio. */
static void run_stream(pyadr_model* m, const float* x, size_t batch, size_t reps, size_t per, size_t classes,
                       int layer, float* logits, double* total_s, double* layer_s, double* rc_sum) {
  size_t r;
  pyadr_model_layer_info info;
  *total_s = *layer_s = *rc_sum = 0;
  for (r = 0; r < reps; ++r) {
    const double t0 = now_s();
    check(pyadr_model_forward(m, x + r * batch * per, (int64_t)batch, logits + r * batch * classes),
          "pyadr_model_forward");
    *total_s += now_s() - t0;
    check(pyadr_model_get_layer_info(m, layer, &info), "pyadr_model_get_layer_info");
    *layer_s += info.last_seconds;
    *rc_sum += info.last_rc;
  }
}

int main(int argc, char** argv) {
  const char *weights = NULL, *images = NULL, *labels = NULL, *dump = NULL, *layer_name = "conv2";
  size_t batch = 64, reps = 5, i, classes, per, total;
  int L = 32, H = 10, threads = 0, use_cache = 0, layer = -1, nlayers, li;
  unsigned long long seed = 0;
  pyadr_model* m = NULL;
  int64_t in_c, in_h, in_w, out_size;
  float *x, *ye, *yr;
  double* planes;
  pyadr_reuse_config cfg;
  double te, tr, te_layer, tr_layer, rc_sum, rc_exact /* 1 */, maxdiff = 0, maxref = 0;
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
    else if (!strcmp(a, "--layer")) layer_name = v;
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
  if (weights) check(pyadr_model_load(weights, &m), "pyadr_model_load");
  else m = random_cifarnet();
  check(pyadr_model_find_layer(m, layer_name, &layer), "--layer");
  check(pyadr_model_num_layers(m, &nlayers), "pyadr_model_num_layers");
  check(pyadr_model_input_shape(m, &in_c, &in_h, &in_w), "pyadr_model_input_shape");
  check(pyadr_model_output_size(m, &out_size), "pyadr_model_output_size");
  per = (size_t)(in_c * in_h * in_w);
  classes = (size_t)out_size;
  total = batch * reps;

  x = images ? load_idx_images(images, total, m) : synthetic_images(total, (size_t)in_c, (size_t)in_h, (size_t)in_w);
  if (labels) lab = load_idx_labels(labels, total);
  ye = (float*)xmalloc(total * classes * sizeof(float));
  yr = (float*)xmalloc(total * classes * sizeof(float));

  planes = (double*)xmalloc((size_t)(L > 0 ? L : 1) * (size_t)(H > 0 ? H : 1) * sizeof(double));
  check(pyadr_random_planes(planes, L, H, 1000 + seed), "random planes");
  pyadr_reuse_config_init(&cfg, L, H, planes);

  printf("pyadr %s (simd %s, openmp %d, %d threads); model %s, %d layers; batch %zu; %s reuse L=%d H=%d%s\n",
         pyadr_version(), pyadr_simd_level(), pyadr_openmp_enabled(), pyadr_get_num_threads(),
         weights ? weights : "<random>", nlayers, batch, layer_name, L, H, use_cache ? " via the inference cache" : "");
  /* A stream of `reps` distinct batches, all exact, then with reuse on the layer: sums of times
   * over the stream (first batch included, so a cache starts cold). */
  run_stream(m, x, batch, reps, per, classes, layer, ye, &te, &te_layer, &rc_exact);
  if (use_cache) check(pyadr_model_set_reuse_cache(m, layer, &cfg, 0), "pyadr_model_set_reuse_cache");
  else check(pyadr_model_set_reuse(m, layer, &cfg), "pyadr_model_set_reuse");
  run_stream(m, x, batch, reps, per, classes, layer, yr, &tr, &tr_layer, &rc_sum);
  for (i = 0; i < total; ++i) {
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
  printf("forward exact : %8.2f ms   (%s %7.2f ms)\n", 1e3 * te, layer_name, 1e3 * te_layer);
  printf("forward reuse : %8.2f ms   (%s %7.2f ms, mean rc %.4f)   speed-up %.2fx (%s %.2fx)\n", 1e3 * tr,
         layer_name, 1e3 * tr_layer, rc_sum / (double)reps, te / tr, layer_name, te_layer / tr_layer);
  printf("agreement     : top-1 %zu/%zu (%.1f %%), max |logit diff| %.4g (max |logit| %.4g)\n", agree, total,
         100.0 * (double)agree / (double)total, maxdiff, maxref);
  if (lab)
    printf("accuracy      : exact %.2f %%, reuse %.2f %%\n", 100.0 * (double)correct_e / (double)total,
           100.0 * (double)correct_r / (double)total);
  if (dump) { /* inputs then exact logits, raw float32 (host order), for cross-checks */
    FILE* f = fopen(dump, "wb");
    if (!f) die("cannot open the --dump file");
    fwrite(x, sizeof(float), total * per, f);
    fwrite(ye, sizeof(float), total * classes, f);
    fclose(f);
  }
  if (use_cache) {
    pyadr_reuse_cache* cache = NULL;
    pyadr_reuse_cache_stats st;
    check(pyadr_model_reuse_cache(m, layer, &cache), "pyadr_model_reuse_cache");
    check(pyadr_reuse_cache_get_stats(cache, &st), "cache stats");
    printf("cache         : %lld entries, hit rate %.3f over %lld lookups\n", (long long)st.entries,
           st.lookups ? (double)st.hits / (double)st.lookups : 0.0, (long long)st.lookups);
  }
  pyadr_model_free(m);
  free(x);
  free(ye);
  free(yr);
  free(planes);
  free(lab);
  return 0;
}
