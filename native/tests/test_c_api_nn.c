/* Unit tests of the C API's nn ops (pyadr/pyadr.h, "nn ops"), in plain C99.
 *
 * Max-pooling: hand-checked windows, ties, padding that never wins, NaN, a brute-force reference
 * on random data (values and argmax), backward routing every gradient to its argmax.
 * LRN: the formula written out directly, and the backward against central finite differences.
 * ReLU: hand-checked forward and backward. Both dtypes throughout; results independent of the
 * thread count (bit for bit). Bad arguments (NULL, sizes, windows larger than the padded input,
 * stale argmax, overlapping buffers) give PYADR_ERR_INVALID_ARGUMENT and a message naming the
 * function and the argument. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "c_check.h"
#include "pyadr/pyadr.h"

/* expr must fail with PYADR_ERR_INVALID_ARGUMENT and a message containing both needles. */
#define CHECK_BAD(expr, fn, needle)                                                                       \
  do {                                                                                                    \
    pyadr_clear_error();                                                                                  \
    pyadr_status st_ = (expr);                                                                            \
    if (st_ != PYADR_ERR_INVALID_ARGUMENT || strstr(pyadr_last_error(), (fn)) == NULL ||                  \
        strstr(pyadr_last_error(), (needle)) == NULL) {                                                   \
      fprintf(stderr, "%s:%d: %s -> %d (\"%s\"), expected PYADR_ERR_INVALID_ARGUMENT with \"%s\", \"%s\"\n", \
              __FILE__, __LINE__, #expr, (int)st_, pyadr_last_error(), (fn), (needle));                   \
      ++g_failures;                                                                                       \
    }                                                                                                     \
  } while (0)

static unsigned long long g_rng = 777;
static double urand(void) { /* [0, 1) */
  g_rng = g_rng * 6364136223846793005ULL + 1442695040888963407ULL;
  return (double)(g_rng >> 11) / 9007199254740992.0;
}

/* ---- max-pooling ------------------------------------------------------------------------- */

/* 1x1x4x4 input, 2x2 windows, stride 2: the four quadrant maxima and where they are. */
static void test_maxpool_hand(void) {
  const float x[16] = {1, 5, 2, 0,  /* row 0 */
                       3, 4, 7, 7,  /* row 1: a tie 7/7 in the right-top window -> first one (index 6) */
                       -1, -2, 9, 8, /* row 2 */
                       -3, -4, 8, 9};
  const float y_ref[4] = {5, 7, -1, 9};
  const int32_t a_ref[4] = {1, 6, 8, 10};
  const float dy[4] = {10, 20, 30, 40};
  float y[4], dx[16];
  int32_t a[4];
  pyadr_pool_geom g;
  int64_t oh = 0, ow = 0;
  int i;
  pyadr_pool_geom_init(&g, 1, 1, 4, 4, 2, 2);
  CHECK(g.stride_h == 2 && g.stride_w == 2 && g.pad_h == 0 && g.pad_w == 0);
  CHECK_OK(pyadr_maxpool2d_output_shape(&g, &oh, &ow));
  CHECK(oh == 2 && ow == 2);
  CHECK_OK(pyadr_maxpool2d_forward(&g, x, y, a));
  for (i = 0; i < 4; ++i) {
    CHECK(y[i] == y_ref[i]);
    CHECK(a[i] == a_ref[i]);
  }
  for (i = 0; i < 16; ++i) dx[i] = 123.0f; /* the backward overwrites, it does not accumulate */
  CHECK_OK(pyadr_maxpool2d_backward(&g, dy, a, dx));
  for (i = 0; i < 16; ++i) {
    const float want = i == 1 ? 10.0f : i == 6 ? 20.0f : i == 8 ? 30.0f : i == 10 ? 40.0f : 0.0f;
    CHECK(dx[i] == want);
  }
  /* inference: no argmax */
  memset(y, 0, sizeof y);
  CHECK_OK(pyadr_maxpool2d_forward(&g, x, y, NULL));
  CHECK(y[0] == 5 && y[3] == 9);
}

/* 3x3 windows, stride 2, padding 1 on an all-negative 1x2x4x4 input: padding never wins, and
 * overlapping windows (stride < kernel) route two gradients to one shared maximum. Also float64
 * and NaN propagation. */
static void test_maxpool_pad_overlap_f64_nan(void) {
  double x[2 * 16], y[2 * 4], dy[2 * 4], dx[2 * 16];
  int32_t a[2 * 4];
  pyadr_pool_geom g;
  int64_t oh, ow;
  int i;
  for (i = 0; i < 32; ++i) x[i] = -100.0 - i;
  x[5] = -1.0; /* plane 0, (1, 1): the maximum of every window that holds it */
  pyadr_pool_geom_init(&g, 1, 2, 4, 4, 3, 3);
  g.stride_h = g.stride_w = 2;
  g.pad_h = g.pad_w = 1;
  CHECK_OK(pyadr_maxpool2d_output_shape(&g, &oh, &ow));
  CHECK(oh == 2 && ow == 2);
  CHECK_OK(pyadr_maxpool2d_forward_f64(&g, x, y, a));
  /* plane 0: windows rows/cols [-1,1] and [1,3]: all four hold (1, 1) */
  for (i = 0; i < 4; ++i) {
    CHECK(y[i] == -1.0);
    CHECK(a[i] == 5);
  }
  /* plane 1 (values -116 - r*4 - c): the maximum is each window's top-left in-bounds element */
  CHECK(y[4] == -116.0 && a[4] == 0);
  CHECK(y[5] == -117.0 && a[5] == 1);
  CHECK(y[6] == -120.0 && a[6] == 4);
  CHECK(y[7] == -121.0 && a[7] == 5);
  for (i = 0; i < 8; ++i) dy[i] = (double)(i + 1);
  CHECK_OK(pyadr_maxpool2d_backward_f64(&g, dy, a, dx));
  CHECK(dx[5] == 1.0 + 2.0 + 3.0 + 4.0);
  CHECK(dx[16 + 0] == 5.0 && dx[16 + 1] == 6.0 && dx[16 + 4] == 7.0 && dx[16 + 5] == 8.0);
  {
    double s = 0;
    for (i = 0; i < 32; ++i) s += dx[i];
    CHECK(s == 36.0); /* nothing lost, nothing invented */
  }
  x[16 + 15] = NAN; /* plane 1, (3, 3): only the last window holds it */
  CHECK_OK(pyadr_maxpool2d_forward_f64(&g, x, y, a));
  CHECK(isnan(y[7]) && a[7] == 15);
  CHECK(!isnan(y[4]) && !isnan(y[5]) && !isnan(y[6]));
}

/* Brute force: for every window, the first maximum in row-major order over in-bounds taps. */
static void maxpool_reference(const pyadr_pool_geom* g, int64_t OH, int64_t OW, const float* x, float* y,
                              int32_t* a) {
  int64_t p, oh, ow, i, j;
  for (p = 0; p < g->batch * g->channels; ++p)
    for (oh = 0; oh < OH; ++oh)
      for (ow = 0; ow < OW; ++ow) {
        float best = -INFINITY;
        int32_t at = -1;
        for (i = oh * g->stride_h - g->pad_h; i < oh * g->stride_h - g->pad_h + g->kernel_h; ++i)
          for (j = ow * g->stride_w - g->pad_w; j < ow * g->stride_w - g->pad_w + g->kernel_w; ++j) {
            float v;
            if (i < 0 || j < 0 || i >= g->height || j >= g->width) continue;
            v = x[(p * g->height + i) * g->width + j];
            if (at < 0 || v > best) {
              best = v;
              at = (int32_t)(i * g->width + j);
            }
          }
        y[(p * OH + oh) * OW + ow] = best;
        a[(p * OH + oh) * OW + ow] = at;
      }
}

static void test_maxpool_random(void) {
  /* kernel, stride, pad per case; inputs are small integers so ties are frequent */
  static const int cases[][6] = {{2, 2, 2, 2, 0, 0}, {3, 3, 2, 2, 1, 1}, {3, 2, 1, 2, 1, 0},
                                 {5, 4, 3, 1, 2, 2}, {1, 1, 1, 1, 0, 0}, {7, 9, 7, 9, 0, 0}};
  enum { B = 2, C = 3, H = 7, W = 9, N = B * C * H * W };
  static float x[N], y[N], yr[N], dy[N], dx[N], dsum[N];
  static int32_t a[N], ar[N];
  size_t c;
  for (c = 0; c < sizeof cases / sizeof cases[0]; ++c) {
    pyadr_pool_geom g;
    int64_t OH, OW, o, i, p;
    pyadr_pool_geom_init(&g, B, C, H, W, cases[c][0], cases[c][1]);
    g.stride_h = cases[c][2];
    g.stride_w = cases[c][3];
    g.pad_h = cases[c][4];
    g.pad_w = cases[c][5];
    CHECK_OK(pyadr_maxpool2d_output_shape(&g, &OH, &OW));
    CHECK(OH == (H + 2 * g.pad_h - g.kernel_h) / g.stride_h + 1);
    CHECK(OW == (W + 2 * g.pad_w - g.kernel_w) / g.stride_w + 1);
    for (i = 0; i < N; ++i) x[i] = (float)(int)(7 * urand()) - 3.0f;
    CHECK_OK(pyadr_maxpool2d_forward(&g, x, y, a));
    maxpool_reference(&g, OH, OW, x, yr, ar);
    for (o = 0; o < B * C * OH * OW; ++o) {
      if (y[o] != yr[o] || a[o] != ar[o]) {
        fprintf(stderr, "maxpool case %zu output %lld: %g@%d, reference %g@%d\n", c, (long long)o, (double)y[o],
                (int)a[o], (double)yr[o], (int)ar[o]);
        ++g_failures;
        break;
      }
    }
    /* backward: dx is the scatter-add of dy through argmax, nothing else */
    for (o = 0; o < B * C * OH * OW; ++o) dy[o] = (float)(int)(100 * urand());
    CHECK_OK(pyadr_maxpool2d_backward(&g, dy, a, dx));
    memset(dsum, 0, sizeof dsum);
    for (p = 0; p < B * C; ++p)
      for (o = 0; o < OH * OW; ++o) dsum[p * H * W + ar[p * OH * OW + o]] += dy[p * OH * OW + o];
    for (i = 0; i < N; ++i) {
      if (dx[i] != dsum[i]) {
        fprintf(stderr, "maxpool case %zu dx[%lld] = %g, expected %g\n", c, (long long)i, (double)dx[i],
                (double)dsum[i]);
        ++g_failures;
        break;
      }
    }
  }
}

static void test_maxpool_errors(void) {
  float x[16] = {0}, y[16], dx[16], dy[4] = {1, 1, 1, 1};
  int32_t a[4] = {0, 1, 2, 3};
  pyadr_pool_geom g, b;
  pyadr_pool_geom_init(&g, 1, 1, 4, 4, 2, 2);
  CHECK_BAD(pyadr_maxpool2d_forward(NULL, x, y, a), "pyadr_maxpool2d_forward", "g must not be NULL");
  CHECK_BAD(pyadr_maxpool2d_forward(&g, NULL, y, a), "pyadr_maxpool2d_forward", "x must not be NULL");
  CHECK_BAD(pyadr_maxpool2d_forward(&g, x, NULL, a), "pyadr_maxpool2d_forward", "y must not be NULL");
  CHECK_BAD(pyadr_maxpool2d_backward(&g, dy, NULL, dx), "pyadr_maxpool2d_backward", "argmax must not be NULL");
  CHECK_BAD(pyadr_maxpool2d_backward_f64(&g, NULL, a, NULL), "pyadr_maxpool2d_backward_f64", "dy must not be NULL");
  b = g;
  b.channels = 0;
  CHECK_BAD(pyadr_maxpool2d_forward(&b, x, y, a), "pyadr_maxpool2d_forward", "g->channels must be in [1, 2^31)");
  b = g;
  b.stride_w = 0;
  CHECK_BAD(pyadr_maxpool2d_output_shape(&b, NULL, NULL), "pyadr_maxpool2d_output_shape", "g->stride_w");
  b = g;
  b.pad_h = -1;
  CHECK_BAD(pyadr_maxpool2d_forward(&b, x, y, a), "pyadr_maxpool2d_forward", "g->pad_h");
  b = g;
  b.kernel_h = b.kernel_w = 5; /* padded input is 4x4 */
  CHECK_BAD(pyadr_maxpool2d_forward(&b, x, y, a), "pyadr_maxpool2d_forward", "larger than the padded input");
  b.pad_h = b.pad_w = 1; /* now 6x6: fine */
  CHECK_OK(pyadr_maxpool2d_forward(&b, x, y, a));
  b = g;
  b.pad_w = 2; /* more than half of kernel 2 */
  CHECK_BAD(pyadr_maxpool2d_forward(&b, x, y, a), "pyadr_maxpool2d_forward", "at most half");
  b = g;
  b.height = 70000;
  b.width = 70000; /* plane of 4.9e9 elements: argmax would not fit int32 */
  CHECK_BAD(pyadr_maxpool2d_output_shape(&b, NULL, NULL), "pyadr_maxpool2d_output_shape", "argmax is an int32");
  /* a stale argmax is an error, and dx is left untouched */
  CHECK_OK(pyadr_maxpool2d_forward(&g, x, y, a));
  a[2] = 16;
  dx[0] = 42.0f;
  CHECK_BAD(pyadr_maxpool2d_backward(&g, dy, a, dx), "pyadr_maxpool2d_backward", "argmax[2] = 16");
  CHECK(dx[0] == 42.0f);
  a[2] = -1;
  CHECK_BAD(pyadr_maxpool2d_backward(&g, dy, a, dx), "pyadr_maxpool2d_backward", "argmax[2] = -1");
  a[2] = 2;
  /* in place is refused */
  CHECK_BAD(pyadr_maxpool2d_forward(&g, x, x, a), "pyadr_maxpool2d_forward", "must not overlap");
  CHECK_BAD(pyadr_maxpool2d_forward(&g, x, x + 12, a), "pyadr_maxpool2d_forward", "must not overlap");
  CHECK_BAD(pyadr_maxpool2d_backward(&g, dx + 2, a, dx), "pyadr_maxpool2d_backward", "must not overlap");
  /* the error is thread-local state, cleared on request */
  pyadr_clear_error();
  CHECK(pyadr_last_error()[0] == 0);
}

/* ---- local response normalisation -------------------------------------------------------- */

/* s and y written out from the definition, in double. */
static void lrn_reference(int64_t B, int64_t C, int64_t HW, int n, double alpha, double beta, double k,
                          const double* x, double* y) {
  int64_t b, c, d, p;
  for (b = 0; b < B; ++b)
    for (c = 0; c < C; ++c)
      for (p = 0; p < HW; ++p) {
        double s = 0;
        for (d = c - n / 2; d <= c + (n - 1) / 2; ++d)
          if (d >= 0 && d < C) s += x[(b * C + d) * HW + p] * x[(b * C + d) * HW + p];
        s = k + alpha / n * s;
        y[(b * C + c) * HW + p] = x[(b * C + c) * HW + p] * pow(s, -beta);
      }
}

static void test_lrn_hand(void) {
  /* one channel, size 1: y = x / (k + alpha x^2)^beta; x = 2, alpha 1, k 1, beta 0.5 -> 2/sqrt(5) */
  const float x[2] = {2.0f, -1.0f};
  float y[2], s[2], sc[2];
  CHECK_OK(pyadr_lrn_forward(1, 1, 2, 1, 1.0, 0.5, 1.0, x, y, s, sc));
  CHECK(fabs(y[0] - 2.0 / sqrt(5.0)) < 1e-6 && fabs(y[1] + 1.0 / sqrt(2.0)) < 1e-6);
  CHECK(fabs(s[0] - 5.0) < 1e-6 && fabs(sc[0] - 1.0 / sqrt(5.0)) < 1e-6);
  /* inference: s and scale NULL give the same y */
  {
    float y2[2];
    CHECK_OK(pyadr_lrn_forward(1, 1, 2, 1, 1.0, 0.5, 1.0, x, y2, NULL, NULL));
    CHECK(y2[0] == y[0] && y2[1] == y[1]);
  }
}

static void test_lrn_random(void) {
  /* sizes: even and odd windows, a window wider than the channels, beta 0.75 (sqrt path) */
  static const int sizes[] = {1, 2, 3, 5, 9};
  static const double betas[] = {0.75, 0.6};
  enum { B = 2, C = 6, HW = 5, N = B * C * HW };
  static double x[N], y[N], yr[N], s[N], sc[N], dy[N], dx[N], xp[N], yp[N], ym[N];
  static float xf[N], yf[N], sf[N], scf[N], dyf[N], dxf[N];
  const double alpha = 0.3, k = 1.5;
  size_t si, bi;
  int64_t i, j;
  for (si = 0; si < sizeof sizes / sizeof sizes[0]; ++si)
    for (bi = 0; bi < 2; ++bi) {
      const int n = sizes[si];
      const double beta = betas[bi];
      double maxerr = 0;
      for (i = 0; i < N; ++i) {
        x[i] = 4 * urand() - 2;
        dy[i] = 2 * urand() - 1;
        xf[i] = (float)x[i];
        dyf[i] = (float)dy[i];
      }
      CHECK_OK(pyadr_lrn_forward_f64(B, C, HW, n, alpha, beta, k, x, y, s, sc));
      lrn_reference(B, C, HW, n, alpha, beta, k, x, yr);
      for (i = 0; i < N; ++i) CHECK(fabs(y[i] - yr[i]) < 1e-12);
      CHECK_OK(pyadr_lrn_backward_f64(B, C, HW, n, alpha, beta, x, s, sc, dy, dx));
      /* finite differences of f(x) = sum(dy * lrn(x)) along each coordinate */
      for (j = 0; j < N; ++j) {
        const double h = 1e-6;
        double fp = 0, fm = 0, fd;
        memcpy(xp, x, sizeof x);
        xp[j] = x[j] + h;
        lrn_reference(B, C, HW, n, alpha, beta, k, xp, yp);
        xp[j] = x[j] - h;
        lrn_reference(B, C, HW, n, alpha, beta, k, xp, ym);
        for (i = 0; i < N; ++i) {
          fp += dy[i] * yp[i];
          fm += dy[i] * ym[i];
        }
        fd = (fp - fm) / (2 * h);
        if (fabs(fd - dx[j]) > maxerr) maxerr = fabs(fd - dx[j]);
      }
      if (maxerr > 1e-7) {
        fprintf(stderr, "lrn size %d beta %g: backward vs finite differences %g\n", n, beta, maxerr);
        ++g_failures;
      }
      /* float32 agrees with float64 */
      CHECK_OK(pyadr_lrn_forward(B, C, HW, n, alpha, beta, k, xf, yf, sf, scf));
      CHECK_OK(pyadr_lrn_backward(B, C, HW, n, alpha, beta, xf, sf, scf, dyf, dxf));
      for (i = 0; i < N; ++i) {
        CHECK(fabs(yf[i] - y[i]) < 1e-5);
        CHECK(fabs(dxf[i] - dx[i]) < 1e-5);
      }
    }
}

static void test_lrn_errors(void) {
  float x[8] = {0}, y[8], s[8], sc[8], dy[8] = {0}, dx[8];
  CHECK_BAD(pyadr_lrn_forward(1, 2, 4, 3, 1e-4, 0.75, 1.0, NULL, y, s, sc), "pyadr_lrn_forward",
            "x must not be NULL");
  CHECK_BAD(pyadr_lrn_forward(0, 2, 4, 3, 1e-4, 0.75, 1.0, x, y, s, sc), "pyadr_lrn_forward", "batch must be >= 1");
  CHECK_BAD(pyadr_lrn_forward(1, 0, 4, 3, 1e-4, 0.75, 1.0, x, y, s, sc), "pyadr_lrn_forward", "channels");
  CHECK_BAD(pyadr_lrn_forward(1, 2, 0, 3, 1e-4, 0.75, 1.0, x, y, s, sc), "pyadr_lrn_forward", "spatial");
  CHECK_BAD(pyadr_lrn_forward(1, 2, 4, 0, 1e-4, 0.75, 1.0, x, y, s, sc), "pyadr_lrn_forward", "size must be >= 1");
  CHECK_BAD(pyadr_lrn_forward(1, 2, 4, 3, -1.0, 0.75, 1.0, x, y, s, sc), "pyadr_lrn_forward", "alpha");
  CHECK_BAD(pyadr_lrn_forward(1, 2, 4, 3, 1e-4, NAN, 1.0, x, y, s, sc), "pyadr_lrn_forward", "beta");
  CHECK_BAD(pyadr_lrn_forward(1, 2, 4, 3, 1e-4, 0.75, 0.0, x, y, s, sc), "pyadr_lrn_forward", "k must be");
  CHECK_BAD(pyadr_lrn_forward(1, 2, 4, 3, 1e-4, 0.75, 1.0, x, x, s, sc), "pyadr_lrn_forward", "must not overlap");
  CHECK_BAD(pyadr_lrn_forward(1, 2, 4, 3, 1e-4, 0.75, 1.0, x, y, s, s), "pyadr_lrn_forward", "must not overlap");
  CHECK_BAD(pyadr_lrn_forward(INT64_MAX / 2, 4, 4, 3, 1e-4, 0.75, 1.0, x, y, s, sc), "pyadr_lrn_forward",
            "too large");
  CHECK_OK(pyadr_lrn_forward(1, 2, 4, 3, 1e-4, 0.75, 1.0, x, y, s, sc));
  CHECK_BAD(pyadr_lrn_backward(1, 2, 4, 3, 1e-4, 0.75, x, s, NULL, dy, dx), "pyadr_lrn_backward",
            "scale (the forward's scale) must not be NULL");
  CHECK_BAD(pyadr_lrn_backward(1, 2, 4, 3, 1e-4, 0.75, x, NULL, sc, dy, dx), "pyadr_lrn_backward", "s (the");
  CHECK_BAD(pyadr_lrn_backward(1, 2, 4, 3, 1e-4, 0.75, x, s, sc, dy, dy), "pyadr_lrn_backward", "must not overlap");
  CHECK_BAD(pyadr_lrn_backward_f64(1, 2, 4, -3, 1e-4, 0.75, NULL, NULL, NULL, NULL, NULL), "pyadr_lrn_backward_f64",
            "size must be >= 1");
}

/* ---- ReLU -------------------------------------------------------------------------------- */

static void test_relu(void) {
  const float x[6] = {-2, -0.0f, 0, 0.5f, 3, NAN};
  const float dy[6] = {1, 2, 3, 4, 5, 6};
  float y[6], dx[6];
  double xd[3] = {-1, 2, 0}, yd[3], dyd[3] = {7, 8, 9}, dxd[3];
  CHECK_OK(pyadr_relu_forward(6, x, y));
  CHECK(y[0] == 0 && y[1] == 0 && y[2] == 0 && y[3] == 0.5f && y[4] == 3 && isnan(y[5]));
  CHECK_OK(pyadr_relu_backward(6, y, dy, dx));
  CHECK(dx[0] == 0 && dx[1] == 0 && dx[2] == 0 && dx[3] == 4 && dx[4] == 5 && dx[5] == 0);
  CHECK_OK(pyadr_relu_forward_f64(3, xd, yd));
  CHECK(yd[0] == 0 && yd[1] == 2 && yd[2] == 0);
  CHECK_OK(pyadr_relu_backward_f64(3, yd, dyd, dxd));
  CHECK(dxd[0] == 0 && dxd[1] == 8 && dxd[2] == 0);
  CHECK_OK(pyadr_relu_forward(0, x, y)); /* empty is fine */
  CHECK_BAD(pyadr_relu_forward(-1, x, y), "pyadr_relu_forward", "n must be >= 0");
  CHECK_BAD(pyadr_relu_forward(6, x, NULL), "pyadr_relu_forward", "y must not be NULL");
  CHECK_BAD(pyadr_relu_forward(6, y, y), "pyadr_relu_forward", "must not overlap");
  CHECK_BAD(pyadr_relu_backward(6, y, dy, NULL), "pyadr_relu_backward", "dx must not be NULL");
  CHECK_BAD(pyadr_relu_backward_f64(3, yd, dxd, dxd), "pyadr_relu_backward_f64", "must not overlap");
  CHECK_BAD(pyadr_relu_forward_f64(INT64_MAX, xd, yd), "pyadr_relu_forward_f64", "too large");
  /* a large n runs over the threads in chunks and still gets every value */
  {
    const int64_t n = 100003;
    float* big = (float*)malloc((size_t)n * sizeof(float));
    float* out = (float*)malloc((size_t)n * sizeof(float));
    int64_t i, bad = 0;
    for (i = 0; i < n; ++i) big[i] = (i % 3 == 0) ? -(float)i : (float)i;
    CHECK_OK(pyadr_relu_forward(n, big, out));
    for (i = 0; i < n; ++i) bad += out[i] != (i % 3 == 0 ? 0.0f : (float)i);
    CHECK(bad == 0);
    free(big);
    free(out);
  }
}

/* Results do not depend on the thread count: bit-identical on 1 and 3 threads (planes and
 * images are split over the threads, never one sum). */
static void test_thread_count_invariance(void) {
  enum { B = 5, C = 7, H = 11, W = 10, N = B * C * H * W, NP = B * C * 6 * 5 };
  static float x[N], dy[N], py[2][NP], pdx[2][N], ly[2][N], ls[2][N], lsc[2][N], ldx[2][N];
  static int32_t pa[2][NP];
  const int saved = pyadr_get_num_threads();
  pyadr_pool_geom g;
  int i, t;
  for (i = 0; i < N; ++i) {
    x[i] = (float)(4 * urand() - 2);
    dy[i] = (float)(urand() - 0.5);
  }
  pyadr_pool_geom_init(&g, B, C, H, W, 3, 3);
  g.stride_h = g.stride_w = 2;
  g.pad_h = g.pad_w = 1; /* 11x10 -> 6x5 */
  for (t = 0; t < 2; ++t) {
    CHECK_OK(pyadr_set_num_threads(t == 0 ? 1 : 3));
    CHECK_OK(pyadr_maxpool2d_forward(&g, x, py[t], pa[t]));
    CHECK_OK(pyadr_maxpool2d_backward(&g, dy, pa[t], pdx[t]));
    CHECK_OK(pyadr_lrn_forward(B, C, H * W, 5, 0.5, 0.75, 1.0, x, ly[t], ls[t], lsc[t]));
    CHECK_OK(pyadr_lrn_backward(B, C, H * W, 5, 0.5, 0.75, x, ls[t], lsc[t], dy, ldx[t]));
  }
  CHECK_OK(pyadr_set_num_threads(saved));
  CHECK(memcmp(py[0], py[1], sizeof py[0]) == 0 && memcmp(pa[0], pa[1], sizeof pa[0]) == 0);
  CHECK(memcmp(pdx[0], pdx[1], sizeof pdx[0]) == 0);
  CHECK(memcmp(ly[0], ly[1], sizeof ly[0]) == 0 && memcmp(ldx[0], ldx[1], sizeof ldx[0]) == 0);
}

int main(void) {
  test_maxpool_hand();
  test_maxpool_pad_overlap_f64_nan();
  test_maxpool_random();
  test_maxpool_errors();
  test_lrn_hand();
  test_lrn_random();
  test_lrn_errors();
  test_relu();
  test_thread_count_invariance();
  if (g_failures) {
    fprintf(stderr, "test_c_api_nn: %d failure(s)\n", g_failures);
    return 1;
  }
  printf("test_c_api_nn: all passed\n");
  return 0;
}
