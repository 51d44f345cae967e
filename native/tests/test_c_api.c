/* Unit tests of the C API (pyadr/pyadr.h), in plain C99.
 *
 * Hand-checked small convolutions (forward and backward), the float64 path, linear layers, the
 * reuse path at its exact limits (rc = 1: every row its own cluster; identical rows: one cluster),
 * and error codes/messages for bad input. Never reuse-vs-exact on random data with rc < 1. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "c_check.h"
#include "pyadr/pyadr.h"

static void check_close_f(const char* what, const float* a, const float* b, size_t n, double tol) {
  size_t i;
  for (i = 0; i < n; ++i) {
    if (fabs((double)a[i] - (double)b[i]) > tol * (1.0 + fabs((double)b[i]))) {
      fprintf(stderr, "%s: element %zu: %.7g != %.7g\n", what, i, (double)a[i], (double)b[i]);
      ++g_failures;
      return;
    }
  }
}

static void check_close_d(const char* what, const double* a, const double* b, size_t n, double tol) {
  size_t i;
  for (i = 0; i < n; ++i) {
    if (fabs(a[i] - b[i]) > tol * (1.0 + fabs(b[i]))) {
      fprintf(stderr, "%s: element %zu: %.15g != %.15g\n", what, i, a[i], b[i]);
      ++g_failures;
      return;
    }
  }
}

static unsigned long long g_rng = 12345;
static double randn(void) { /* small portable Gaussian-ish: sum of 4 uniforms, centred */
  double s = 0;
  int k;
  for (k = 0; k < 4; ++k) {
    g_rng = g_rng * 6364136223846793005ULL + 1442695040888963407ULL;
    s += (double)(g_rng >> 11) / 9007199254740992.0;
  }
  return (s - 2.0) * 1.7320508;
}

/* 1x1x3x3 input 1..9, 2x2 kernel [[1,0],[0,1]], bias 0.5: y = x[i][j] + x[i+1][j+1] + 0.5. */
static void test_hand_conv(void) {
  const float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  const float w[4] = {1, 0, 0, 1};
  const float b[1] = {0.5f};
  const float y_ref[4] = {6.5f, 8.5f, 12.5f, 14.5f};
  const float dy[4] = {1, 1, 1, 1};
  const float dw_ref[4] = {12, 16, 24, 28};
  const float dx_ref[9] = {1, 1, 0, 1, 2, 1, 0, 1, 1};
  float y[4], dx[9], dw[4], db[1];
  pyadr_conv_geom g;
  pyadr_context* ctx = NULL;
  int64_t oh = 0, ow = 0;
  pyadr_conv_geom_init(&g, 1, 1, 3, 3, 1, 2, 2);
  CHECK_OK(pyadr_conv2d_output_shape(&g, &oh, &ow));
  CHECK(oh == 2 && ow == 2);
  CHECK_OK(pyadr_conv2d_forward(&g, x, w, b, NULL, y, &ctx));
  CHECK(ctx != NULL);
  CHECK(pyadr_context_is_reuse(ctx) == 0);
  check_close_f("hand conv y", y, y_ref, 4, 1e-6);
  CHECK_OK(pyadr_conv2d_backward(ctx, dy, dx, dw, db));
  check_close_f("hand conv dx", dx, dx_ref, 9, 1e-6);
  check_close_f("hand conv dw", dw, dw_ref, 4, 1e-6);
  CHECK(db[0] == 4.0f);
  /* only dw wanted */
  memset(dw, 0, sizeof dw);
  CHECK_OK(pyadr_conv2d_backward(ctx, dy, NULL, dw, NULL));
  check_close_f("hand conv dw only", dw, dw_ref, 4, 1e-6);
  pyadr_context_free(ctx);
  /* inference: no context */
  CHECK_OK(pyadr_conv2d_forward(&g, x, w, NULL, NULL, y, NULL));
  CHECK(y[0] == 6.0f && y[3] == 14.0f);
}

/* 3x3 ones, 3x3 ones kernel, padding 1, stride 2 -> 2x2 output, each a corner window of 4 ones;
 * two channels in, two out (second filter = 2x the first). */
