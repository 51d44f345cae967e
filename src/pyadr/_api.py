"""Public functions: argument checks, then the native CPU engine (pyadr._native).

Every check happens here, before any native call, so that bad input raises TypeError/ValueError
naming the argument; the binding only converts pointers and releases the GIL.
"""
from __future__ import annotations

import numbers

import numpy as np

from ._checks import (DTYPE_CODES, HASH_CODES, ORDER_CODES, SCOPE_CODES, check_backward, conv_geometry,
                      exact_bits, float_array)
from . import _onednn
from ._context import Conv2dContext, ReuseStats


def _native():
    from . import _native as nat  # imported on first use: keeps `import pyadr` light
    from ._blas import ensure_injected
    ensure_injected(nat)
    return nat


def _is_cupy(a):
    return type(a).__module__.split(".")[0] == "cupy"


def _gpu():
    from . import gpu  # CuPy itself is imported by pyadr.gpu only when a kernel runs
    if not gpu.is_available():
        raise TypeError(f"CuPy arrays need pyadr's GPU backend, which is unavailable: {gpu.why_unavailable()}")
    return gpu


def _array(a, name, ndim):
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray (or a CuPy array), got {type(a).__name__}")
    return np.ascontiguousarray(float_array(a, name, ndim))


def _conv_forward(x, w, b, stride, padding, dilation, reuse, kind):
    b, geom = conv_geometry(x, w, b, stride, padding, dilation, reuse, _array)
    dtype = x.dtype
    B, C, H, W, M, kh, kw = geom[:7]
    nat = _native()
    _onednn.ensure_configured()  # the conv provider (PYADR_CONV_PROVIDER), on the first convolution
    OH, OW = nat.output_shape(geom)
    y = np.empty((B, M, OH, OW), dtype=dtype)
    ctx = Conv2dContext(kind, geom, dtype, (B, M, OH, OW), b is not None, reuse)
    code = DTYPE_CODES[dtype]
    if reuse is None:
        nat.conv_forward_exact(code, geom, x, w, b, y)
        ctx._x, ctx._w = x, w
        return y, ctx
    K = C * kh * kw
    planes, offsets, width = reuse.resolve(K, x=x)
    planes = np.ascontiguousarray(planes, dtype=dtype)
    offsets = None if offsets is None else np.ascontiguousarray(offsets, dtype=dtype)
    state = nat.conv_forward_reuse(code, geom, reuse.L, reuse.H, ORDER_CODES[reuse.order], HASH_CODES[reuse.hash],
                                   SCOPE_CODES[reuse.scope], planes, offsets, 1.0 if width is None else width,
                                   exact_bits(reuse), x, w, b, y)
    ctx._state = state
    ctx.planes, ctx.offsets, ctx.width = planes, offsets, width
    ctx.stats = ReuseStats(rc=state.rc, clusters=np.asarray(state.clusters(), dtype=np.int64),
                           rows=state.rows, L=reuse.L, nbytes=state.nbytes)
    return y, ctx


def exact_context(x, w, has_bias, stride=1, padding=0, dilation=1, kind="conv2d"):
    """The context conv2d_forward(x, w, b, ..., reuse=None) (kind="linear": linear_forward(x, w,
    b)) returns, without running the forward: an exact backward needs only x and w. For callers
    that keep the inputs and run the backward later (pyadr.jax, pyadr.torch's exact grad op)."""
    if kind == "linear":
        x, w = _array(x, "x", 2)[:, :, None, None], _array(w, "w", 2)[:, :, None, None]
        stride, padding, dilation = 1, 0, 1
    else:
        x, w = _array(x, "x", 4), _array(w, "w", 4)
    _, geom = conv_geometry(x, w, None, stride, padding, dilation, None, _array)
    OH, OW = _native().output_shape(geom)
    ctx = Conv2dContext(kind, geom, x.dtype, (geom[0], geom[4], OH, OW), bool(has_bias), None)
    ctx._x, ctx._w = x, w
    return ctx


def _conv_backward(dy, ctx, kind, fn_name, input_grad=True):
    check_backward(dy, ctx, Conv2dContext, kind, fn_name)
    B, C, H, W, M, kh, kw = ctx.geom[:7]
    dx = np.empty((B, C, H, W), dtype=ctx.dtype) if input_grad else None
    dw = np.empty((M, C, kh, kw), dtype=ctx.dtype)
    db = np.empty((M,), dtype=ctx.dtype) if ctx.has_bias else None
    nat = _native()
    code = DTYPE_CODES[ctx.dtype]
    if ctx._state is None:
        nat.conv_backward_exact(code, ctx.geom, ctx._x, ctx._w, dy, dx, dw, db)
    else:
        ctx._state.backward(dy, dx, dw, db)
    return dx, dw, db


