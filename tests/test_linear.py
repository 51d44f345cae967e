"""Fully connected layers: exact and reuse paths against NumPy and the reference, on every backend
(tests/_backends.py)."""
import numpy as np
import pytest

import pyadr
from pyadr import reference as ref

from _util import DTYPES, assert_close, block_ids, block_state, exact_cfg, int_data


def _forward(be, x, w, b=None, reuse=None):
    """pyadr.linear_forward on backend be from NumPy inputs: (y NumPy, ctx)."""
    y, ctx = pyadr.linear_forward(*be.put(x, w, b), reuse=reuse)
    return be.to_numpy(y), ctx


def _backward(be, dy, ctx):
    return tuple(be.to_numpy(a) for a in pyadr.linear_backward(be.asarray(dy), ctx))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 7, 3), (5, 12, 4), (33, 70, 9), (130, 20, 65)])
def test_linear_exact(backend, rng, shape, bias, dtype):
    B, n_in, n_out = shape
    x = rng.standard_normal((B, n_in)).astype(dtype)
    w = rng.standard_normal((n_out, n_in)).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype) if bias else None
    y, ctx = _forward(backend, x, w, b)
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    expected = x64 @ w64.T + (b.astype(np.float64) if bias else 0)
    assert y.shape == (B, n_out) and y.dtype == np.dtype(dtype)
    assert_close(y, expected, dtype, be=backend)
    dy = rng.standard_normal((B, n_out)).astype(dtype)
    dx, dw, db = _backward(backend, dy, ctx)
    assert dx.shape == x.shape and dw.shape == w.shape
    assert dx.dtype == np.dtype(dtype) and dw.dtype == np.dtype(dtype)
    assert_close(dx, dy.astype(np.float64) @ w64, dtype, be=backend)
    assert_close(dw, dy.astype(np.float64).T @ x64, dtype, be=backend)
    if bias:
        assert_close(db, dy.astype(np.float64).sum(axis=0), dtype, be=backend)
    else:
        assert db is None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scope", ["batch", "input"])
