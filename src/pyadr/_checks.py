"""The one private module of argument checks and layout helpers (layer 2, its lowest module).

Shared by the CPU facade (pyadr._api), the GPU backend (pyadr.gpu), the slow reference
(pyadr.reference) and the layers above (pyadr.nn, pyadr.torch), so that every path raises the same
TypeError/ValueError, naming the argument, for the same bad input. Imports only NumPy and
pyadr._config; never the binding, never CuPy (array types are checked by the caller, which knows
its backend, and the checks below read only .dtype/.ndim/.shape/.size).

  float_array(a, name, ndim)       dtype float32/float64, ndim, non-empty (a already of the right type)
  pair(v, name)                    int or (int, int) -> (int, int) (types only: values are C++'s)
  check_reuse(reuse)               a ReuseConfig or None -> reuse
  ReuseSetting                     descriptor: a layer's `reuse` attribute, checked on assignment
  conv_geometry(x, w, b, ...)      shapes/dtypes of a convolution call -> (b, geom)
  check_backward(dy, ctx, ...)     ctx from the matching forward, dy of its output's dtype/shape
  column_permutation(C, kh, kw, order)   column order of the sub-vectors ("hwc" / "chw")
  DTYPE_CODES, ORDER_CODES, HASH_CODES, SCOPE_CODES   the enum codes of the C API / kernels
  exact_bits(reuse)                ReuseConfig.exact as the C API's PYADR_EXACT_* bit mask
"""
from __future__ import annotations

import numbers

import numpy as np

from ._config import ReuseConfig

DTYPE_CODES = {np.dtype(np.float32): 0, np.dtype(np.float64): 1}
ORDER_CODES = {"hwc": 0, "chw": 1}
HASH_CODES = {"sign": 0, "l2": 1}
SCOPE_CODES = {"batch": 0, "input": 1}
EXACT_BITS = {"forward": 1, "dw": 2, "dx": 4}   # PYADR_EXACT_FORWARD, _DW, _DX


def exact_bits(reuse):
    """The products a ReuseConfig computes exactly, as a bit mask (0: all three reused)."""
    return sum(EXACT_BITS[p] for p in reuse.exact)


def float_array(a, name, ndim):
    """Checks an array (NumPy or CuPy, type checked by the caller): float32/float64, `ndim`-D,
    not empty. Returns it unchanged (the caller makes it contiguous with its own module)."""
    if a.dtype not in DTYPE_CODES:
        raise TypeError(f"{name} must be float32 or float64, got {a.dtype}")
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {a.shape}")
    return a


def pair(v, name):
    """An int or a pair of ints (bools rejected) -> (int, int). Only the type and the arity: the
    values (stride >= 1, padding >= 0, dilation >= 1, ...) are checked once, by the native core's
    params unit (native/src/params.cpp), for the CPU and the GPU path alike."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")
        vals = tuple(v)
    else:
        vals = (v, v)
    for e in vals:
        if isinstance(e, bool) or not isinstance(e, numbers.Integral):
            raise TypeError(f"{name} must be an int or a pair of ints, got {v!r}")
    return int(vals[0]), int(vals[1])


def check_reuse(reuse):
    """reuse must be a pyadr.ReuseConfig or None; returns it."""
    if reuse is not None and not isinstance(reuse, ReuseConfig):
        raise TypeError(f"reuse must be a pyadr.ReuseConfig or None, got {type(reuse).__name__}")
    return reuse


class ReuseSetting:
    """Data descriptor for a layer's `reuse` attribute (pyadr.nn and pyadr.torch layers): reads
    `obj._reuse`, and every assignment goes through check_reuse (a ReuseConfig or None)."""

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        return obj._reuse

    def __set__(self, obj, value):
        obj._reuse = check_reuse(value)


def conv_geometry(x, w, b, stride, padding, dilation, reuse, as_array):
    """Checks a convolution call whose x and w passed float_array(.., 4).

    x (B, C, H, W), w (M, C, kh, kw) of x's dtype, b (M,) of x's dtype or None (checked with
    `as_array(b, "b", 1)`, the caller's array check, and replaced by what it returns), stride,
    padding and dilation ints or pairs of ints, reuse a ReuseConfig or None. Their values are the
    native core's to check (pyadr._native.output_shape(geom), used by both backends).
    Returns (b, geom), geom = (B, C, H, W, M, kh, kw, sh, sw, ph, pw, dh, dw) as the C API takes it.
    """
    dtype = x.dtype
    if w.dtype != dtype:
        raise TypeError(f"w must have the dtype of x ({dtype}), got {w.dtype}")
    B, C, H, W = x.shape
    M, Cw, kh, kw = w.shape
    if Cw != C:
        raise ValueError(f"w must have shape (out_channels, {C}, kh, kw) to match x's {C} channels, "
                         f"got {w.shape}")
    if b is not None:
        b = as_array(b, "b", 1)
        if b.dtype != dtype:
            raise TypeError(f"b must have the dtype of x ({dtype}), got {b.dtype}")
        if b.shape != (M,):
            raise ValueError(f"b must have shape ({M},), got {b.shape}")
    sh, sw = pair(stride, "stride")
    ph, pw = pair(padding, "padding")
    dh, dw = pair(dilation, "dilation")
    check_reuse(reuse)
    return b, (B, C, H, W, M, kh, kw, sh, sw, ph, pw, dh, dw)


def check_backward(dy, ctx, ctx_type, kind, fn_name):
    """Shared by the CPU and GPU backends: ctx must come from `fn_name`, dy must match its output."""
    if not isinstance(ctx, ctx_type) or ctx.kind != kind:
        raise TypeError(f"ctx must be the context returned by pyadr.{fn_name}, got {type(ctx).__name__}"
                        + (f" of a {ctx.kind} call" if isinstance(ctx, ctx_type) else ""))
    if dy.dtype != ctx.dtype:
        raise TypeError(f"dy must have the dtype of the forward call ({ctx.dtype}), got {dy.dtype}")
    if tuple(dy.shape) != tuple(ctx.y_shape):
        raise ValueError(f"dy must have the shape of the forward output {ctx.y_shape}, got {dy.shape}; "
                         f"is ctx from another call?")


def column_permutation(C, kh, kw, order):
    """(K,) int: perm[k_ordered] = k in the (c, i, j) flattening (PyTorch's w[m].ravel() order)."""
    idx = np.arange(C * kh * kw).reshape(C, kh, kw)
    if order == "chw":
        return idx.ravel()
    if order == "hwc":
        return idx.transpose(1, 2, 0).ravel()
    raise ValueError(f"order must be 'hwc' or 'chw', got {order!r}")