static void test_hand_conv_pad_stride(void) {
  float x[2 * 9], w[2 * 2 * 9], y[2 * 4];
  int i;
  pyadr_conv_geom g;
  int64_t oh, ow;
  for (i = 0; i < 18; ++i) x[i] = 1.0f;
  for (i = 0; i < 36; ++i) w[i] = i < 18 ? 1.0f : 2.0f;
  pyadr_conv_geom_init(&g, 1, 2, 3, 3, 2, 3, 3);
  g.stride_h = g.stride_w = 2;
  g.pad_h = g.pad_w = 1;
  CHECK_OK(pyadr_conv2d_output_shape(&g, &oh, &ow));
  CHECK(oh == 2 && ow == 2);
  CHECK_OK(pyadr_conv2d_forward(&g, x, w, NULL, NULL, y, NULL));
  for (i = 0; i < 4; ++i) {
    CHECK(y[i] == 8.0f);      /* 2 channels x 4 ones */
    CHECK(y[4 + i] == 16.0f);
  }
  /* dilation 2 on a 5x5 input with a 2x2 kernel picks x[i][j] and x[i+2][j+2]. */
  {
    float x5[25], w2[4] = {1, 0, 0, 1}, y3[9];
    for (i = 0; i < 25; ++i) x5[i] = (float)i;
    pyadr_conv_geom_init(&g, 1, 1, 5, 5, 1, 2, 2);
    g.dilation_h = g.dilation_w = 2;
    CHECK_OK(pyadr_conv2d_output_shape(&g, &oh, &ow));
    CHECK(oh == 3 && ow == 3);
    CHECK_OK(pyadr_conv2d_forward(&g, x5, w2, NULL, NULL, y3, NULL));
    CHECK(y3[0] == 0.0f + 12.0f);
    CHECK(y3[4] == 6.0f + 18.0f);
  }
}

static void test_hand_f64_and_linear(void) {
  const double x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  const double w[4] = {1, 0, 0, 1};
  const double y_ref[4] = {6, 8, 12, 14};
  const double dy[4] = {1, 1, 1, 1};
  const double dw_ref[4] = {12, 16, 24, 28};
  double y[4], dx[9], dw[4];
  float dyf[4] = {1, 1, 1, 1}, dxf[9];
  pyadr_conv_geom g;
  pyadr_context* ctx = NULL;
  pyadr_conv_geom_init(&g, 1, 1, 3, 3, 1, 2, 2);
  CHECK_OK(pyadr_conv2d_forward_f64(&g, x, w, NULL, NULL, y, &ctx));
  check_close_d("f64 y", y, y_ref, 4, 1e-12);
  CHECK_OK(pyadr_conv2d_backward_f64(ctx, dy, dx, dw, NULL));
  check_close_d("f64 dw", dw, dw_ref, 4, 1e-12);
  CHECK_ERR(pyadr_conv2d_backward(ctx, dyf, dxf, NULL, NULL), PYADR_ERR_TYPE, "dtype");
  CHECK_ERR(pyadr_linear_backward_f64(ctx, dy, dx, NULL, NULL), PYADR_ERR_TYPE,
            "pyadr_linear_forward");
  pyadr_context_free(ctx);

  {
    /* x (2, 3), w (2, 3): y = x w^T + b */
    const float xl[6] = {1, 2, 3, 4, 5, 6};
    const float wl[6] = {1, 0, -1, 0.5f, 0.5f, 0.5f};
    const float bl[2] = {10, 20};
    const float yl_ref[4] = {1 - 3 + 10, 3 + 20, 4 - 6 + 10, 7.5f + 20};
    const float dyl[4] = {1, 0, 0, 1};
    const float dxl_ref[6] = {1, 0, -1, 0.5f, 0.5f, 0.5f};
    const float dwl_ref[6] = {1, 2, 3, 4, 5, 6};
    float yl[4], dxl[6], dwl[6], dbl[2];
    CHECK_OK(pyadr_linear_forward(2, 3, 2, xl, wl, bl, NULL, yl, &ctx));
    check_close_f("linear y", yl, yl_ref, 4, 1e-6);
    CHECK_OK(pyadr_linear_backward(ctx, dyl, dxl, dwl, dbl));
    check_close_f("linear dx", dxl, dxl_ref, 6, 1e-6);
    check_close_f("linear dw", dwl, dwl_ref, 6, 1e-6);
    CHECK(dbl[0] == 1.0f && dbl[1] == 1.0f);
    CHECK_ERR(pyadr_conv2d_backward(ctx, dyl, NULL, NULL, NULL), PYADR_ERR_TYPE, "conv2d");
    pyadr_context_free(ctx);
  }
}

