"""Exact convolution (reuse=None) against the direct loop and the im2col reference, on every
backend (tests/_backends.py: cpu, cuda, emulated)."""
import numpy as np
import pytest

import pyadr
from pyadr import reference as ref

from _util import DTYPES, assert_close

# (B, C, H, W, M, kh, kw, stride, padding, dilation)
GEOMS = [
    (1, 1, 5, 5, 1, 3, 3, 1, 0, 1),
    (2, 3, 7, 6, 4, 3, 3, 1, 1, 1),
    (3, 2, 8, 9, 5, 2, 3, 2, 0, 1),                 # non-square kernel, stride 2
    (2, 4, 9, 7, 3, 3, 2, (2, 1), (1, 2), 1),       # per-axis stride / padding
    (1, 3, 10, 10, 2, 3, 3, 1, 2, (2, 3)),          # per-axis dilation
    (2, 5, 6, 6, 6, 1, 1, 1, 0, 1),                 # 1x1 conv
    (2, 2, 4, 4, 3, 4, 4, 1, 0, 1),                 # kernel = input: one output pixel
    (1, 2, 3, 5, 2, 5, 3, (3, 2), 1, (1, 2)),       # kernel taller than the unpadded input
    (4, 8, 5, 5, 16, 3, 3, 2, 1, 1),
    (2, 3, 6, 5, 4, 3, 3, 1, 1, 1),                 # the geometries of the former GPU suite
    (2, 4, 7, 7, 3, 3, 2, (2, 1), (0, 1), 1),
    (1, 2, 8, 8, 2, 3, 3, 1, 2, 2),
]


def _random_layer(rng, geom, bias, dtype):
    """Gaussian x (B, C, H, W), w (M, C, kh, kw) and b (M,) (or None) of a GEOMS entry."""
    B, C, H, W, M, kh, kw = geom[:7]
    x = rng.standard_normal((B, C, H, W)).astype(dtype)
    w = rng.standard_normal((M, C, kh, kw)).astype(dtype)
    b = rng.standard_normal(M).astype(dtype) if bias else None
    return x, w, b


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("geom", GEOMS)
def test_forward_matches_naive(backend, rng, geom, bias, dtype):
    B, C, H, W, M, kh, kw, s, p, d = geom
    x, w, b = _random_layer(rng, geom, bias, dtype)
    y, ctx = pyadr.conv2d_forward(*backend.put(x, w, b), stride=s, padding=p, dilation=d)
    y = backend.to_numpy(y)
    expected = ref.naive_conv2d(x, w, b, s, p, d)
    assert y.dtype == np.dtype(dtype)
    assert y.shape == (B, M) + ref.output_size(H, W, kh, kw, s, p, d)
    assert_close(y, expected, dtype, be=backend)
    assert ctx.stats is None and ctx.planes is None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("geom", GEOMS)
def test_backward_matches_reference(backend, rng, geom, bias, dtype):
    B, C, H, W, M, kh, kw, s, p, d = geom
    x, w, b = _random_layer(rng, geom, bias, dtype)
    y, ctx = pyadr.conv2d_forward(*backend.put(x, w, b), stride=s, padding=p, dilation=d)
    yr, rctx = ref.conv2d_forward(x, w, b, s, p, d)
    assert_close(backend.to_numpy(y), yr, dtype, be=backend)
    dy = rng.standard_normal(yr.shape).astype(dtype)
    dx, dw, db = (backend.to_numpy(a) for a in pyadr.conv2d_backward(backend.asarray(dy), ctx))
    dxr, dwr, dbr = ref.conv2d_backward(dy, rctx)
    assert dx.shape == x.shape and dw.shape == w.shape
    assert dx.dtype == np.dtype(dtype) and dw.dtype == np.dtype(dtype)
    assert_close(dx, dxr, dtype, be=backend)
    assert_close(dw, dwr, dtype, be=backend)
    if bias:
        assert db.shape == (M,) and db.dtype == np.dtype(dtype)
        assert_close(db, dbr, dtype, be=backend)
    else:
        assert db is None


def test_reference_im2col_matches_naive(rng):
    """The reference im2col (both orders) agrees with the direct loop: the tests' own yardstick."""
    x = rng.standard_normal((2, 3, 7, 8))
    w = rng.standard_normal((4, 3, 3, 2))
    for order in ("hwc", "chw"):
        X = ref.im2col(x, 3, 2, (2, 1), (1, 0), (1, 2), order)
        Y = X @ ref.weight_matrix(w, order)
        y = Y.reshape(2, *ref.output_size(7, 8, 3, 2, (2, 1), (1, 0), (1, 2)), 4).transpose(0, 3, 1, 2)
        np.testing.assert_allclose(y, ref.naive_conv2d(x, w, None, (2, 1), (1, 0), (1, 2)), rtol=1e-12, atol=1e-12)


def _loss(be, x, w, b, dy, s, p, d):
    y, _ = pyadr.conv2d_forward(*be.put(x, w, b), stride=s, padding=p, dilation=d)
    return float(np.sum(be.to_numpy(y) * dy))


