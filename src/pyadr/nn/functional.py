"""The only place where pyadr.nn calls the convolution/linear engine (the public pyadr API).

`pyadr` is imported lazily inside each function so that `pyadr.nn` imports cleanly on its own
and the layering stays one-way (train -> nn -> public API).
"""
from __future__ import annotations


def conv2d_forward(x, w, b, stride=1, padding=0, dilation=1, reuse=None):
    """(y, ctx) of a convolution, exact when `reuse` is None (see DESIGN.md, "Semantics")."""
    import pyadr
    return pyadr.conv2d_forward(x, w, b, stride=stride, padding=padding, dilation=dilation,
                                reuse=reuse)


def conv2d_backward(dy, ctx, input_grad=True):
    """(dx, dw, db) of the convolution that produced `ctx`; db is None without a bias, dx is None
    with input_grad=False."""
    import pyadr
    return pyadr.conv2d_backward(dy, ctx, input_grad=input_grad)


def linear_forward(x, w, b, reuse=None):
    """(y, ctx) of y = x @ w.T + b with w of shape (out, in); rows of x are samples."""
    import pyadr
    return pyadr.linear_forward(x, w, b, reuse=reuse)


def linear_backward(dy, ctx):
    import pyadr
    return pyadr.linear_backward(dy, ctx)


def rc_of(ctx):
    """Remaining ratio of a reuse call (float), or None for an exact call."""
    stats = getattr(ctx, "stats", None)
    rc = getattr(stats, "rc", None) if stats is not None else None
    return None if rc is None else float(rc)