/* Random x, w, bias and dy of a convolution with padding 1, whose geometry goes to *g; returns
 * the number of elements of y (and dy). */
static size_t random_padded_conv(pyadr_conv_geom* g, int64_t B, int64_t C, int64_t H, int64_t W, int64_t M,
                                 int64_t KH, int64_t KW, float* x, float* w, float* bias, float* dy) {
  size_t i, ny;
  int64_t oh = 0, ow = 0;
  for (i = 0; i < (size_t)(B * C * H * W); ++i) x[i] = (float)randn();
  for (i = 0; i < (size_t)(M * C * KH * KW); ++i) w[i] = (float)randn();
  for (i = 0; i < (size_t)M; ++i) bias[i] = (float)randn();
  pyadr_conv_geom_init(g, B, C, H, W, M, KH, KW);
  g->pad_h = g->pad_w = 1;
  CHECK_OK(pyadr_conv2d_output_shape(g, &oh, &ow));
  ny = (size_t)(B * M * oh * ow);
  for (i = 0; i < ny; ++i) dy[i] = (float)randn();
  return ny;
}

/* rc = 1 (L = K, H = 64 on continuous data: every row its own cluster) must give the exact result,
 * forward and backward, in both column orders and both dtypes. */
static void test_reuse_rc1(void) {
  enum { B = 2, C = 3, HH = 6, WW = 5, M = 4, KH = 3, KW = 3 };
  const int K = C * KH * KW;
  static float x[B * C * HH * WW], w[M * C * KH * KW], bias[M];
  static float ye[B * M * HH * WW], yr[B * M * HH * WW], dy[B * M * HH * WW];
  static float dxe[B * C * HH * WW], dxr[B * C * HH * WW], dwe[M * C * KH * KW], dwr[M * C * KH * KW];
  static float dbe[M], dbr[M];
  static double xd[B * C * HH * WW], wd[M * C * KH * KW], yed[B * M * HH * WW], yrd[B * M * HH * WW];
  double planes[27 * 64];
  pyadr_conv_geom g;
  pyadr_reuse_config cfg;
  pyadr_context *ce = NULL, *cr = NULL;
  int64_t oh, ow, nb = 0, nc = 0;
  size_t i, ny, nbytes = 0;
  double rc = 0;
  int order;
  ny = random_padded_conv(&g, B, C, HH, WW, M, KH, KW, x, w, bias, dy);
  for (i = 0; i < sizeof x / sizeof *x; ++i) xd[i] = x[i];
  for (i = 0; i < sizeof w / sizeof *w; ++i) wd[i] = w[i];
  CHECK_OK(pyadr_conv2d_output_shape(&g, &oh, &ow));
  CHECK_OK(pyadr_random_planes(planes, K, 64, 7));
  for (order = 0; order < 2; ++order) {
    pyadr_reuse_config_init(&cfg, K, 64, planes);
    cfg.order = order;
    CHECK_OK(pyadr_conv2d_forward(&g, x, w, bias, NULL, ye, &ce));
    CHECK_OK(pyadr_conv2d_forward(&g, x, w, bias, &cfg, yr, &cr));
    CHECK(pyadr_context_is_reuse(cr) == 1);
    CHECK_OK(pyadr_context_remaining_ratio(cr, &rc));
    CHECK(rc == 1.0);
    CHECK_OK(pyadr_context_blocks(cr, &nb));
    CHECK(nb == 1);
    CHECK_OK(pyadr_context_clusters(cr, 0, &nc));
    CHECK(nc == B * oh * ow);
    CHECK_OK(pyadr_context_bytes(cr, &nbytes));
    CHECK(nbytes > 0);
    check_close_f("rc=1 y", yr, ye, ny, 1e-4);
    CHECK_OK(pyadr_conv2d_backward(ce, dy, dxe, dwe, dbe));
    CHECK_OK(pyadr_conv2d_backward(cr, dy, dxr, dwr, dbr));
    check_close_f("rc=1 dx", dxr, dxe, sizeof dxe / sizeof *dxe, 1e-4);
    check_close_f("rc=1 dw", dwr, dwe, sizeof dwe / sizeof *dwe, 1e-4);
    check_close_f("rc=1 db", dbr, dbe, M, 1e-5);
    pyadr_context_free(ce);
    pyadr_context_free(cr);
  }
  /* float64 at rc = 1, several sub-matrices (L = 9, H = 64): 9-long continuous sub-vectors still
   * all differ in sign pattern with overwhelming probability. Checked through rc. */
  pyadr_reuse_config_init(&cfg, 9, 64, planes);
  CHECK_OK(pyadr_conv2d_forward_f64(&g, xd, wd, NULL, NULL, yed, NULL));
  CHECK_OK(pyadr_conv2d_forward_f64(&g, xd, wd, NULL, &cfg, yrd, &cr));
  CHECK_OK(pyadr_context_remaining_ratio(cr, &rc));
  if (rc == 1.0) check_close_d("f64 rc=1 y", yrd, yed, ny, 1e-10);
  CHECK_OK(pyadr_context_blocks(cr, &nb));
  CHECK(nb == 3);
  pyadr_context_free(cr);
}

