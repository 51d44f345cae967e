// col2im in gather form (exact backward): every dx element sums its kh*kw possible contributions
// from cols (nimg, K, P) ("chw" columns, the layout of im2col_kp), in kernel-position order
// (i, j). No atomics, so the result is deterministic. dx points at image b0 of (B, C, H, W).
typedef long long i64;

template <class T>
__global__ void col2im_kp(const T* __restrict__ cols, T* __restrict__ dx, i64 nimg, i64 C, i64 H, i64 W,
                          i64 kh, i64 kw, i64 OH, i64 OW, i64 sh, i64 sw, i64 ph, i64 pw, i64 dh, i64 dw) {
  const i64 P = OH * OW, K = C * kh * kw, total = nimg * C * H * W;
  for (i64 t = blockIdx.x * (i64)blockDim.x + threadIdx.x; t < total; t += (i64)gridDim.x * blockDim.x) {
    const i64 xw = t % W, xh = (t / W) % H, c = (t / (W * H)) % C, b = t / (W * H * C);
    T acc = T(0);
    for (i64 i = 0; i < kh; ++i) {
      const i64 y = xh + ph - i * dh;
      if (y < 0 || y % sh != 0 || y / sh >= OH) continue;
      const i64 oh = y / sh;
      for (i64 j = 0; j < kw; ++j) {
        const i64 xx = xw + pw - j * dw;
        if (xx < 0 || xx % sw != 0 || xx / sw >= OW) continue;
        const i64 ow = xx / sw;
        acc += cols[(b * K + (c * kh + i) * kw + j) * P + oh * OW + ow];
      }
    }
    dx[t] = acc;
  }
}
