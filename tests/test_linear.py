"""Fully connected layers: exact and reuse paths against NumPy and the reference."""
import numpy as np
import pytest

import pyadr
from pyadr import reference as ref

from _util import DTYPES, assert_close, exact_cfg, int_data


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 7, 3), (5, 12, 4), (33, 70, 9), (130, 20, 65)])
def test_linear_exact(rng, shape, bias, dtype):
    B, n_in, n_out = shape
    x = rng.standard_normal((B, n_in)).astype(dtype)
    w = rng.standard_normal((n_out, n_in)).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype) if bias else None
    y, ctx = pyadr.linear_forward(x, w, b)
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    expected = x64 @ w64.T + (b.astype(np.float64) if bias else 0)
    assert y.shape == (B, n_out) and y.dtype == np.dtype(dtype)
    assert_close(y, expected, dtype)
    dy = rng.standard_normal((B, n_out)).astype(dtype)
    dx, dw, db = pyadr.linear_backward(dy, ctx)
    assert dx.shape == x.shape and dw.shape == w.shape
    assert_close(dx, dy.astype(np.float64) @ w64, dtype)
    assert_close(dw, dy.astype(np.float64).T @ x64, dtype)
    if bias:
        assert_close(db, dy.astype(np.float64).sum(axis=0), dtype)
    else:
        assert db is None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scope", ["batch", "input"])
@pytest.mark.parametrize("hash_", ["sign", "l2"])
@pytest.mark.parametrize("order", ["hwc", "chw"])
@pytest.mark.parametrize("n_in,L,H", [(12, 4, 6), (12, 5, 64), (10, 1, 1), (10, 10, 17), (40, 8, 3)])
def test_linear_reuse_matches_reference(rng, n_in, L, H, order, hash_, scope, dtype):
    B, n_out = 40, 6
    x = int_data(rng, (B, n_in), dtype, -1, 1)
    x[B // 2:] = x[: B - B // 2]                   # guaranteed duplicate rows
    w = rng.standard_normal((n_out, n_in)).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype)
    cfg = exact_cfg(rng, L, H, hash=hash_, order=order, scope=scope)
    y, ctx = pyadr.linear_forward(x, w, b, reuse=cfg)
    yr, rctx = ref.linear_forward(x, w, b, reuse=cfg)
    st = rctx["state"]
    ids = ctx.cluster_ids()
    assert ids.shape == (-(-n_in // L), B)
    for j in range(ids.shape[0]):
        np.testing.assert_array_equal(ids[j], st["ids"][j])
        np.testing.assert_array_equal(ctx.cluster_counts(j), st["counts"][j])
        assert_close(ctx.centroids(j), st["centroids"][j], dtype)
    assert ctx.stats.rc == pytest.approx(rctx["rc"], rel=1e-12)
    assert ctx.stats.rows == B
    assert_close(y, yr, dtype)
    dy = rng.standard_normal(y.shape).astype(dtype)
    for a, e in zip(pyadr.linear_backward(dy, ctx), ref.linear_backward(dy, rctx)):
        assert_close(a, e, dtype)
    if scope == "input":        # each sample is its own group: every row its own cluster
        assert ctx.stats.rc == 1.0
    else:
        assert ctx.stats.rc <= 0.5 + 1e-12   # at least the duplicated half is reused


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_scope_input_is_exact(rng, dtype):
    x = rng.standard_normal((9, 11)).astype(dtype)
    w = rng.standard_normal((4, 11)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    cfg = pyadr.ReuseConfig(L=3, H=2, scope="input")
    y, ctx = pyadr.linear_forward(x, w, b, reuse=cfg)
    ye, ctxe = pyadr.linear_forward(x, w, b)
    assert ctx.stats.rc == 1.0
    assert_close(y, ye, dtype)
    dy = rng.standard_normal(y.shape).astype(dtype)
    for a, e in zip(pyadr.linear_backward(dy, ctx), pyadr.linear_backward(dy, ctxe)):
        assert_close(a, e, dtype)


def test_linear_identical_rows(rng):
    """All samples equal: one cluster per block, forward, dw and db exact; dx = mean of dy rows."""
    v = rng.standard_normal(10)
    x = np.tile(v, (8, 1))
    w = rng.standard_normal((3, 10))
    y, ctx = pyadr.linear_forward(x, w, None, reuse=pyadr.ReuseConfig(L=3, H=9))
    np.testing.assert_array_equal(ctx.stats.clusters, [1, 1, 1, 1])
    assert_close(y, x @ w.T, np.float64)
    dy = rng.standard_normal(y.shape)
    dx, dw, db = pyadr.linear_backward(dy, ctx)
    assert db is None
    assert_close(dw, dy.T @ x, np.float64)
    assert_close(dx, np.tile(dy.mean(axis=0) @ w, (8, 1)), np.float64)


def test_linear_reuse_finite_differences(rng):
    x = int_data(rng, (30, 12), np.float64, -1, 1)
    w = rng.standard_normal((5, 12))
    b = rng.standard_normal(5)
    cfg = exact_cfg(rng, 4, 5, hash="l2", width=1.0, quarter=True)
    y, ctx = pyadr.linear_forward(x, w, b, reuse=cfg)
    ids0 = ctx.cluster_ids()
    assert ctx.stats.rc < 1
    dy = rng.standard_normal(y.shape)
    dx, dw, db = pyadr.linear_backward(dy, ctx)
    eps = 1e-3

    def loss(xx, ww, bb):
        yy, c = pyadr.linear_forward(xx, ww, bb, reuse=cfg)
        np.testing.assert_array_equal(c.cluster_ids(), ids0)
        return float(np.sum(yy * dy))

    vx, vw, vb = rng.uniform(-1, 1, x.shape), rng.standard_normal(w.shape), rng.standard_normal(5)
    assert (loss(x + eps * vx, w, b) - loss(x - eps * vx, w, b)) / (2 * eps) == pytest.approx(np.sum(dx * vx), rel=1e-8)
    assert (loss(x, w + eps * vw, b) - loss(x, w - eps * vw, b)) / (2 * eps) == pytest.approx(np.sum(dw * vw), rel=1e-8)
    assert (loss(x, w, b + eps * vb) - loss(x, w, b - eps * vb)) / (2 * eps) == pytest.approx(np.sum(db * vb), rel=1e-8)


def test_linear_and_conv_contexts_are_not_interchangeable(rng):
    x = rng.standard_normal((4, 6))
    w = rng.standard_normal((3, 6))
    y, ctx = pyadr.linear_forward(x, w)
    assert ctx.kind == "linear"
    with pytest.raises(TypeError, match="ctx"):
        pyadr.conv2d_backward(y[:, :, None, None], ctx)
    y4, ctx4 = pyadr.conv2d_forward(x[:, :, None, None], w[:, :, None, None])
    with pytest.raises(TypeError, match="ctx"):
        pyadr.linear_backward(y4[:, :, 0, 0], ctx4)