/* Identical rows (constant image, no padding): one cluster per sub-matrix, and its centroid is the
 * row itself, so reuse equals exact; the l2 hash and scope "input" too. */
static void test_reuse_identical_rows(void) {
  enum { B = 2, C = 4, HH = 5, WW = 5, M = 3, KH = 3, KW = 3 };
  const int K = C * KH * KW;
  static float x[B * C * HH * WW], w[M * C * KH * KW], ye[B * M * 9], yr[B * M * 9];
  double planes[36 * 8], offsets[8];
  pyadr_conv_geom g;
  pyadr_reuse_config cfg;
  pyadr_context* cr = NULL;
  int64_t nc = 0, nb = 0, j;
  size_t i;
  double rc;
  int c;
  for (i = 0; i < sizeof x / sizeof *x; ++i) x[i] = 0.25f * (float)(1 + (i / (HH * WW)) % C); /* per channel */
  for (i = 0; i < sizeof w / sizeof *w; ++i) w[i] = (float)randn();
  pyadr_conv_geom_init(&g, B, C, HH, WW, M, KH, KW);
  CHECK_OK(pyadr_random_planes(planes, K, 8, 3));
  CHECK_OK(pyadr_conv2d_forward(&g, x, w, NULL, NULL, ye, NULL));
  for (c = 0; c < 3; ++c) {
    pyadr_reuse_config_init(&cfg, 10, 8, planes); /* L = 10 does not divide K = 36 */
    if (c == 1) cfg.scope = PYADR_SCOPE_INPUT;
    if (c == 2) {
      cfg.hash = PYADR_HASH_L2;
      cfg.width = 0.5;
      for (i = 0; i < 8; ++i) offsets[i] = 0.05 * (double)i;
      cfg.offsets = offsets;
    }
    CHECK_OK(pyadr_conv2d_forward(&g, x, w, NULL, &cfg, yr, &cr));
    check_close_f("identical rows y", yr, ye, B * M * 9, 1e-5);
    CHECK_OK(pyadr_context_blocks(cr, &nb));
    CHECK(nb == 4);
    for (j = 0; j < nb; ++j) {
      CHECK_OK(pyadr_context_clusters(cr, j, &nc));
      CHECK(nc == (c == 1 ? B : 1));
    }
    CHECK_OK(pyadr_context_remaining_ratio(cr, &rc));
    CHECK(fabs(rc - (c == 1 ? 2.0 : 1.0) / (B * 9)) < 1e-12);
    pyadr_context_free(cr);
  }
}

/* pyadr_reuse_config.exact: each product named there equals the exact path's, the others equal
 * the full-reuse call's bit for bit (same clusters, same code); coarse clustering (rc < 1) so
 * that reused and exact products differ. */
