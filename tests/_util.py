"""Helpers shared by the tests: exactly representable data and comparisons with the reference.

"Exact" data: integer-valued x in a small range, half-integer planes, power-of-two l2 widths and
offsets that are multiples of 0.5 (or 0.25).  Every projection is then a small multiple of 0.25,
exact in float32 and float64 whatever the summation order, so native and reference hash keys,
and therefore partitions, must be identical.

Every checker takes an optional `be` (a tests/_backends.py Backend; None means "cpu"): inputs are
NumPy, results are brought back with be.to_numpy, tolerances come from be.rtol. Cluster ids are
compared as partitions, in first-occurrence numbering (`canonical_ids`); on a backend that
numbers by first occurrence (the CPU engine) the raw ids must already be that numbering.
"""
import numpy as np

import pyadr
from pyadr import reference as ref

DTYPES = (np.float32, np.float64)


def _be(be):
    if be is None:
        import _backends
        return _backends.cpu_backend()
    return be


def assert_close(actual, expected, dtype, factor=1.0, err_msg="", be=None):
    """|actual - expected| <= rtol * (|expected| + max|expected|), rtol by dtype (and backend)."""
    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(actual)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    r = _be(be).rtol(dtype) * factor
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


def canonical_ids(ids):
    """ids (N,) relabelled by first occurrence: (new (N,) int64, old_of_new) with
    new[n] = k  <=>  ids[n] = old_of_new[k]."""
    ids = np.asarray(ids).ravel()
    old_of_new, first = np.unique(ids, return_index=True)
    old_of_new = old_of_new[np.argsort(first, kind="stable")]
    new_of_old = np.empty(int(ids.max()) + 1 if ids.size else 0, dtype=np.int64)
    new_of_old[old_of_new] = np.arange(len(old_of_new))
    return new_of_old[ids], old_of_new


def block_ids(ctx, be=None):
    """ctx.cluster_ids() as NumPy, each row in first-occurrence numbering (a partition, compared
    across backends); on a first-occurrence backend the raw ids must already be that numbering."""
    be = _be(be)
    raw = be.to_numpy(ctx.cluster_ids())
    assert raw.dtype == np.int32, raw.dtype
    out = np.stack([canonical_ids(r)[0] for r in raw]) if raw.size else raw.astype(np.int64)
    if be.first_occurrence_ids:
        np.testing.assert_array_equal(raw, out, err_msg="ids are not numbered by first occurrence")
    return out


def block_state(ctx, j, be=None):
    """(ids (N,), counts, centroids) of sub-matrix j, NumPy, clusters in first-occurrence order."""
    be = _be(be)
    ids, old_of_new = canonical_ids(be.to_numpy(ctx.cluster_ids())[j])
    counts = be.to_numpy(ctx.cluster_counts(j))
    cent = be.to_numpy(ctx.centroids(j))
    assert counts.dtype == np.int32
    return ids, counts[old_of_new], cent[old_of_new]


def gpu_groups(ctx):
    """The block groups of a pyadr.gpu reuse context (private state: the one place tests read it)."""
    return ctx._gpu.groups


def compare_state(ctx, rctx, dtype, be=None):
    """Clustering (ids as a partition, counts, centroids, rc, stats) equals the reference's."""
    be = _be(be)
    st = rctx["state"]
    ids = block_ids(ctx, be)
    nb = len(st["ids"])
    assert ids.shape == (nb, st["N"])
    assert ctx.stats.blocks == nb
    assert ctx.stats.rows == st["N"]
    np.testing.assert_array_equal(ctx.stats.clusters, [len(c) for c in st["counts"]])
    for j in range(nb):
        idj, counts, cent = block_state(ctx, j, be)
        np.testing.assert_array_equal(idj, st["ids"][j], err_msg=f"ids of block {j}")
        np.testing.assert_array_equal(counts, st["counts"][j], err_msg=f"counts of block {j}")
        assert cent.dtype == np.dtype(dtype)
        assert_close(cent, st["centroids"][j], dtype, err_msg=f"centroids of block {j}", be=be)
    assert abs(ctx.stats.rc - rctx["rc"]) <= 1e-12 * max(1.0, rctx["rc"])


def conv_both(x, w, b, cfg, stride=1, padding=0, dilation=1, be=None):
    """pyadr on backend `be` and the reference, same NumPy inputs: (y NumPy, ctx, yr, rctx)."""
    be = _be(be)
    xd, wd, bd = be.put(x, w, b)
    y, ctx = pyadr.conv2d_forward(xd, wd, bd, stride=stride, padding=padding, dilation=dilation, reuse=cfg)
    yr, rctx = ref.conv2d_forward(x, w, b, stride=stride, padding=padding, dilation=dilation, reuse=cfg)
    return be.to_numpy(y), ctx, yr, rctx


def check_conv_vs_reference(rng, x, w, b, cfg, stride=1, padding=0, dilation=1, be=None):
    """Forward and backward of pyadr on backend `be` against pyadr.reference, one reuse (or exact) call."""
    be = _be(be)
    dtype = x.dtype
    y, ctx, yr, rctx = conv_both(x, w, b, cfg, stride, padding, dilation, be)
    assert y.dtype == dtype and y.shape == yr.shape
    if cfg is not None:
        compare_state(ctx, rctx, dtype, be)
        np.testing.assert_array_equal(ctx.planes, cfg.resolved_planes().astype(dtype))
    assert_close(y, yr, dtype, err_msg="y", be=be)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx, dw, db = (be.to_numpy(a) for a in pyadr.conv2d_backward(be.asarray(dy), ctx))
    dxr, dwr, dbr = ref.conv2d_backward(dy, rctx)
    assert dx.dtype == dtype and dw.dtype == dtype
    assert_close(dx, dxr, dtype, err_msg="dx", be=be)
    assert_close(dw, dwr, dtype, err_msg="dw", be=be)
    if b is None:
        assert db is None
    else:
        assert db.dtype == dtype
        assert_close(db, dbr, dtype, err_msg="db", be=be)
    return ctx, rctx


def subvectors(x, kh, kw, stride, padding, dilation, order, L):
    """List of (N, Lj) sub-matrices of the reference im2col matrix."""
    X = ref.im2col(x, kh, kw, stride, padding, dilation, order)
    return [X[:, s:e] for (s, e) in ref.blocks(X.shape[1], L)]
