// Grouping sub-vectors into clusters (two sub-vectors of one sub-matrix and one scope group share a
// cluster iff their keys are equal). Rows are addressed by their flat position t = jb*N + n in the
// (nbg, N) key arrays; a scope group ("segment") is g consecutive positions (g = N for scope
// "batch", OH*OW for "input"), so the segment of t is t / g and blocks never share one.
//
// Sort path (any H, both hash families): perm = a stable argsort of the keys within each segment
// (done by CuPy), then
//   *_boundaries  flag[i] = 1 where sorted position i starts a cluster;
//   assign_ids    with cid = inclusive scan of flag: global cluster c = cid[i] - 1, local id
//                 ids[perm[i]] = c - boff[block], cstart[c] = first sorted position of c.
// Dense path (sign keys, small H): a (segments, 2^H) occupancy table; its inclusive scan numbers
// the clusters in (segment, key) order -- the same numbering as the sort path -- without sorting keys.
// Only integer writes of equal values and integer atomics: results are deterministic.
typedef long long i64;
typedef unsigned long long u64;

#define PYADR_LOOP(t, total) \
  for (i64 t = blockIdx.x * (i64)blockDim.x + threadIdx.x; t < (total); t += (i64)gridDim.x * blockDim.x)

template <class I>
__global__ void sign_boundaries(const u64* __restrict__ key, const I* __restrict__ perm, int* __restrict__ flag,
                                i64 total, i64 g) {
  PYADR_LOOP(i, total) { flag[i] = (i % g == 0) || key[perm[i]] != key[perm[i - 1]]; }
}

// l2 tuples are sorted by their 64-bit digest; equal tuples are then adjacent unless two different
// tuples share a digest, which sets *err |= 2 (the caller re-sorts by the full tuples and calls this
// again with check_digest = 0).
template <class I>
__global__ void l2_boundaries(const i64* __restrict__ q, const u64* __restrict__ digest,
                              const I* __restrict__ perm, int* __restrict__ flag, int* __restrict__ err,
                              i64 total, i64 g, int H, int check_digest) {
  PYADR_LOOP(i, total) {
    int f = 1;
    if (i % g != 0) {
      const i64 a = perm[i], b = perm[i - 1];
      f = 0;
      for (int h = 0; h < H; ++h)
        if (q[a * H + h] != q[b * H + h]) {
          f = 1;
          break;
        }
      if (f && check_digest && digest[a] == digest[b]) atomicOr(err, 2);
    }
    flag[i] = f;
  }
}

template <class I>
__global__ void assign_ids(const int* __restrict__ flag, const i64* __restrict__ cid, const I* __restrict__ perm,
                           const i64* __restrict__ boff, int* __restrict__ ids, i64* __restrict__ cstart,
                           i64 total, i64 N) {
  PYADR_LOOP(i, total) {
    const i64 c = cid[i] - 1, p = perm[i];
    ids[p] = (int)(c - boff[p / N]);
    if (flag[i]) cstart[c] = i;
  }
}

template <class I>
__global__ void dense_mark(const u64* __restrict__ key, int* __restrict__ table, i64 total, i64 g, int H) {
  PYADR_LOOP(t, total) { table[((t / g) << H) + (i64)key[t]] = 1; }
}

// scan: inclusive scan of the table; gid: global cluster of each row; counts: members per cluster.
template <class I>
__global__ void dense_ids(const u64* __restrict__ key, const i64* __restrict__ scan, const i64* __restrict__ boff,
                          int* __restrict__ ids, I* __restrict__ gid, int* __restrict__ counts, i64 total, i64 N,
                          i64 g, int H) {
  PYADR_LOOP(t, total) {
    const i64 c = scan[((t / g) << H) + (i64)key[t]] - 1;
    gid[t] = (I)c;
    ids[t] = (int)(c - boff[t / N]);
    atomicAdd(counts + c, 1);
  }
}
