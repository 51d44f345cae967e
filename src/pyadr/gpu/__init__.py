"""pyadr.gpu: the CUDA backend (CuPy RawModules over pyadr/gpu/kernels/*.cu).

Same contract as the CPU functions of `pyadr` (DESIGN.md), on CuPy arrays: CuPy in, CuPy out.

    pyadr.gpu.is_available() -> bool          CuPy importable and at least one CUDA device usable
    pyadr.gpu.why_unavailable() -> str        "" when available, else the reason
    pyadr.gpu.precompile()                    compile every kernel for the current device now
    y, ctx = pyadr.gpu.conv2d_forward(x, w, b, stride, padding, dilation, reuse)
    dx, dw, db = pyadr.gpu.conv2d_backward(dy, ctx)
    y, ctx = pyadr.gpu.linear_forward(x, w, b, reuse);  dx, dw, db = pyadr.gpu.linear_backward(dy, ctx)

ctx is a `pyadr.gpu._context.GpuConv2dContext`, a subclass of `pyadr.Conv2dContext`: `.stats`
(pyadr.ReuseStats, NumPy), `.planes`/`.offsets` (NumPy, in the layer's dtype), `.width` (float);
`.cluster_ids()`, `.cluster_counts(j)`, `.centroids(j)` return CuPy arrays.

Importing this module never imports CuPy; kernels are compiled on first use (or by precompile()),
cached per device and template argument.

Layer 2, beside pyadr._api (which dispatches CuPy arrays here): modules of pyadr.gpu import only
each other, pyadr._checks, pyadr._config, pyadr._context and the binding pyadr._native (whose
params unit checks every argument value, for both backends); never pyadr._api (a cycle) nor
pyadr.reference (the slow test reference).
  conv       exact and reuse convolution / linear, forward and backward
  _context   GpuConv2dContext and its typed reuse state (GpuForwardState, GpuGroup)
  _kernels   loading, compiling and launching kernels/*.cu
"""
from __future__ import annotations

import importlib.util

__all__ = ["is_available", "why_unavailable", "precompile", "conv2d_forward", "conv2d_backward",
           "linear_forward", "linear_backward"]


def why_unavailable() -> str:
    """Why the GPU backend cannot run here ("" when it can)."""
    if importlib.util.find_spec("cupy") is None:
        return "CuPy is not installed (pip install cupy-cuda12x or cupy-cuda13x, matching the CUDA driver)"
    try:
        import cupy
    except Exception as exc:  # noqa: BLE001 - report, never fail
        return f"CuPy is installed but cannot be imported ({type(exc).__name__}: {exc})"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001
        return f"CuPy {cupy.__version__} finds no usable CUDA device ({type(exc).__name__}: {exc})"
    if n < 1:
        return f"CuPy {cupy.__version__} finds no CUDA device"
    return ""


def is_available() -> bool:
    """True when CuPy imports and a CUDA device can be used."""
    return why_unavailable() == ""


def _require():
    reason = why_unavailable()
    if reason:
        raise RuntimeError(f"pyadr.gpu is not available: {reason}")


def precompile(dtypes=("float", "double")) -> None:
    """Compiles (or loads from CuPy's kernel cache) every kernel for the current device."""
    _require()
    from . import _kernels
    _kernels.precompile(dtypes)


def conv2d_forward(x, w, b=None, stride=1, padding=0, dilation=1, reuse=None):
    """pyadr.conv2d_forward on CuPy arrays. Returns (y CuPy (B, M, OH, OW), GpuConv2dContext)."""
    from . import conv
    return conv.conv2d_forward(x, w, b, stride, padding, dilation, reuse)


def conv2d_backward(dy, ctx):
    """pyadr.conv2d_backward on CuPy arrays: (dx, dw, db or None)."""
    from . import conv
    return conv.conv2d_backward(dy, ctx)


def linear_forward(x, w, b=None, reuse=None):
    """pyadr.linear_forward on CuPy arrays: x (B, in), w (out, in) -> (y (B, out), ctx)."""
    from . import conv
    return conv.linear_forward(x, w, b, reuse)


def linear_backward(dy, ctx):
    """pyadr.linear_backward on CuPy arrays: (dx (B, in), dw (out, in), db or None)."""
    from . import conv
    return conv.linear_backward(dy, ctx)
