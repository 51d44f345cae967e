"""The builtin exact convolution on small maps (issue 14: VGG-11's 3x3 and 1x1 feature maps).

There the tiles of rows hold several whole images side by side (conv_exact_plan.hpp, Tiling),
kernel taps that read only padding (8 of 9 for a 3x3 kernel with pad 1 on a 1x1 map) are left out
of the GEMMs, and with 12 or more images per unit the GEMMs run per (tap, position), skipping the
pairs that read padding (conv_exact_taps.cpp: 32 of 81 on a 3x3 map; the batches of 37 and more
below take that path at 1, 2 and 3 threads). Every case is compared with
pyadr.reference on Gaussian data that differs per image, so rows of different images mixed up,
a unit cut in the wrong place or a tap dropped that does read the input would all fail. Sizes are
picked so that the units (groups of images) come out uneven: odd batches, a last unit with fewer
images, several units per thread. The builtin provider is pinned (oneDNN would take float32)."""
import numpy as np
import pytest

import pyadr
from pyadr import _native
from pyadr import reference as ref
from pyadr._checks import DTYPE_CODES

from _util import DTYPES, assert_close

# (B, C, H, W, M, kh, kw, stride, padding, dilation)
SMALL = [
    (7, 5, 1, 1, 6, 3, 3, 1, 1, 1),       # 1x1 map, 3x3 pad 1: the centre tap alone reads x
    (5, 4, 3, 3, 7, 3, 3, 1, 1, 1),       # 3x3 map, pad 1, few images: dense tiles of whole images
    (37, 3, 3, 3, 5, 3, 3, 2, 1, 1),      # stride 2 on a 3x3 map: 2x2 outputs, 4 of 9 taps each
    (39, 6, 2, 2, 4, 3, 3, 1, 1, 1),      # 2x2 map
    (43, 3, 1, 3, 5, 3, 3, 1, 1, 1),      # 1x3 map: the top and bottom kernel rows dead
    (38, 3, 3, 3, 4, 3, 3, 1, 2, 2),      # dilation 2, pad 2 on a 3x3 map
    (3, 2, 1, 1, 3, 1, 1, 2, 1, 1),       # no live tap at all: y = bias, dX = 0, dW = 0
    (6, 4, 1, 1, 5, 5, 5, 1, 2, 1),       # 5x5 kernel on a 1x1 map: 1 of 25 taps
    (41, 128, 3, 3, 9, 3, 3, 1, 1, 1),    # K = 1152, per-position taps: units of 41, 21 + 20, 14 + 14 + 13
    (801, 256, 1, 1, 8, 3, 3, 1, 1, 1),   # K' = 256: units of up to 384 images, several per thread
    (64, 16, 3, 3, 24, 3, 3, 1, 1, 1),    # VGG-11's conv5/6 in small
]
THREADS = [1, 2, 3]


@pytest.fixture
def builtin():
    """The builtin provider and the caller's thread count, restored afterwards."""
    from pyadr import _onednn
    _onednn.ensure_configured()
    code, threads = _native.get_conv_provider(), pyadr.get_num_threads()
    pyadr.set_conv_provider("builtin")
    yield
    _native.set_conv_provider(code)
    pyadr.set_num_threads(threads)


def _layer(geom, dtype, seed=11):
    B, C, H, W, M, kh, kw = geom[:7]
    rng = np.random.default_rng(seed + B + C)
    x = rng.standard_normal((B, C, H, W)).astype(dtype)
    w = rng.standard_normal((M, C, kh, kw)).astype(dtype)
    b = rng.standard_normal(M).astype(dtype)
    return x, w, b, rng


