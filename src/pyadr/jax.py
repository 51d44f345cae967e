"""pyadr.jax: pyadr's convolution and fully connected layer as JAX functions that jit, grad and vmap.

  conv2d(x, w, b=None, stride=1, padding=0, dilation=1, reuse=None)  x (B, C, H, W), w (M, C, kh, kw)
                                                                      -> y (B, M, OH, OW)
  linear(x, w, b=None, reuse=None)                                    x (B, in), w (out, in) -> y (B, out)

How it works:
- forward: `jax.pure_callback` runs pyadr.conv2d_forward / linear_forward on the host (NumPy
  arrays, pyadr's CPU engine), so the call can sit inside `jax.jit` like any other op.
- backward: `jax.custom_vjp`. The residuals are the inputs (x, w, b) -- JAX arrays, as jit needs;
  the native reuse context (cluster ids, centroids) is no JAX value, so the backward callback
  RECOMPUTES it: it re-runs the forward on the same x and w, which clusters the rows the same
  way (the hash planes come from ReuseConfig.seed, an automatic l2 width from x itself), then
  calls pyadr.conv2d_backward / linear_backward. The gradients are thus exactly those of the
  eager API (conv2d_forward + conv2d_backward on one context); the price is one more forward per
  backward (a forward at the rung's remaining ratio). reuse=None is the exact convolution: its
  backward needs only x and w (pyadr._api.exact_context), so it runs no second forward.
- vmap: each mapped element is one pyadr call (vmap_method="sequential"), so vmap(f)(xs)[i] equals
  f(xs[i]) -- with reuse, every element is clustered on its own, as a call on it alone would be.
- dtypes: float32 and float64 (float64 needs jax_enable_x64) run as they are; float16 and
  bfloat16 are computed in float32 and returned in the input dtype. Every argument must have
  x's dtype; anything else (integers, complex, mixed dtypes, bad shapes) raises TypeError or
  ValueError when the function is traced, with pyadr's own message.
- forward-mode differentiation (jax.jvp, jax.jacfwd) is not available: custom_vjp defines the
  reverse mode only, and JAX says so when asked.

Everything runs on the host CPU: arrays on an accelerator are copied to the host by the callback.
Callbacks take turns (a lock): XLA may start independent ones at once, and each pyadr call
already uses all engine threads. This module imports jax; `import pyadr` never imports it.
"""
from __future__ import annotations

import functools
import threading

import jax
import jax.numpy as jnp
import numpy as np

from . import _api
from ._checks import conv_geometry, float_array, pair
from ._config import ReuseConfig

__all__ = ["conv2d", "linear"]

# XLA may run independent callbacks at once on its threads; each pyadr call already uses every
# engine thread (OpenMP), so they take turns: one level of parallelism.
_ENGINE = threading.Lock()
_COMPUTED_IN_FLOAT32 = ("float16", "bfloat16")
_NATIVE = ("float32", "float64")


def _compute_dtype(x, w, b):
    """(dtype to return, dtype pyadr computes in); every argument must share x's dtype."""
    dtype = np.dtype(x.dtype)
    if dtype.name not in _NATIVE + _COMPUTED_IN_FLOAT32:
        raise TypeError(f"x must be a float32, float64, float16 or bfloat16 array, got {dtype}")
    for name, a in (("w", w), ("b", b)):
        if a is not None and np.dtype(a.dtype) != dtype:
            raise TypeError(f"{name} must have the dtype of x ({dtype}), got {np.dtype(a.dtype)}")
    return dtype, (np.dtype(np.float32) if dtype.name in _COMPUTED_IN_FLOAT32 else dtype)


def _stand_in(shape, dtype):
    """A zero-byte NumPy array of `shape`: pyadr's checks read only shape and dtype."""
    return np.broadcast_to(np.zeros((), dtype=dtype), tuple(shape))


def _as_array(a, name, ndim):
    return float_array(a, name, ndim)


def _conv_output_shape(x_shape, w_shape, b_shape, dtype, stride, padding, dilation, reuse):
    """Checks a conv2d call on shapes alone (pyadr's messages) and returns y's shape."""
    x = float_array(_stand_in(x_shape, dtype), "x", 4)
    w = float_array(_stand_in(w_shape, dtype), "w", 4)
    b = None if b_shape is None else _stand_in(b_shape, dtype)
    _, geom = conv_geometry(x, w, b, stride, padding, dilation, reuse, _as_array)
    B, C, _, _, M, kh, kw = geom[:7]
    if reuse is not None:
        reuse.resolve(C * kh * kw, mean_square=1.0)      # L <= K and the like, before any callback
    OH, OW = _api._native().output_shape(geom)
    return (B, M, OH, OW)


