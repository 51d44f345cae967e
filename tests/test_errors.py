"""Bad input raises TypeError/ValueError naming the offending argument."""
import numpy as np
import pytest

import pyadr


@pytest.fixture
def xw(rng):
    return rng.standard_normal((2, 3, 6, 6)).astype(np.float32), rng.standard_normal((4, 3, 3, 3)).astype(np.float32)


# --- arrays ----------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,match", [((3, 6, 6), "x must be 4-D"), ((1, 2, 3, 6, 6), "x must be 4-D")])
def test_conv_x_rank(rng, xw, shape, match):
    with pytest.raises(ValueError, match=match):
        pyadr.conv2d_forward(rng.standard_normal(shape).astype(np.float32), xw[1])


def test_conv_w_rank(xw):
    with pytest.raises(ValueError, match="w must be 4-D"):
        pyadr.conv2d_forward(xw[0], xw[1][0])


def test_conv_w_channels_mismatch(rng, xw):
    with pytest.raises(ValueError, match=r"w must have shape \(out_channels, 3, kh, kw\)"):
        pyadr.conv2d_forward(xw[0], rng.standard_normal((4, 2, 3, 3)).astype(np.float32))


@pytest.mark.parametrize("b,exc,match", [
    (np.zeros(3, np.float32), ValueError, r"b must have shape \(4,\)"),
    (np.zeros((4, 1), np.float32), ValueError, "b must be 1-D"),
    (np.zeros(4, np.float64), TypeError, "b must have the dtype of x"),
    (np.zeros(4, np.int32), TypeError, "b must be float32 or float64"),
    ([0.0, 0.0, 0.0, 0.0], TypeError, "b must be a numpy.ndarray"),
    (np.zeros(0, np.float32), ValueError, "b must not be empty"),
])
def test_conv_bad_bias(xw, b, exc, match):
    with pytest.raises(exc, match=match):
        pyadr.conv2d_forward(xw[0], xw[1], b)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float16, np.complex64, bool])
def test_conv_bad_dtype(xw, dtype):
    with pytest.raises(TypeError, match="x must be float32 or float64"):
        pyadr.conv2d_forward(xw[0].astype(dtype), xw[1])
    with pytest.raises(TypeError, match="w must be float32 or float64"):
        pyadr.conv2d_forward(xw[0], xw[1].astype(dtype))


def test_conv_mixed_dtypes(xw):
    with pytest.raises(TypeError, match="w must have the dtype of x"):
        pyadr.conv2d_forward(xw[0], xw[1].astype(np.float64))
    with pytest.raises(TypeError, match="w must have the dtype of x"):
        pyadr.conv2d_forward(xw[0].astype(np.float64), xw[1])


@pytest.mark.parametrize("which", ["x", "w"])
def test_conv_empty(xw, which):
    x, w = xw
    if which == "x":
        x = np.zeros((0, 3, 6, 6), np.float32)
    else:
        w = np.zeros((0, 3, 3, 3), np.float32)
    with pytest.raises(ValueError, match=f"{which} must not be empty"):
        pyadr.conv2d_forward(x, w)


@pytest.mark.parametrize("bad", [[[1.0]], 3.0, None, "x"])
def test_conv_non_array(xw, bad):
    with pytest.raises(TypeError, match="x must be a numpy.ndarray"):
        pyadr.conv2d_forward(bad, xw[1])
    with pytest.raises(TypeError, match="w must be a numpy.ndarray"):
        pyadr.conv2d_forward(xw[0], bad)


# --- geometry --------------------------------------------------------------------------------

@pytest.mark.parametrize("name,value,exc", [
    ("stride", 0, ValueError), ("stride", -1, ValueError), ("stride", (1, 0), ValueError),
    ("stride", True, TypeError), ("stride", 1.0, TypeError), ("stride", (1, 2.0), TypeError),
    ("stride", (1, 1, 1), ValueError), ("stride", "1", TypeError),
    ("padding", -1, ValueError), ("padding", (0, -2), ValueError), ("padding", 0.5, TypeError),
    ("padding", False, TypeError),
    ("dilation", 0, ValueError), ("dilation", (0, 1), ValueError), ("dilation", 2.0, TypeError),
    ("dilation", (True, 1), TypeError),
])
def test_conv_bad_geometry(xw, name, value, exc):
    with pytest.raises(exc, match=name):
        pyadr.conv2d_forward(xw[0], xw[1], **{name: value})