def _native_geom(x, w, s, p, d):
    B, C, H, W = x.shape
    M, _, kh, kw = w.shape
    return (B, C, H, W, M, kh, kw, s, s, p, p, d, d)


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geom", SMALL, ids=lambda g: "x".join(map(str, g[:7])) + f"-s{g[7]}p{g[8]}d{g[9]}")
def test_small_maps_match_reference(builtin, geom, dtype, threads):
    s, p, d = geom[7:]
    pyadr.set_num_threads(threads)
    x, w, b, rng = _layer(geom, dtype)
    y, ctx = pyadr.conv2d_forward(x, w, b, stride=s, padding=p, dilation=d)
    yr, rctx = ref.conv2d_forward(x, w, b, s, p, d)
    assert_close(y, yr, dtype)
    dy = rng.standard_normal(yr.shape).astype(dtype)
    dxr, dwr, dbr = ref.conv2d_backward(dy, rctx)
    dx, dw, db = pyadr.conv2d_backward(dy, ctx)                       # dX and dW (two passes)
    assert_close(dx, dxr, dtype)
    assert_close(dw, dwr, dtype)
    assert_close(db, dbr, dtype)
    _, dw_alone, db_alone = pyadr.conv2d_backward(dy, ctx, input_grad=False)   # dW alone
    assert_close(dw_alone, dwr, dtype)
    assert_close(db_alone, dbr, dtype)
    dx_alone = np.full_like(x, np.nan)                                # dX alone: every value written
    _native.conv_backward_exact(DTYPE_CODES[x.dtype], _native_geom(x, w, s, p, d), x, w, dy, dx_alone, None, None)
    assert_close(dx_alone, dxr, dtype)


@pytest.mark.parametrize("geom", [SMALL[0], SMALL[1], SMALL[8], SMALL[10]], ids=["1x1", "3x3", "3x3-C128", "3x3-B64"])
def test_small_maps_images_stay_apart(builtin, geom):
    """One image's input and upstream gradient changed: only that image's y and dX change, and
    y / dX of every other image stay bit-identical (float64, 2 threads: images in one tile)."""
    s, p, d = geom[7:]
    pyadr.set_num_threads(2)
    x, w, b, rng = _layer(geom, np.float64)
    y0, ctx0 = pyadr.conv2d_forward(x, w, b, stride=s, padding=p, dilation=d)
    dy = rng.standard_normal(y0.shape)
    dx0, _, _ = pyadr.conv2d_backward(dy, ctx0)
    k = x.shape[0] // 2
    x1, dy1 = x.copy(), dy.copy()
    x1[k] += 1.0
    dy1[k] *= -3.0
    y1, ctx1 = pyadr.conv2d_forward(x1, w, b, stride=s, padding=p, dilation=d)
    dx1, _, _ = pyadr.conv2d_backward(dy1, ctx1)
    others = np.arange(x.shape[0]) != k
    np.testing.assert_array_equal(y1[others], y0[others])
    np.testing.assert_array_equal(dx1[others], dx0[others])
    assert not np.array_equal(y1[k], y0[k]) and not np.array_equal(dx1[k], dx0[k])


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("geom", [SMALL[1], SMALL[8], SMALL[9], SMALL[10]], ids=["3x3", "3x3-C128", "1x1-C256", "3x3-B64"])
def test_small_maps_deterministic(builtin, geom, threads):
    """Same inputs and thread count: bit-identical y, dX, dW, db (float32)."""
    s, p, d = geom[7:]
    pyadr.set_num_threads(threads)
    x, w, b, rng = _layer(geom, np.float32)
    runs = []
    for _ in range(2):
        y, ctx = pyadr.conv2d_forward(x, w, b, stride=s, padding=p, dilation=d)
        dy = np.random.default_rng(4).standard_normal(y.shape).astype(np.float32)
        runs.append((y,) + tuple(pyadr.conv2d_backward(dy, ctx)))
    for a, c in zip(*runs):
        np.testing.assert_array_equal(a, c)


def test_dead_taps_get_zero_gradient(builtin):
    """A 3x3 kernel with pad 1 on 1x1 maps: dW of the 8 taps that read only padding is exactly 0,
    and y equals the centre tap's product (a fully connected layer) plus the bias."""
    x, w, b, rng = _layer((7, 5, 1, 1, 6, 3, 3), np.float64)
    y, ctx = pyadr.conv2d_forward(x, w, b, stride=1, padding=1)
    np.testing.assert_allclose(y[:, :, 0, 0], x[:, :, 0, 0] @ w[:, :, 1, 1].T + b, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    _, dw, _ = pyadr.conv2d_backward(dy, ctx)
    dead = np.ones((3, 3), bool)
    dead[1, 1] = False
    assert np.all(dw[:, :, dead] == 0.0)
    np.testing.assert_allclose(dw[:, :, 1, 1], dy[:, :, 0, 0].T @ x[:, :, 0, 0], rtol=1e-12, atol=1e-12)
