// Segmented row sums in sorted order: out[c, k] = sum over sorted positions i in
// [cstart[c], cstart[c+1]) of src[(perm[i] % mod) * width + k], divided by the member count when
// `mean` is set. perm is stable (members in row order), so every sum runs in row order, like the
// reference's `cent[ids[n]] += S[n]`; no atomics, bit-for-bit deterministic.
//   centroids: src = S (nbg*N, L), mod = nbg*N, mean = 1 -> out (nct, L)
//   Gamma:     src = dY (N, M),    mod = N,     mean = 0 -> out (nct, M)  (reuse backward)
// One thread per (cluster, column), columns fastest (coalesced row reads).
typedef long long i64;

template <class T>
__global__ void segment_sum(const T* __restrict__ src, const i64* __restrict__ perm, const i64* __restrict__ cstart,
                            T* __restrict__ out, i64 nct, i64 width, i64 mod, int mean) {
  const i64 total = nct * width;
  for (i64 t = blockIdx.x * (i64)blockDim.x + threadIdx.x; t < total; t += (i64)gridDim.x * blockDim.x) {
    const i64 c = t / width, k = t % width, a = cstart[c], e = cstart[c + 1];
    T s = T(0);
    for (i64 i = a; i < e; ++i) s += src[(perm[i] % mod) * width + k];
    if (mean) s /= T(e - a);
    out[t] = s;
  }
}
