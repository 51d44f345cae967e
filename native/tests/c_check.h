/* The check macros of the C API's C99 tests (test_c_api.c, test_c_api_nn.c): each failed check
 * prints file:line and what failed, and counts into g_failures, which main() returns on. */
#ifndef PYADR_TESTS_C_CHECK_H
#define PYADR_TESTS_C_CHECK_H

#include <stdio.h>
#include <string.h>

#include "pyadr/pyadr.h"

static int g_failures = 0;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++g_failures;                                                            \
    }                                                                          \
  } while (0)

/* expr must return PYADR_OK (else the status and pyadr_last_error() are printed). */
#define CHECK_OK(expr)                                                                                   \
  do {                                                                                                   \
    pyadr_status st_ = (expr);                                                                           \
    if (st_ != PYADR_OK) {                                                                               \
      fprintf(stderr, "%s:%d: %s -> %d (%s)\n", __FILE__, __LINE__, #expr, (int)st_, pyadr_last_error()); \
      ++g_failures;                                                                                      \
    }                                                                                                    \
  } while (0)

/* expr must fail with `code` and a message containing `needle`. */
#define CHECK_ERR(expr, code, needle)                                                            \
  do {                                                                                           \
    pyadr_clear_error();                                                                         \
    pyadr_status st_ = (expr);                                                                   \
    if (st_ != (code) || strstr(pyadr_last_error(), (needle)) == NULL) {                         \
      fprintf(stderr, "%s:%d: %s -> %d (\"%s\"), expected %d with \"%s\"\n", __FILE__, __LINE__, \
              #expr, (int)st_, pyadr_last_error(), (int)(code), (needle));                       \
      ++g_failures;                                                                              \
    }                                                                                            \
  } while (0)

#endif