@pytest.mark.parametrize("hash_", ["sign", "l2"])
@pytest.mark.parametrize("order", ["hwc", "chw"])
@pytest.mark.parametrize("n_in,L,H", [(12, 4, 6), (12, 5, 64), (10, 1, 1), (10, 10, 17), (40, 8, 3)])
def test_linear_reuse_matches_reference(backend, rng, n_in, L, H, order, hash_, scope, dtype):
    B, n_out = 40, 6
    x = int_data(rng, (B, n_in), dtype, -1, 1)
    x[B // 2:] = x[: B - B // 2]                   # guaranteed duplicate rows
    w = rng.standard_normal((n_out, n_in)).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype)
    cfg = exact_cfg(rng, L, H, hash=hash_, order=order, scope=scope)
    y, ctx = _forward(backend, x, w, b, reuse=cfg)
    yr, rctx = ref.linear_forward(x, w, b, reuse=cfg)
    st = rctx["state"]
    ids = block_ids(ctx, backend)
    assert ids.shape == (-(-n_in // L), B)
    for j in range(ids.shape[0]):
        idj, counts, cent = block_state(ctx, j, backend)
        np.testing.assert_array_equal(idj, st["ids"][j])
        np.testing.assert_array_equal(counts, st["counts"][j])
        assert_close(cent, st["centroids"][j], dtype, be=backend)
    assert ctx.stats.rc == pytest.approx(rctx["rc"], rel=1e-12)
    assert ctx.stats.rows == B
    assert_close(y, yr, dtype, be=backend)
    dy = rng.standard_normal(y.shape).astype(dtype)
    for a, e in zip(_backward(backend, dy, ctx), ref.linear_backward(dy, rctx)):
        assert_close(a, e, dtype, be=backend)
    if scope == "input":        # each sample is its own group: every row its own cluster
        assert ctx.stats.rc == 1.0
    else:
        assert ctx.stats.rc <= 0.5 + 1e-12   # at least the duplicated half is reused


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_scope_input_is_exact(backend, rng, dtype):
    x = rng.standard_normal((9, 11)).astype(dtype)
    w = rng.standard_normal((4, 11)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    cfg = pyadr.ReuseConfig(L=3, H=2, scope="input")
    y, ctx = _forward(backend, x, w, b, reuse=cfg)
    ye, ctxe = _forward(backend, x, w, b)
    assert ctx.stats.rc == 1.0
    assert_close(y, ye, dtype, be=backend)
    dy = rng.standard_normal(y.shape).astype(dtype)
    for a, e in zip(_backward(backend, dy, ctx), _backward(backend, dy, ctxe)):
        assert_close(a, e, dtype, be=backend)


def test_linear_identical_rows(backend, rng):
    """All samples equal: one cluster per block, forward, dw and db exact; dx = mean of dy rows."""
    v = rng.standard_normal(10)
    x = np.tile(v, (8, 1))
    w = rng.standard_normal((3, 10))
    y, ctx = _forward(backend, x, w, None, reuse=pyadr.ReuseConfig(L=3, H=9))
    np.testing.assert_array_equal(ctx.stats.clusters, [1, 1, 1, 1])
    assert_close(y, x @ w.T, np.float64, be=backend)
    dy = rng.standard_normal(y.shape)
    dx, dw, db = _backward(backend, dy, ctx)
    assert db is None
    assert_close(dw, dy.T @ x, np.float64, be=backend)
    assert_close(dx, np.tile(dy.mean(axis=0) @ w, (8, 1)), np.float64, be=backend)


def test_linear_reuse_finite_differences(backend, rng):
    x = int_data(rng, (30, 12), np.float64, -1, 1)
    w = rng.standard_normal((5, 12))
    b = rng.standard_normal(5)
    cfg = exact_cfg(rng, 4, 5, hash="l2", width=1.0, quarter=True)
    y, ctx = _forward(backend, x, w, b, reuse=cfg)
    ids0 = backend.to_numpy(ctx.cluster_ids())
    assert ctx.stats.rc < 1
    dy = rng.standard_normal(y.shape)
    dx, dw, db = _backward(backend, dy, ctx)
    eps = 1e-3

    def loss(xx, ww, bb):
        yy, c = _forward(backend, xx, ww, bb, reuse=cfg)
        np.testing.assert_array_equal(backend.to_numpy(c.cluster_ids()), ids0)
        return float(np.sum(yy * dy))

    vx, vw, vb = rng.uniform(-1, 1, x.shape), rng.standard_normal(w.shape), rng.standard_normal(5)
    assert (loss(x + eps * vx, w, b) - loss(x - eps * vx, w, b)) / (2 * eps) == pytest.approx(np.sum(dx * vx), rel=1e-8)
    assert (loss(x, w + eps * vw, b) - loss(x, w - eps * vw, b)) / (2 * eps) == pytest.approx(np.sum(dw * vw), rel=1e-8)
    assert (loss(x, w, b + eps * vb) - loss(x, w, b - eps * vb)) / (2 * eps) == pytest.approx(np.sum(db * vb), rel=1e-8)


@pytest.mark.parametrize("reuse", [False, True])
def test_linear_and_conv_contexts_are_not_interchangeable(backend, rng, reuse):
    x, w = backend.put(rng.standard_normal((4, 6)), rng.standard_normal((3, 6)))
    cfg = pyadr.ReuseConfig(L=3, H=4) if reuse else None
    y, ctx = pyadr.linear_forward(x, w, reuse=cfg)
    assert ctx.kind == "linear"
    with pytest.raises(TypeError, match="ctx"):
        pyadr.conv2d_backward(y[:, :, None, None], ctx)
    y4, ctx4 = pyadr.conv2d_forward(x[:, :, None, None], w[:, :, None, None], reuse=cfg)
    assert ctx4.kind == "conv2d"
    with pytest.raises(TypeError, match="ctx"):
        pyadr.linear_backward(y4[:, :, 0, 0], ctx4)
