// im2col: gathers convolution patches. Two layouts, one op.
//   im2col_kp     exact path: cols (nimg, K, P), k = (c*kh + i)*kw + j ("chw"), P = OH*OW, so that
//                 y[b] (M, P) = Wmat (M, K) . cols[b] is one strided-batched cuBLAS GEMM.
//   im2col_blocks reuse path: S (nbg, N, L) holds sub-matrices j0 .. j0+nbg-1 of the im2col matrix
//                 with columns in `order` (0 = "hwc": k = (i*kw + j)*C + c, 1 = "chw"); columns past
//                 K (the shorter last block) are zero.
// x is read through element strides (sb, sc, sy, sx), so NCHW and an NHWC copy share one kernel.
// Grid-stride loops over int64 indices; no atomics.
typedef long long i64;

template <class T>
__global__ void im2col_kp(const T* __restrict__ x, T* __restrict__ cols, i64 nimg, i64 C, i64 H, i64 W,
                          i64 kh, i64 kw, i64 OH, i64 OW, i64 sh, i64 sw, i64 ph, i64 pw, i64 dh, i64 dw,
                          i64 sb, i64 sc, i64 sy, i64 sx) {
  const i64 P = OH * OW, K = C * kh * kw, total = nimg * K * P;
  for (i64 t = blockIdx.x * (i64)blockDim.x + threadIdx.x; t < total; t += (i64)gridDim.x * blockDim.x) {
    const i64 p = t % P, r = t / P, k = r % K, b = r / K;
    const i64 ow = p % OW, oh = p / OW;
    const i64 j = k % kw, i = (k / kw) % kh, c = k / (kw * kh);
    const i64 iy = oh * sh - ph + i * dh, ix = ow * sw - pw + j * dw;
    T v = T(0);
    if (iy >= 0 && iy < H && ix >= 0 && ix < W) v = x[b * sb + c * sc + iy * sy + ix * sx];
    cols[t] = v;
  }
}

template <class T>
__global__ void im2col_blocks(const T* __restrict__ x, T* __restrict__ S, i64 j0, i64 nbg, i64 L, i64 B,
                              i64 C, i64 H, i64 W, i64 kh, i64 kw, i64 OH, i64 OW, i64 sh, i64 sw, i64 ph,
                              i64 pw, i64 dh, i64 dw, i64 sb, i64 sc, i64 sy, i64 sx, int order) {
  const i64 P = OH * OW, N = B * P, K = C * kh * kw, total = nbg * N * L;
  for (i64 t = blockIdx.x * (i64)blockDim.x + threadIdx.x; t < total; t += (i64)gridDim.x * blockDim.x) {
    const i64 kk = t % L, r = t / L, n = r % N, jb = r / N;
    const i64 k = (j0 + jb) * L + kk;
    T v = T(0);
    if (k < K) {
      i64 c, i, j;
      if (order == 0) {
        c = k % C; j = (k / C) % kw; i = k / (C * kw);
      } else {
        j = k % kw; i = (k / kw) % kh; c = k / (kw * kh);
      }
      const i64 b = n / P, p = n % P, oh = p / OW, ow = p % OW;
      const i64 iy = oh * sh - ph + i * dh, ix = ow * sw - pw + j * dw;
      if (iy >= 0 && iy < H && ix >= 0 && ix < W) v = x[b * sb + c * sc + iy * sy + ix * sx];
    }
    S[t] = v;
  }
}