static void test_reuse_exact_products(void) {
  enum { B = 2, C = 4, HH = 6, WW = 6, M = 3, KH = 3, KW = 3, NX = B * C * HH * WW, NW = M * C * KH * KW };
  static float x[NX], w[NW], bias[M], dy[B * M * HH * WW];
  static float ye[B * M * HH * WW], dxe[NX], dwe[NW], dbe[M];  /* exact */
  static float yr[B * M * HH * WW], dxr[NX], dwr[NW], dbr[M];  /* all three reused */
  static float y[B * M * HH * WW], dx[NX], dw[NW], db[M];      /* with cfg.exact */
  double planes[9 * 3];
  pyadr_conv_geom g;
  pyadr_reuse_config cfg;
  pyadr_context *ce = NULL, *cr = NULL, *c = NULL;
  size_t ny;
  double rc = 1;
  size_t bytes_r = 0, bytes = 0;
  int mask;
  ny = random_padded_conv(&g, B, C, HH, WW, M, KH, KW, x, w, bias, dy);
  CHECK_OK(pyadr_random_planes(planes, 9, 3, 11));
  pyadr_reuse_config_init(&cfg, 9, 3, planes);
  CHECK(cfg.exact == PYADR_EXACT_NONE);
  CHECK_OK(pyadr_conv2d_forward(&g, x, w, bias, NULL, ye, &ce));
  CHECK_OK(pyadr_conv2d_backward(ce, dy, dxe, dwe, dbe));
  CHECK_OK(pyadr_conv2d_forward(&g, x, w, bias, &cfg, yr, &cr));
  CHECK_OK(pyadr_conv2d_backward(cr, dy, dxr, dwr, dbr));
  CHECK_OK(pyadr_context_remaining_ratio(cr, &rc));
  CHECK(rc < 0.5);
  CHECK_OK(pyadr_context_bytes(cr, &bytes_r));
  for (mask = 1; mask < 7; ++mask) {
    cfg.exact = mask;
    CHECK_OK(pyadr_conv2d_forward(&g, x, w, bias, &cfg, y, &c));
    CHECK_OK(pyadr_conv2d_backward(c, dy, dx, dw, db));
    if (mask & PYADR_EXACT_FORWARD) check_close_f("exact forward y", y, ye, ny, 1e-5);
    else CHECK(memcmp(y, yr, ny * sizeof *y) == 0);
    if (mask & PYADR_EXACT_DW) check_close_f("exact dw", dw, dwe, NW, 1e-5);
    else CHECK(memcmp(dw, dwr, sizeof dw) == 0);
    if (mask & PYADR_EXACT_DX) check_close_f("exact dx", dx, dxe, NX, 1e-5);
    else CHECK(memcmp(dx, dxr, sizeof dx) == 0);
    CHECK(memcmp(db, dbr, sizeof db) == 0);
    CHECK_OK(pyadr_context_bytes(c, &bytes));
    CHECK(bytes == bytes_r + ((mask & PYADR_EXACT_DW) ? sizeof x : 0)); /* an exact dW keeps x */
    pyadr_context_free(c);
  }
  cfg.exact = PYADR_EXACT_FORWARD | PYADR_EXACT_DW | PYADR_EXACT_DX;
  CHECK_ERR(pyadr_conv2d_forward(&g, x, w, bias, &cfg, y, NULL), PYADR_ERR_INVALID_ARGUMENT, "reuse->exact");
  cfg.exact = 8;
  CHECK_ERR(pyadr_conv2d_forward(&g, x, w, bias, &cfg, y, NULL), PYADR_ERR_INVALID_ARGUMENT, "reuse->exact");
  cfg.exact = -1;
  CHECK_ERR(pyadr_conv2d_forward(&g, x, w, bias, &cfg, y, NULL), PYADR_ERR_INVALID_ARGUMENT, "not all three");
  pyadr_context_free(ce);
  pyadr_context_free(cr);
}

