// Reuse backward, input gradient: D (nct_g, L) = (Gamma / |c|) . Wm_j^T holds one row per cluster
// of the blocks j0 .. j0+nbg-1; dX[n, block j] = D[c_j(n)] is never materialised: every dx element
// gathers its kh*kw contributions (col2im in gather form) from the rows of D that the clusters of
// its patches point at, in kernel-position order (i, j), and adds them to dx (B, C, H, W).
// Columns of other block groups are skipped (they are added by other calls). No atomics.
// order: 0 = "hwc" (k = (i*kw + j)*C + c), 1 = "chw" (k = (c*kh + i)*kw + j).
typedef long long i64;

template <class T>
__global__ void col2im_clusters(const T* __restrict__ D, const int* __restrict__ ids, const i64* __restrict__ boff,
                                T* __restrict__ dx, i64 j0, i64 nbg, i64 L, i64 B, i64 C, i64 H, i64 W, i64 kh,
                                i64 kw, i64 OH, i64 OW, i64 sh, i64 sw, i64 ph, i64 pw, i64 dh, i64 dw, int order) {
  const i64 N = B * OH * OW, total = B * C * H * W;
  for (i64 t = blockIdx.x * (i64)blockDim.x + threadIdx.x; t < total; t += (i64)gridDim.x * blockDim.x) {
    const i64 xw = t % W, xh = (t / W) % H, c = (t / (W * H)) % C, b = t / (W * H * C);
    T acc = dx[t];
    for (i64 i = 0; i < kh; ++i) {
      const i64 y = xh + ph - i * dh;
      if (y < 0 || y % sh != 0 || y / sh >= OH) continue;
      const i64 oh = y / sh;
      for (i64 j = 0; j < kw; ++j) {
        const i64 xx = xw + pw - j * dw;
        if (xx < 0 || xx % sw != 0 || xx / sw >= OW) continue;
        const i64 ow = xx / sw;
        const i64 k = order == 0 ? (i * kw + j) * C + c : (c * kh + i) * kw + j;
        const i64 jb = k / L - j0;
        if (jb < 0 || jb >= nbg) continue;
        const i64 n = (b * OH + oh) * OW + ow;
        acc += D[(boff[jb] + ids[jb * N + n]) * L + k % L];
      }
    }
    dx[t] = acc;
  }
}
