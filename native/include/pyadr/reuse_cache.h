/* C API of the inference deep-reuse cache (see pyadr/reuse_cache.hpp for the semantics): a
 * float32 convolution with frozen weights that keeps cluster products (centroid . W) across
 * calls, keyed by sign-LSH code per sub-matrix, so a stream of inputs reuses earlier products.
 * Status codes and pyadr_last_error() as in pyadr/pyadr.h. */
#ifndef PYADR_REUSE_CACHE_H
#define PYADR_REUSE_CACHE_H

#include "pyadr/pyadr.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pyadr_reuse_cache pyadr_reuse_cache;

typedef struct pyadr_reuse_cache_stats {
  int64_t entries; /* stored products over all sub-matrices */
  int64_t lookups; /* sub-vectors looked up (rows x sub-matrices) over all calls */
  int64_t hits;    /* lookups that found a stored product */
  int64_t calls;
  double last_rc;  /* last call: mean over sub-matrices of new clusters / rows */
} pyadr_reuse_cache_stats;

/* Creates a cache for the convolution g (g->batch is ignored) with weights w (M, C, kh, kw) and
 * bias b (M, or NULL), copied. cfg: sign hash only (PYADR_HASH_L2 is rejected), planes copied,
 * scope ignored. max_entries: per sub-matrix bound on stored products (0: unbounded); a table
 * over it is emptied at the start of the next call. *out receives the cache (NULL on failure). */
PYADR_API pyadr_status pyadr_reuse_cache_create(const pyadr_conv_geom* g, const float* w, const float* b,
                                                const pyadr_reuse_config* cfg, int64_t max_entries,
                                                pyadr_reuse_cache** out);

/* y (batch, M, OH, OW) = reuse convolution of x (batch, C, H, W) through the cache. */
PYADR_API pyadr_status pyadr_reuse_cache_conv2d(pyadr_reuse_cache* cache, int64_t batch, const float* x, float* y);

/* Counters since creation (or the last clear). */
PYADR_API pyadr_status pyadr_reuse_cache_get_stats(const pyadr_reuse_cache* cache, pyadr_reuse_cache_stats* out);

/* Forgets every stored product and resets the counters. */
PYADR_API pyadr_status pyadr_reuse_cache_clear(pyadr_reuse_cache* cache);

/* Frees the cache; NULL is a no-op. */
PYADR_API void pyadr_reuse_cache_free(pyadr_reuse_cache* cache);

#ifdef __cplusplus
}
#endif

#endif /* PYADR_REUSE_CACHE_H */