static void test_errors(void) {
  float x[9] = {0}, w[4] = {0}, y[4];
  double planes[4 * 2] = {1, 0, 0, 1, 1, 1, -1, 1};
  pyadr_conv_geom g;
  pyadr_reuse_config cfg;
  pyadr_context* ctx = (pyadr_context*)&g; /* must be reset to NULL on failure */
  double rc;
  pyadr_conv_geom_init(&g, 1, 1, 3, 3, 1, 2, 2);

  CHECK_ERR(pyadr_conv2d_forward(&g, NULL, w, NULL, NULL, y, &ctx), PYADR_ERR_INVALID_ARGUMENT, "x must not be NULL");
  CHECK(ctx == NULL);
  CHECK(strstr(pyadr_last_error(), "pyadr_conv2d_forward") != NULL);
  CHECK_ERR(pyadr_conv2d_forward(&g, x, NULL, NULL, NULL, y, NULL), PYADR_ERR_INVALID_ARGUMENT, "w must not be NULL");
  CHECK_ERR(pyadr_conv2d_forward(&g, x, w, NULL, NULL, NULL, NULL), PYADR_ERR_INVALID_ARGUMENT, "y must not be NULL");
  CHECK_ERR(pyadr_conv2d_forward(NULL, x, w, NULL, NULL, y, NULL), PYADR_ERR_INVALID_ARGUMENT, "g must not be NULL");
  CHECK_ERR(pyadr_conv2d_output_shape(NULL, NULL, NULL), PYADR_ERR_INVALID_ARGUMENT, "g must not be NULL");

  g.kernel_h = 4; /* larger than the 3x3 input */
  CHECK_ERR(pyadr_conv2d_forward(&g, x, w, NULL, NULL, y, NULL), PYADR_ERR_INVALID_ARGUMENT, "larger than the padded input");
  g.kernel_h = 2;
  g.stride_w = 0;
  CHECK_ERR(pyadr_conv2d_forward(&g, x, w, NULL, NULL, y, NULL), PYADR_ERR_INVALID_ARGUMENT, "stride");
  g.stride_w = 1;
  g.batch = 0;
  CHECK_ERR(pyadr_conv2d_output_shape(&g, NULL, NULL), PYADR_ERR_INVALID_ARGUMENT, "batch");
  g.batch = 1;
  g.pad_h = -1;
  CHECK_ERR(pyadr_conv2d_forward(&g, x, w, NULL, NULL, y, NULL), PYADR_ERR_INVALID_ARGUMENT, "padding");
  g.pad_h = 0;

  /* K = 4 here */
  pyadr_reuse_config_init(&cfg, 5, 2, planes);
  CHECK_ERR(pyadr_conv2d_forward(&g, x, w, NULL, &cfg, y, NULL), PYADR_ERR_INVALID_ARGUMENT, "reuse->L");
  pyadr_reuse_config_init(&cfg, 4, 65, planes);
  CHECK_ERR(pyadr_conv2d_forward(&g, x, w, NULL, &cfg, y, NULL), PYADR_ERR_INVALID_ARGUMENT, "reuse->H");
  pyadr_reuse_config_init(&cfg, 4, 2, NULL);
  CHECK_ERR(pyadr_conv2d_forward(&g, x, w, NULL, &cfg, y, NULL), PYADR_ERR_INVALID_ARGUMENT, "reuse->planes");
  pyadr_reuse_config_init(&cfg, 4, 2, planes);
  cfg.order = 7;
  CHECK_ERR(pyadr_conv2d_forward(&g, x, w, NULL, &cfg, y, NULL), PYADR_ERR_INVALID_ARGUMENT, "reuse->order");
  cfg.order = PYADR_ORDER_HWC;
  cfg.scope = -1;
  CHECK_ERR(pyadr_conv2d_forward(&g, x, w, NULL, &cfg, y, NULL), PYADR_ERR_INVALID_ARGUMENT, "reuse->scope");
  cfg.scope = PYADR_SCOPE_BATCH;
  cfg.hash = 2;
  CHECK_ERR(pyadr_conv2d_forward(&g, x, w, NULL, &cfg, y, NULL), PYADR_ERR_INVALID_ARGUMENT, "reuse->hash");
  cfg.hash = PYADR_HASH_L2;
  cfg.width = 1.0;
  CHECK_ERR(pyadr_conv2d_forward(&g, x, w, NULL, &cfg, y, NULL), PYADR_ERR_INVALID_ARGUMENT, "reuse->offsets");
  cfg.width = -1.0;
  CHECK_ERR(pyadr_conv2d_forward(&g, x, w, NULL, &cfg, y, NULL), PYADR_ERR_INVALID_ARGUMENT, "reuse->width");
  cfg.width = NAN;
  CHECK_ERR(pyadr_conv2d_forward(&g, x, w, NULL, &cfg, y, NULL), PYADR_ERR_INVALID_ARGUMENT, "reuse->width");
  pyadr_reuse_config_init(&cfg, 4, 2, planes);
  planes[3] = NAN;
  CHECK_ERR(pyadr_conv2d_forward(&g, x, w, NULL, &cfg, y, NULL), PYADR_ERR_INVALID_ARGUMENT, "finite");
  planes[3] = 1;

  CHECK_ERR(pyadr_linear_forward(0, 3, 2, x, w, NULL, NULL, y, NULL), PYADR_ERR_INVALID_ARGUMENT, "batch");
  CHECK_ERR(pyadr_linear_forward(2, 3, 0, x, w, NULL, NULL, y, NULL), PYADR_ERR_INVALID_ARGUMENT, "out_features");
  CHECK_ERR(pyadr_conv2d_backward(NULL, y, x, NULL, NULL), PYADR_ERR_INVALID_ARGUMENT, "ctx must not be NULL");
  CHECK_ERR(pyadr_context_remaining_ratio(NULL, &rc), PYADR_ERR_INVALID_ARGUMENT, "ctx");
  CHECK_ERR(pyadr_set_num_threads(0), PYADR_ERR_INVALID_ARGUMENT, "n must be >= 1");
  CHECK_ERR(pyadr_random_planes(NULL, 2, 2, 0), PYADR_ERR_INVALID_ARGUMENT, "planes");

  {
    pyadr_context* ce = NULL;
    int64_t nb;
    CHECK_OK(pyadr_conv2d_forward(&g, x, w, NULL, NULL, y, &ce));
    CHECK_ERR(pyadr_context_blocks(ce, &nb), PYADR_ERR_INVALID_ARGUMENT, "exact");
    CHECK_OK(pyadr_context_remaining_ratio(ce, &rc));
    CHECK(rc == 1.0);
    pyadr_context_free(ce);
  }
  pyadr_context_free(NULL);
  pyadr_clear_error();
  CHECK(strcmp(pyadr_last_error(), "") == 0);
}