@pytest.mark.parametrize("kw", [dict(), dict(dilation=3), dict(stride=2, dilation=(1, 4))])
def test_kernel_larger_than_padded_input(rng, kw):
    x = rng.standard_normal((1, 2, 4, 4)).astype(np.float32)
    w = rng.standard_normal((1, 2, 5, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="kernel"):
        pyadr.conv2d_forward(x, w, **kw)


def test_kernel_fits_thanks_to_padding(rng):
    x = rng.standard_normal((1, 2, 4, 4)).astype(np.float32)
    w = rng.standard_normal((1, 2, 5, 3)).astype(np.float32)
    y, _ = pyadr.conv2d_forward(x, w, padding=(1, 0))
    assert y.shape == (1, 1, 2, 2)


# --- ReuseConfig -----------------------------------------------------------------------------

def test_L_larger_than_K(xw):
    with pytest.raises(ValueError, match=r"ReuseConfig\.L must be <= K = 27"):
        pyadr.conv2d_forward(xw[0], xw[1], reuse=pyadr.ReuseConfig(L=28, H=4))
    with pytest.raises(ValueError, match=r"ReuseConfig\.L must be <= K"):
        pyadr.conv2d_forward(xw[0], xw[1], reuse=pyadr.ReuseConfig(planes=np.ones((28, 3))))
    with pytest.raises(ValueError, match=r"ReuseConfig\.L must be <= K = 6"):
        pyadr.linear_forward(np.ones((3, 6)), np.ones((2, 6)), reuse=pyadr.ReuseConfig(L=7, H=4))


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(L=0), ValueError, r"ReuseConfig\.L must be >= 1"),
    (dict(L=-3), ValueError, r"ReuseConfig\.L must be >= 1"),
    (dict(L=2.0), TypeError, r"ReuseConfig\.L must be an int"),
    (dict(L=True), TypeError, r"ReuseConfig\.L must be an int"),
    (dict(H=0), ValueError, r"ReuseConfig\.H must be in \[1, 64\]"),
    (dict(H=65), ValueError, r"ReuseConfig\.H must be in \[1, 64\]"),
    (dict(H="8"), TypeError, r"ReuseConfig\.H must be an int"),
    (dict(seed=0.5), TypeError, r"ReuseConfig\.seed must be an int"),
    (dict(order="whc"), ValueError, r"ReuseConfig\.order must be one of"),
    (dict(hash="cosine"), ValueError, r"ReuseConfig\.hash must be one of"),
    (dict(scope="image"), ValueError, r"ReuseConfig\.scope must be one of"),
    (dict(hash="l2", offsets=np.zeros(8)), ValueError, r"offsets needs an explicit width"),
    (dict(hash="sign", width=1.0, offsets=np.zeros(8)), ValueError, r"offsets is only used with hash='l2'"),
    (dict(H=3, hash="l2", width=1.0, offsets=[0.0, 0.5, 1.0]), ValueError, r"offsets must lie in \[0, width\)"),
    (dict(H=3, hash="l2", width=1.0, offsets=[0.0, -0.5, 0.2]), ValueError, r"offsets must lie in \[0, width\)"),
    (dict(H=3, hash="l2", width=1.0, offsets=[0.0, 0.5]), ValueError, r"offsets must have shape \(3,\)"),
    (dict(hash="l2", width=0.0), ValueError, r"ReuseConfig\.width must be a finite float > 0"),
    (dict(hash="l2", width=-1.0), ValueError, r"ReuseConfig\.width"),
    (dict(hash="l2", width=float("inf")), ValueError, r"ReuseConfig\.width"),
    (dict(width_scale=0.0), ValueError, r"ReuseConfig\.width_scale"),
    (dict(planes=np.ones(5)), ValueError, r"planes must be a 2-D \(L, H\) array"),
    (dict(planes=np.array([[1.0, np.nan]])), ValueError, r"planes must be finite"),
    (dict(planes=np.ones((4, 65))), ValueError, r"ReuseConfig\.H must be in \[1, 64\]"),
])
def test_bad_reuse_config(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        pyadr.ReuseConfig(**kwargs)


@pytest.mark.parametrize("reuse", [{"L": 4}, "sign", 4, object()])
def test_reuse_wrong_type(xw, reuse):
    with pytest.raises(TypeError, match="reuse must be a pyadr.ReuseConfig or None"):
        pyadr.conv2d_forward(xw[0], xw[1], reuse=reuse)
    with pytest.raises(TypeError, match="reuse must be a pyadr.ReuseConfig or None"):
        pyadr.linear_forward(np.ones((2, 3)), np.ones((2, 3)), reuse=reuse)


@pytest.mark.parametrize("order", ["hwc", "chw"])
@pytest.mark.parametrize("L", [3, 4])     # 3 | C: the per-pixel hashing path; 4: generic path
def test_l2_non_finite_input_raises(xw, order, L):
    x, w = xw
    x = x.copy()
    x[1, 2, 3, 3] = np.nan
    cfg = pyadr.ReuseConfig(L=L, H=4, hash="l2", width=1.0, order=order)
    with pytest.raises(ValueError, match="l2 hashing"):
        pyadr.conv2d_forward(x, w, reuse=cfg)


# --- contexts --------------------------------------------------------------------------------

@pytest.mark.parametrize("reuse", [None, pyadr.ReuseConfig(L=9, H=4)])
def test_backward_dy_wrong_shape(xw, reuse):
    y, ctx = pyadr.conv2d_forward(xw[0], xw[1], padding=1, reuse=reuse)
    with pytest.raises(ValueError, match="dy must have the shape of the forward output"):
        pyadr.conv2d_backward(np.zeros((2, 4, 4, 4), np.float32), ctx)
    with pytest.raises(ValueError, match="dy must be 4-D"):
        pyadr.conv2d_backward(y[0], ctx)
    with pytest.raises(TypeError, match="dy must have the dtype of the forward call"):
        pyadr.conv2d_backward(y.astype(np.float64), ctx)
    with pytest.raises(TypeError, match="dy must be float32 or float64"):
        pyadr.conv2d_backward(y.astype(np.int32), ctx)
    with pytest.raises(TypeError, match="dy must be a numpy.ndarray"):
        pyadr.conv2d_backward(y.tolist(), ctx)


def test_backward_dy_from_another_call(rng, xw):
    """dy of another layer whose output shape differs is refused."""
    _, ctx1 = pyadr.conv2d_forward(xw[0], xw[1], padding=1)
    y2, _ = pyadr.conv2d_forward(xw[0], xw[1], stride=2)
    with pytest.raises(ValueError, match="dy must have the shape"):
        pyadr.conv2d_backward(y2, ctx1)


@pytest.mark.parametrize("bad", [None, {"state": None}, "ctx", 3])
def test_backward_bad_ctx(xw, bad):
    y, _ = pyadr.conv2d_forward(xw[0], xw[1])
    with pytest.raises(TypeError, match="ctx must be the context returned by pyadr.conv2d_forward"):
        pyadr.conv2d_backward(y, bad)
    with pytest.raises(TypeError, match="ctx must be the context returned by pyadr.linear_forward"):
        pyadr.linear_backward(y[:, :, 0, 0], bad)


def test_linear_ctx_to_conv_backward(rng):
    x = rng.standard_normal((5, 8))
    w = rng.standard_normal((3, 8))
    for reuse in (None, pyadr.ReuseConfig(L=4, H=3)):
        y, ctx = pyadr.linear_forward(x, w, reuse=reuse)
        with pytest.raises(TypeError, match="ctx must be the context returned by pyadr.conv2d_forward.*linear"):
            pyadr.conv2d_backward(y[:, :, None, None], ctx)


def test_exact_ctx_has_no_clusters(xw):
    _, ctx = pyadr.conv2d_forward(xw[0], xw[1])
    for call in (ctx.cluster_ids, lambda: ctx.cluster_counts(0), lambda: ctx.centroids(0)):
        with pytest.raises(ValueError, match="exact call"):
            call()


@pytest.mark.parametrize("j", [-1, 3, 100, 1.0, "0"])
def test_bad_block_index(xw, j):
    _, ctx = pyadr.conv2d_forward(xw[0], xw[1], reuse=pyadr.ReuseConfig(L=9, H=4))   # 3 blocks
    with pytest.raises(ValueError, match=r"j must be a sub-matrix index in \[0, 3\)"):
        ctx.cluster_counts(j)
    with pytest.raises(ValueError, match=r"j must be a sub-matrix index in \[0, 3\)"):
        ctx.centroids(j)


# --- linear ----------------------------------------------------------------------------------

def test_linear_bad_inputs(rng):
    x = rng.standard_normal((4, 6))
    w = rng.standard_normal((3, 6))
    with pytest.raises(ValueError, match="x must be 2-D"):
        pyadr.linear_forward(x[None], w)
    with pytest.raises(ValueError, match="w must be 2-D"):
        pyadr.linear_forward(x, w[0])
    with pytest.raises(ValueError, match=r"w must have shape \(out_features, 6\)"):
        pyadr.linear_forward(x, w[:, :5])
    with pytest.raises(ValueError, match=r"b must have shape \(3,\)"):
        pyadr.linear_forward(x, w, np.zeros(4))
    with pytest.raises(TypeError, match="w must have the dtype of x"):
        pyadr.linear_forward(x, w.astype(np.float32))
    with pytest.raises(TypeError, match="x must be float32 or float64"):
        pyadr.linear_forward(x.astype(np.float16), w)
    with pytest.raises(ValueError, match="x must not be empty"):
        pyadr.linear_forward(x[:0], w)
    y, ctx = pyadr.linear_forward(x, w)
    with pytest.raises(ValueError, match="dy must have the shape"):
        pyadr.linear_backward(y[:, :2], ctx)
    with pytest.raises(ValueError, match="dy must be 2-D"):
        pyadr.linear_backward(y[:, :, None], ctx)


# --- runtime ---------------------------------------------------------------------------------

@pytest.mark.parametrize("n,exc", [(0, ValueError), (-2, ValueError), (1.5, TypeError), (True, TypeError),
                                   ("2", TypeError)])
def test_set_num_threads_bad(n, exc, restore_threads):
    with pytest.raises(exc, match="n must be"):
        pyadr.set_num_threads(n)
    assert pyadr.get_num_threads() == restore_threads


def test_set_gemm_provider_bad():
    with pytest.raises(ValueError, match="name must be one of"):
        pyadr.set_gemm_provider("mkl")
