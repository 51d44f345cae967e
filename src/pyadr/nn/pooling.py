"""Max and average pooling on NCHW arrays, vectorised.

NCHW max-pooling is a classic trap: a window stack (im2col) or an np.add.at backward costs more
than the convolution. Here a 2-D max-pool is computed as two separable 1-D max-pools, first along
W then along H, each a running maximum over the k taps of strided views. Tracking the winning tap
of each stage (uint8) makes the backward two 1-D scatters, one strided `+=` per tap (the views of
one tap never overlap, so the add is exact without np.add.at). Ties go to the first maximum in
row-major window order, as in PyTorch: stage W keeps the first maximal column of each row and
stage H the first row whose maximum is the window's maximum. Padding never wins (it is -inf).

NumPy float32/float64 arrays take the native kernel instead (pyadr core, nn_ops.cpp: one pass per
plane, the argmax kept as an int32 in-plane index, same tie rule); the vectorised version above
serves CuPy arrays and is the reference the native kernel is tested against.
"""
from __future__ import annotations

from .backend import array_module


def pool_output_size(size, kernel, stride, padding):
    return (size + 2 * padding - kernel) // stride + 1


def _tap_range(n, out_len, tap, stride, padding):
    """Output positions [lo, hi) whose `tap` reads input index o*stride - padding + tap in [0, n)."""
    lo = max(0, -(-(padding - tap) // stride))
    hi = min(out_len, (n - 1 + padding - tap) // stride + 1)
    return lo, hi


def _along(axis, ndim, sl):
    idx = [slice(None)] * ndim
    idx[axis] = sl
    return tuple(idx)


def _tap_slices(n, out_len, k, s, p, axis, ndim):
    """(tap, input index, output index) for every tap that touches the input."""
    out = []
    for tap in range(k):
        lo, hi = _tap_range(n, out_len, tap, s, p)
        if lo < hi:
            start = lo * s - p + tap
            out.append((tap, _along(axis, ndim, slice(start, start + s * (hi - lo - 1) + 1, s)),
                        _along(axis, ndim, slice(lo, hi))))
    return out


def _max1d(x, axis, k, s, p, track):
    """1-D max-pool of x along `axis`; returns (y, winning tap per output or None)."""
    xp = array_module(x)
    n = x.shape[axis]
    out_len = pool_output_size(n, k, s, p)
    shape = list(x.shape)
    shape[axis] = out_len
    taps = _tap_slices(n, out_len, k, s, p, axis, x.ndim)
    y = xp.empty(shape, dtype=x.dtype)
    first_tap, first_in, first_out = taps[0]
    if first_out[axis] != slice(0, out_len):
        y.fill(-xp.inf)
    y[first_out] = x[first_in]
    arg = xp.full(shape, first_tap, dtype=xp.uint8) if track else None
    better = xp.empty(shape, dtype=xp.bool_) if track else None
    for tap, in_idx, out_idx in taps[1:]:
        src, dst = x[in_idx], y[out_idx]
        if track:
            b = better[out_idx]
            xp.greater(src, dst, out=b)
            a = arg[out_idx]
            # taps are visited in increasing order, so a winning tap is larger than the stored one
            xp.maximum(a, b.view(xp.uint8) * xp.uint8(tap), out=a)
        xp.maximum(dst, src, out=dst)
    return y, arg


def _max1d_backward(dy, arg, axis, n, k, s, p):
    xp = array_module(dy)
    shape = list(dy.shape)
    shape[axis] = n
    dx = xp.zeros(shape, dtype=dy.dtype)
    for tap, in_idx, out_idx in _tap_slices(n, dy.shape[axis], k, s, p, axis, dy.ndim):
        dx[in_idx] += dy[out_idx] * (arg[out_idx] == tap)
    return dx


def native_ok(x):
    """True when maxpool2d_forward takes the native kernel for x."""
    import numpy as np
    return isinstance(x, np.ndarray) and x.ndim == 4 and x.dtype in (np.float32, np.float64)



def _pool_geom(shape, kernel, stride, padding):
    B, C, H, W = shape
    return (B * C, H, W, kernel[0], kernel[1], stride[0], stride[1], padding[0], padding[1])


def maxpool2d_forward(x, kernel, stride, padding, track=True):
    """y (B, C, OH, OW) and the cache for `maxpool2d_backward` (None unless `track`)."""
    if native_ok(x):
        import numpy as np
        from .. import _native
        x = np.ascontiguousarray(x)
        B, C, H, W = x.shape
        shape = (B, C, pool_output_size(H, kernel[0], stride[0], padding[0]),
                 pool_output_size(W, kernel[1], stride[1], padding[1]))
        y = np.empty(shape, x.dtype)
        arg = np.empty(shape, np.int32) if track else None
        _native.maxpool_forward(0 if x.dtype == np.float32 else 1, _pool_geom(x.shape, kernel, stride, padding),
                                x, y, arg)
        return y, (("native", x.shape, kernel, stride, padding, arg) if track else None)
    return maxpool2d_forward_vectorised(x, kernel, stride, padding, track)


def maxpool2d_backward(dy, cache):
    if cache[0] == "native":
        import numpy as np
        from .. import _native
        _, x_shape, kernel, stride, padding, arg = cache
        dy = np.ascontiguousarray(dy)
        dx = np.empty(x_shape, dy.dtype)
        _native.maxpool_backward(0 if dy.dtype == np.float32 else 1, _pool_geom(x_shape, kernel, stride, padding),
                                 dy, arg, dx)
        return dx
    return maxpool2d_backward_vectorised(dy, cache)


def maxpool2d_forward_vectorised(x, kernel, stride, padding, track=True):
    """The array-module version (NumPy or CuPy) of maxpool2d_forward."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    rows, arg_w = _max1d(x, 3, kw, sw, pw, track)
    y, arg_h = _max1d(rows, 2, kh, sh, ph, track)
    cache = (x.shape, kernel, stride, padding, arg_w, arg_h) if track else None
    return y, cache


def maxpool2d_backward_vectorised(dy, cache):
    x_shape, (kh, kw), (sh, sw), (ph, pw), arg_w, arg_h = cache
    drows = _max1d_backward(dy, arg_h, 2, x_shape[2], kh, sh, ph)
    return _max1d_backward(drows, arg_w, 3, x_shape[3], kw, sw, pw)


def _sum1d(x, axis, k, s, p):
    xp = array_module(x)
    n = x.shape[axis]
    shape = list(x.shape)
    shape[axis] = pool_output_size(n, k, s, p)
    y = xp.zeros(shape, dtype=x.dtype)
    for _, in_idx, out_idx in _tap_slices(n, shape[axis], k, s, p, axis, x.ndim):
        y[out_idx] += x[in_idx]
    return y


def _sum1d_backward(dy, axis, n, k, s, p):
    xp = array_module(dy)
    shape = list(dy.shape)
    shape[axis] = n
    dx = xp.zeros(shape, dtype=dy.dtype)
    for _, in_idx, out_idx in _tap_slices(n, dy.shape[axis], k, s, p, axis, dy.ndim):
        dx[in_idx] += dy[out_idx]
    return dx


def avgpool2d_forward(x, kernel, stride, padding):
    """Average pooling, padding counted in the divisor (PyTorch's count_include_pad=True)."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    y = _sum1d(_sum1d(x, 3, kw, sw, pw), 2, kh, sh, ph)
    y *= x.dtype.type(1.0 / (kh * kw))
    return y, (x.shape, kernel, stride, padding)


def avgpool2d_backward(dy, cache):
    x_shape, (kh, kw), (sh, sw), (ph, pw) = cache
    g = dy * dy.dtype.type(1.0 / (kh * kw))
    return _sum1d_backward(_sum1d_backward(g, 2, x_shape[2], kh, sh, ph), 3, x_shape[3], kw, sw, pw)
