// Reconstruction after the centroid GEMM (Yc_j = centroids_j . Wm_j, one cuBLAS call per block):
//   Y[n, m] += sum over jb of Yc[boff[jb] + ids[jb, n], m]   for the nbg blocks of one group,
// blocks in increasing order. Y (N, M) starts as the bias (or 0), matching the reference's
// `Y = b; Y += (cent @ Wm)[ids]` order. One thread per (n, m), m fastest; no atomics.
typedef long long i64;

template <class T>
__global__ void gather_add(const T* __restrict__ Yc, const int* __restrict__ ids, const i64* __restrict__ boff,
                           T* __restrict__ Y, i64 nbg, i64 N, i64 M) {
  const i64 total = N * M;
  for (i64 t = blockIdx.x * (i64)blockDim.x + threadIdx.x; t < total; t += (i64)gridDim.x * blockDim.x) {
    const i64 n = t / M, m = t % M;
    T acc = Y[t];
    for (i64 jb = 0; jb < nbg; ++jb) acc += Yc[(boff[jb] + ids[jb * N + n]) * M + m];
    Y[t] = acc;
  }
}