static void test_runtime(void) {
  int n0 = pyadr_get_num_threads();
  CHECK(n0 >= 1);
  CHECK_OK(pyadr_set_num_threads(1));
  CHECK(pyadr_get_num_threads() == 1);
  test_hand_conv();
  CHECK_OK(pyadr_set_num_threads(n0));
  CHECK(strlen(pyadr_version()) > 0);
  CHECK(strlen(pyadr_simd_level()) > 0);
  printf("pyadr %s, simd %s, openmp %d, threads %d\n", pyadr_version(), pyadr_simd_level(), pyadr_openmp_enabled(),
         pyadr_get_num_threads());
}

/* The exact conv's provider switch; with libdnnl.so.3 on the loader's path the convolutions above
 * run again on oneDNN, against the same hand-computed results. */
static void test_conv_provider(void) {
  CHECK(pyadr_get_conv_provider() == PYADR_CONV_AUTO);
  CHECK(strcmp(pyadr_conv_provider_info(), "builtin") == 0); /* nothing loaded: auto is builtin */
  CHECK(pyadr_set_conv_provider(7) == PYADR_ERR_INVALID_ARGUMENT);
  CHECK(strstr(pyadr_last_error(), "PYADR_CONV_AUTO") != NULL);
  CHECK(pyadr_set_conv_provider(PYADR_CONV_ONEDNN) == PYADR_ERR_INVALID_ARGUMENT);
  CHECK(strstr(pyadr_last_error(), "not loaded") != NULL);
  CHECK(pyadr_onednn_load("/nonexistent/libdnnl.so.3") == PYADR_ERR_INVALID_ARGUMENT);
  CHECK(strstr(pyadr_last_error(), "cannot load") != NULL);
  CHECK_OK(pyadr_set_conv_provider(PYADR_CONV_BUILTIN));
  CHECK(pyadr_get_conv_provider() == PYADR_CONV_BUILTIN);
  test_hand_conv();
  CHECK_OK(pyadr_set_conv_provider(PYADR_CONV_AUTO));
  if (pyadr_onednn_load(NULL) == PYADR_OK) {
    CHECK(strncmp(pyadr_conv_provider_info(), "onednn 3.", 9) == 0);
    CHECK_OK(pyadr_set_conv_provider(PYADR_CONV_ONEDNN));
    test_hand_conv();
    test_hand_conv_pad_stride();
    CHECK_OK(pyadr_set_conv_provider(PYADR_CONV_AUTO));
  }
  printf("exact conv: %s\n", pyadr_conv_provider_info());
}

int main(void) {
  test_runtime();
  test_conv_provider();
  test_hand_conv();
  test_hand_conv_pad_stride();
  test_hand_f64_and_linear();
  test_reuse_rc1();
  test_reuse_identical_rows();
  test_reuse_exact_products();
  test_errors();
  if (g_failures) {
    fprintf(stderr, "%d check(s) failed\n", g_failures);
    return 1;
  }
  printf("test_c_api: all checks passed\n");
  return 0;
}