@pytest.mark.parametrize("geom", [GEOMS[1], GEOMS[3], GEOMS[4], GEOMS[7]])
def test_exact_gradients_finite_differences(backend, rng, geom):
    """Directional derivatives of sum(y * dy) in float64 match the backward."""
    B, C, H, W, M, kh, kw, s, p, d = geom
    x = rng.standard_normal((B, C, H, W))
    w = rng.standard_normal((M, C, kh, kw))
    b = rng.standard_normal(M)
    y, ctx = pyadr.conv2d_forward(*backend.put(x, w, b), stride=s, padding=p, dilation=d)
    dy = rng.standard_normal(y.shape)
    dx, dw, db = (backend.to_numpy(a) for a in pyadr.conv2d_backward(backend.asarray(dy), ctx))
    eps = 1e-4
    loss = lambda xx, ww, bb: _loss(backend, xx, ww, bb, dy, s, p, d)  # noqa: E731
    for _ in range(3):
        vx, vw, vb = rng.standard_normal(x.shape), rng.standard_normal(w.shape), rng.standard_normal(M)
        fd_x = (loss(x + eps * vx, w, b) - loss(x - eps * vx, w, b)) / (2 * eps)
        fd_w = (loss(x, w + eps * vw, b) - loss(x, w - eps * vw, b)) / (2 * eps)
        fd_b = (loss(x, w, b + eps * vb) - loss(x, w, b - eps * vb)) / (2 * eps)
        assert fd_x == pytest.approx(float(np.sum(dx * vx)), rel=1e-7, abs=1e-7)
        assert fd_w == pytest.approx(float(np.sum(dw * vw)), rel=1e-7, abs=1e-7)
        assert fd_b == pytest.approx(float(np.sum(db * vb)), rel=1e-7, abs=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
def test_non_contiguous_inputs(backend, rng, dtype):
    """Strided views and Fortran-ordered arrays give the same result as contiguous copies."""
    xbig = rng.standard_normal((2, 6, 9, 16)).astype(dtype)
    x = xbig[:, ::2, :, ::2]                                  # (2, 3, 9, 8), non-contiguous
    w = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
    b = rng.standard_normal(8).astype(dtype)[::2]
    xd = backend.asarray(xbig)[:, ::2, :, ::2]                # the same views on the backend
    wd = backend.asarray(np.ascontiguousarray(w.transpose(3, 2, 1, 0))).transpose(3, 2, 1, 0)   # F-ordered
    bd = backend.asarray(rng.standard_normal(8).astype(dtype))
    bd[::2] = backend.asarray(b)
    bd = bd[::2]
    assert not xd.flags.c_contiguous and wd.flags.f_contiguous and not wd.flags.c_contiguous
    y, ctx = pyadr.conv2d_forward(xd, wd, bd, padding=1)
    y2, _ = pyadr.conv2d_forward(*backend.put(x.copy(), w, b.copy()), padding=1)
    y = backend.to_numpy(y)
    np.testing.assert_array_equal(y, backend.to_numpy(y2))
    assert_close(y, ref.naive_conv2d(x, w, b, 1, 1, 1), dtype, be=backend)
    dyc = rng.standard_normal(y.shape).astype(dtype)
    dy = backend.asarray(np.ascontiguousarray(dyc.transpose(0, 1, 3, 2))).transpose(0, 1, 3, 2)
    dx, dw, db = (backend.to_numpy(a) for a in pyadr.conv2d_backward(dy, ctx))
    dxr, dwr, dbr = ref.conv2d_backward(dyc, ref.conv2d_forward(x, w, b, 1, 1, 1)[1])
    assert_close(dx, dxr, dtype, be=backend)
    assert_close(dw, dwr, dtype, be=backend)
    assert_close(db, dbr, dtype, be=backend)


@pytest.mark.parametrize("reuse", [False, True])
def test_inputs_not_modified(backend, rng, reuse):
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    cfg = pyadr.ReuseConfig(L=9, H=8) if reuse else None
    xd, wd, bd = backend.put(x, w, b)
    y, ctx = pyadr.conv2d_forward(xd, wd, bd, padding=1, reuse=cfg)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dyd = backend.asarray(dy)
    pyadr.conv2d_backward(dyd, ctx)
    for a, c in zip((xd, wd, bd, dyd), (x, w, b, dy)):
        np.testing.assert_array_equal(backend.to_numpy(a), c)


def test_backward_can_be_called_twice(backend, rng):
    x = rng.standard_normal((2, 3, 6, 6))
    w = rng.standard_normal((4, 3, 3, 3))
    for cfg in (None, pyadr.ReuseConfig(L=5, H=6)):
        y, ctx = pyadr.conv2d_forward(*backend.put(x, w), padding=1, reuse=cfg)
        dy = backend.asarray(rng.standard_normal(y.shape))
        g1 = pyadr.conv2d_backward(dy, ctx)
        g2 = pyadr.conv2d_backward(dy, ctx)
        for a, b_ in zip(g1[:2], g2[:2]):
            np.testing.assert_array_equal(backend.to_numpy(a), backend.to_numpy(b_))


def test_larger_layer_against_reference(backend, rng):
    """A layer large enough to cross the native engine's tiling boundaries (N > 64 rows, K > 64)."""
    x = rng.standard_normal((3, 16, 13, 11)).astype(np.float32)
    w = rng.standard_normal((20, 16, 5, 5)).astype(np.float32)
    b = rng.standard_normal(20).astype(np.float32)
    y, ctx = pyadr.conv2d_forward(*backend.put(x, w, b), stride=1, padding=2)
    yr, rctx = ref.conv2d_forward(x, w, b, 1, 2, 1)
    assert_close(backend.to_numpy(y), yr, np.float32, be=backend)
    dy = rng.standard_normal(yr.shape).astype(np.float32)
    for a, e in zip(pyadr.conv2d_backward(backend.asarray(dy), ctx), ref.conv2d_backward(dy, rctx)):
        assert_close(backend.to_numpy(a), e, np.float32, be=backend)
