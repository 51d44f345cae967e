"""Helpers shared by the tests: exactly representable data and comparisons with the reference.

"Exact" data: integer-valued x in a small range, half-integer planes, power-of-two l2 widths and
offsets that are multiples of 0.5 (or 0.25).  Every projection is then a small multiple of 0.25,
exact in float32 and float64 whatever the summation order, so native and reference hash keys,
and therefore partitions, must be identical.
"""
import numpy as np

import pyadr
from pyadr import reference as ref

DTYPES = (np.float32, np.float64)


def rtol_for(dtype):
    return 1e-5 if np.dtype(dtype) == np.float32 else 1e-12


def assert_close(actual, expected, dtype, factor=1.0, err_msg=""):
    """|actual - expected| <= rtol * (|expected| + max|expected|), rtol by dtype."""
    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(actual)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    r = rtol_for(dtype) * factor
    np.testing.assert_allclose(actual.astype(np.float64), expected, rtol=r, atol=r * scale, err_msg=err_msg)


def int_data(rng, shape, dtype, lo=-2, hi=2):
    return rng.integers(lo, hi + 1, size=shape).astype(dtype)


def half_planes(rng, L, H, lo=-3, hi=3):
    """(L, H) planes of half-integers in [lo + 0.5, hi - 0.5]."""
    return rng.integers(lo, hi, size=(L, H)).astype(np.float64) + 0.5


def exact_cfg(rng, L, H, hash="sign", order="hwc", scope="batch", width=2.0, quarter=False):
    """A ReuseConfig whose projections of integer data are exact."""
    planes = half_planes(rng, L, H)
    if hash == "sign":
        return pyadr.ReuseConfig(planes=planes, order=order, scope=scope, hash="sign")
    if quarter:   # offsets in 0.25 + 0.5 Z: no projection of integer data lies on a bucket boundary
        offsets = rng.integers(0, int(2 * width), size=H) * 0.5 + 0.25
    else:
        offsets = rng.integers(0, int(2 * width), size=H) * 0.5
    return pyadr.ReuseConfig(planes=planes, order=order, scope=scope, hash="l2", width=width, offsets=offsets)


def compare_state(ctx, rctx, dtype):
    """Native clustering (ids, counts, centroids, rc, stats) equals the reference's."""
    st = rctx["state"]
    ids = ctx.cluster_ids()
    nb = len(st["ids"])
    assert ids.dtype == np.int32
    assert ids.shape == (nb, st["N"])
    assert ctx.stats.blocks == nb
    assert ctx.stats.rows == st["N"]
    np.testing.assert_array_equal(ctx.stats.clusters, [len(c) for c in st["counts"]])
    for j in range(nb):
        np.testing.assert_array_equal(ids[j], st["ids"][j], err_msg=f"ids of block {j}")
        np.testing.assert_array_equal(ctx.cluster_counts(j), st["counts"][j], err_msg=f"counts of block {j}")
        cent = ctx.centroids(j)
        assert cent.dtype == np.dtype(dtype)
        assert_close(cent, st["centroids"][j], dtype, err_msg=f"centroids of block {j}")
    assert abs(ctx.stats.rc - rctx["rc"]) <= 1e-12 * max(1.0, rctx["rc"])


def conv_both(x, w, b, cfg, stride=1, padding=0, dilation=1):
    y, ctx = pyadr.conv2d_forward(x, w, b, stride=stride, padding=padding, dilation=dilation, reuse=cfg)
    yr, rctx = ref.conv2d_forward(x, w, b, stride=stride, padding=padding, dilation=dilation, reuse=cfg)
    return y, ctx, yr, rctx


def check_conv_vs_reference(rng, x, w, b, cfg, stride=1, padding=0, dilation=1):
    """Forward and backward of pyadr against pyadr.reference for one reuse (or exact) call."""
    dtype = x.dtype
    y, ctx, yr, rctx = conv_both(x, w, b, cfg, stride, padding, dilation)
    assert y.dtype == dtype and y.shape == yr.shape
    if cfg is not None:
        compare_state(ctx, rctx, dtype)
    assert_close(y, yr, dtype, err_msg="y")
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx, dw, db = pyadr.conv2d_backward(dy, ctx)
    dxr, dwr, dbr = ref.conv2d_backward(dy, rctx)
    assert dx.dtype == dtype and dw.dtype == dtype
    assert_close(dx, dxr, dtype, err_msg="dx")
    assert_close(dw, dwr, dtype, err_msg="dw")
    if b is None:
        assert db is None
    else:
        assert db.dtype == dtype
        assert_close(db, dbr, dtype, err_msg="db")
    return ctx, rctx


def subvectors(x, kh, kw, stride, padding, dilation, order, L):
    """List of (N, Lj) sub-matrices of the reference im2col matrix."""
    X = ref.im2col(x, kh, kw, stride, padding, dilation, order)
    return [X[:, s:e] for (s, e) in ref.blocks(X.shape[1], L)]