def conv2d_forward(x, w, b=None, stride=1, padding=0, dilation=1, reuse=None):
    """2-D convolution, exact (reuse=None) or with deep reuse (reuse=ReuseConfig(...)).

    x (B, C, H, W), w (M, C, kh, kw), b (M,) or None; float32 or float64, NumPy arrays.
    stride, padding, dilation: int or (h, w). Returns y (B, M, OH, OW) and a context for
    conv2d_backward; with reuse, ctx.stats.rc is the remaining ratio and ctx.planes (ctx.offsets,
    ctx.width for hash="l2") the hashing parameters used.
    """
    if _is_cupy(x):
        return _gpu().conv2d_forward(x, w, b, stride, padding, dilation, reuse)
    x = _array(x, "x", 4)
    w = _array(w, "w", 4)
    return _conv_forward(x, w, b, stride, padding, dilation, reuse, "conv2d")


def conv2d_backward(dy, ctx, input_grad=True):
    """Gradients (dx, dw, db) of conv2d_forward for upstream gradient dy (B, M, OH, OW).

    With reuse this is the exact derivative of the reuse forward with its clusters held fixed.
    db is None when the forward had no bias. input_grad=False skips dx (returned as None), e.g.
    for a network's first layer, whose input needs no gradient.
    """
    if not isinstance(input_grad, (bool, np.bool_)):
        raise TypeError(f"input_grad must be a bool, got {type(input_grad).__name__}")
    if getattr(ctx, "device", "cpu") == "gpu":
        dx, dw, db = _gpu().conv2d_backward(dy, ctx)
        return (dx if input_grad else None), dw, db
    dy = _array(dy, "dy", 4)
    return _conv_backward(dy, ctx, "conv2d", "conv2d_forward", bool(input_grad))


def linear_forward(x, w, b=None, reuse=None):
    """Fully connected layer y = x w^T + b; x (B, in), w (out, in); rows (samples) are clustered."""
    if _is_cupy(x):
        return _gpu().linear_forward(x, w, b, reuse)
    x = _array(x, "x", 2)
    w = _array(w, "w", 2)
    if w.shape[1] != x.shape[1]:
        raise ValueError(f"w must have shape (out_features, {x.shape[1]}) to match x, got {w.shape}")
    y, ctx = _conv_forward(x[:, :, None, None], w[:, :, None, None], b, 1, 0, 1, reuse, "linear")
    return y[:, :, 0, 0], ctx


def linear_backward(dy, ctx):
    """Gradients (dx (B, in), dw (out, in), db (out,) or None) of linear_forward."""
    if getattr(ctx, "device", "cpu") == "gpu":
        return _gpu().linear_backward(dy, ctx)
    dy = _array(dy, "dy", 2)
    dx, dw, db = _conv_backward(dy[:, :, None, None], ctx, "linear", "linear_forward")
    return dx[:, :, 0, 0], dw[:, :, 0, 0], db


def set_num_threads(n):
    """Threads of the native engine (default: OpenMP's, which honours OMP_NUM_THREADS)."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    _native().set_threads(int(n))


def get_num_threads():
    return _native().get_threads()


def empty_cache():
    """Gives back to the OS the large scratch blocks (>= 256 KiB) the engine keeps between calls.

    Freed blocks are kept (up to PYADR_CACHE_MB, default 256; read once, 0 turns this off) and
    handed to the next call's request of the same size, which saves a page fault and a zero-fill
    per 4 KiB page. Returns the number of bytes released."""
    nat = _native()
    held = nat.cache_bytes()
    nat.empty_cache()
    return held


# ---- framework interop (pyadr/_interop.py) -------------------------------------------------------
# PyTorch tensors, JAX arrays and other CPU DLPack producers are converted to NumPy without a copy
# and results are handed back in the caller's kind. NumPy/CuPy calls take the unchanged path above.
from ._interop import dlpack_boundary as _dlpack_boundary  # noqa: E402

conv2d_forward = _dlpack_boundary(conv2d_forward, ("x", "w", "b"))
conv2d_backward = _dlpack_boundary(conv2d_backward, ("dy",))
linear_forward = _dlpack_boundary(linear_forward, ("x", "w", "b"))
linear_backward = _dlpack_boundary(linear_backward, ("dy",))