def _linear_output_shape(x_shape, w_shape, b_shape, dtype, reuse):
    x = float_array(_stand_in(x_shape, dtype), "x", 2)
    w = float_array(_stand_in(w_shape, dtype), "w", 2)
    if w.shape[1] != x.shape[1]:
        raise ValueError(f"w must have shape (out_features, {x.shape[1]}) to match x, got {w.shape}")
    x4, w4 = x[:, :, None, None], w[:, :, None, None]
    b = None if b_shape is None else _stand_in(b_shape, dtype)
    conv_geometry(x4, w4, b, 1, 0, 1, reuse, _as_array)
    if reuse is not None:
        reuse.resolve(x.shape[1], mean_square=1.0)
    return (x.shape[0], w.shape[0])


@functools.lru_cache(maxsize=256)
def _vjp_op(kind, stride, padding, dilation, reuse, has_bias):
    """The custom_vjp function of one call signature (kind, geometry, reuse, bias or not); its
    arguments are float32/float64 JAX arrays (x, w) or (x, w, b)."""

    def forward(x, w, b):
        if kind == "conv2d":
            return _api.conv2d_forward(x, w, b, stride, padding, dilation, reuse)
        return _api.linear_forward(x, w, b, reuse)

    def host_forward(*args):
        x, w, b = _host(args)
        with _ENGINE:
            return forward(x, w, b)[0]

    def host_backward(*args):
        x, w, b = _host(args[:-1])
        dy = np.ascontiguousarray(args[-1])
        with _ENGINE:
            if reuse is None:                      # exact: the backward needs x and w only
                ctx = _api.exact_context(x, w, b is not None, stride, padding, dilation, kind)
            else:
                _, ctx = forward(x, w, b)          # the same clusters as the forward's (see above)
            if kind == "conv2d":
                dx, dw, db = _api.conv2d_backward(dy, ctx)
            else:
                dx, dw, db = _api.linear_backward(dy, ctx)
        return (dx, dw, db) if has_bias else (dx, dw)

    def y_struct(x, w, b_shape):
        if kind == "conv2d":
            shape = _conv_output_shape(x.shape, w.shape, b_shape, x.dtype, stride, padding, dilation, reuse)
        else:
            shape = _linear_output_shape(x.shape, w.shape, b_shape, x.dtype, reuse)
        return jax.ShapeDtypeStruct(shape, x.dtype)

    @jax.custom_vjp
    def op(*args):
        x, w = args[:2]
        b_shape = args[2].shape if has_bias else None
        return jax.pure_callback(host_forward, y_struct(x, w, b_shape), *args, vmap_method="sequential")

    def op_fwd(*args):
        return op(*args), args

    def op_bwd(residuals, dy):
        structs = tuple(jax.ShapeDtypeStruct(a.shape, a.dtype) for a in residuals)
        return tuple(jax.pure_callback(host_backward, structs, *residuals, dy, vmap_method="sequential"))

    op.defvjp(op_fwd, op_bwd)
    return op


def _host(args):
    """NumPy (x, w, b) from a callback's arguments (contiguous: the engine's layout)."""
    arrays = [np.ascontiguousarray(a) for a in args]
    return arrays[0], arrays[1], (arrays[2] if len(arrays) > 2 else None)


def _check_reuse(reuse):
    if reuse is not None and not isinstance(reuse, ReuseConfig):
        raise TypeError(f"reuse must be a pyadr.ReuseConfig or None, got {type(reuse).__name__}")
    return reuse


def _call(kind, x, w, b, geometry, reuse):
    x, w = jnp.asarray(x), jnp.asarray(w)
    b = None if b is None else jnp.asarray(b)
    out_dtype, compute = _compute_dtype(x, w, b)
    args = tuple(a.astype(compute) for a in (x, w, b) if a is not None)
    y = _vjp_op(kind, *geometry, _check_reuse(reuse), b is not None)(*args)
    return y.astype(out_dtype)


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, reuse=None):
    """2-D convolution through pyadr, exact (reuse=None) or with deep reuse (a pyadr.ReuseConfig).

    x (B, C, H, W), w (M, C, kh, kw), b (M,) or None: JAX arrays (or anything jnp.asarray takes)
    of one floating dtype. stride, padding, dilation: int or (h, w), static. Returns y
    (B, M, OH, OW) in x's dtype. Differentiable in x, w and b with jax.grad / jax.vjp; works
    under jax.jit and jax.vmap.
    """
    geometry = (pair(stride, "stride"), pair(padding, "padding"), pair(dilation, "dilation"))
    return _call("conv2d", x, w, b, geometry, reuse)


def linear(x, w, b=None, reuse=None):
    """Fully connected layer y = x w^T + b through pyadr; x (B, in), w (out, in), b (out,) or None.
    With reuse, the rows of x (the samples) are clustered. Returns y (B, out) in x's dtype."""
    return _call("linear", x, w, b, (None, None, None), reuse)
