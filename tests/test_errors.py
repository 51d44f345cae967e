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


# --- native errors keep their type -----------------------------------------------------------
# The C++ core throws pyadr::Error (ValueError), pyadr::TypeError (TypeError), std::bad_alloc
# (MemoryError) or anything else (RuntimeError), also from inside its OpenMP regions, where the
# first exception is kept with its type and rethrown after the region. Allocation failures are
# injected with the allocator's test hook (_native._fail_allocs_after).

def _nat():
    from pyadr import _native
    return _native


@pytest.fixture
def inject(restore_threads):
    """inject(internal) arms one failure of the next allocation inside an OpenMP region."""
    nat = _nat()
    pyadr.set_num_threads(2)   # the reuse backward allocates inside a region only with 2+ threads
    regions = nat.info()["openmp"]  # without OpenMP there are no regions: the first allocation fails
    yield lambda internal=False: nat._fail_allocs_after(0, regions, internal)
    nat._fail_allocs_after(-1)


def _conv_calls(rng):
    """(name, forward(), backward(y, ctx)) for exact/reuse conv2d and linear, float32 and 64."""
    x = rng.standard_normal((4, 8, 12, 12))
    w = rng.standard_normal((16, 8, 3, 3))
    xl, wl = rng.standard_normal((64, 32)), rng.standard_normal((8, 32))
    calls = []
    for dtype in (np.float32, np.float64):
        for reuse in (None, pyadr.ReuseConfig(L=8, H=6)):
            calls.append((f"conv2d {np.dtype(dtype).name} {'reuse' if reuse else 'exact'}",
                          lambda d=dtype, r=reuse: pyadr.conv2d_forward(x.astype(d), w.astype(d), padding=1, reuse=r),
                          lambda y, ctx: pyadr.conv2d_backward(np.ones_like(y), ctx)))
            calls.append((f"linear {np.dtype(dtype).name} {'reuse' if reuse else 'exact'}",
                          lambda d=dtype, r=reuse: pyadr.linear_forward(xl.astype(d), wl.astype(d), reuse=r),
                          lambda y, ctx: pyadr.linear_backward(np.ones_like(y), ctx)))
    return calls


@pytest.mark.parametrize("internal,exc,match", [(False, MemoryError, "out of memory"),
                                                (True, RuntimeError, "internal error")])
def test_failure_inside_parallel_region_keeps_its_type(rng, inject, internal, exc, match):
    nat = _nat()
    # The builtin kernels' OpenMP regions are under test: oneDNN (the float32 exact conv's other
    # provider) allocates outside any region of ours.
    pyadr.get_conv_provider()                  # applies PYADR_CONV_PROVIDER first
    previous = nat.get_conv_provider()
    pyadr.set_conv_provider("builtin")
    try:
        _check_failures_keep_their_type(rng, inject, internal, exc, match, nat)
    finally:
        nat.set_conv_provider(previous)


def _check_failures_keep_their_type(rng, inject, internal, exc, match, nat):
    for name, forward, backward in _conv_calls(rng):
        if name.startswith("linear") and name.endswith("exact"):
            continue  # GEMMs only, into a thread-local packing buffer: nothing is allocated per call
        inject(internal)
        with pytest.raises(exc, match=match):
            forward()
        nat._fail_allocs_after(-1)
        y, ctx = forward()                     # the library works again after the failure
        inject(internal)
        with pytest.raises(exc, match=match):
            backward(y, ctx)
        nat._fail_allocs_after(-1)
        dx, dw, _ = backward(y, ctx)
        assert np.all(np.isfinite(dw)), name


def test_native_value_errors_are_value_errors(rng):
    """Values the C++ core refuses (here reached without pyadr._api's checks) raise ValueError."""
    nat = _nat()
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    y = np.empty((2, 4, 4, 4), np.float32)
    geom = (2, 3, 6, 6, 4, 3, 3, 1, 1, 0, 0, 1, 1)
    bad_stride = geom[:7] + (0, 1) + geom[9:]
    with pytest.raises(ValueError, match="stride"):
        nat.conv_forward_exact(0, bad_stride, x, w, None, y)
    with pytest.raises(ValueError, match="stride"):
        nat.conv_backward_exact(0, bad_stride, x, w, y, None, np.empty_like(w), None)
    planes = np.ones((28, 4), np.float32)
    with pytest.raises(ValueError, match=r"reuse\.L must be in \[1, K=27\], got 28"):
        nat.conv_forward_reuse(0, geom, 28, 4, 0, 0, 0, planes, None, 1.0, 0, x, w, None, y)
    # a linear layer is a 1x1 convolution of 1x1 images
    xl, wl, yl = np.ones((5, 6, 1, 1)), np.ones((3, 6, 1, 1)), np.empty((5, 3, 1, 1))
    with pytest.raises(ValueError, match=r"reuse\.H must be in \[1, 64\]"):
        nat.conv_forward_reuse(1, (5, 6, 1, 1, 3, 1, 1, 1, 1, 0, 0, 1, 1), 3, 65, 0, 0, 0, np.ones((3, 65)),
                               None, 1.0, 0, xl, wl, None, yl)


def test_native_type_errors_are_type_errors(rng):
    """A backward of another dtype than its forward, and arrays of another dtype than the call's."""
    nat = _nat()
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    y, ctx = pyadr.conv2d_forward(x, w, reuse=pyadr.ReuseConfig(L=9, H=4))
    with pytest.raises(TypeError, match=r"dy must have the dtype of the forward call \(float32\), got float64"):
        ctx._state.backward(np.ones(y.shape), np.empty(x.shape), np.empty(w.shape), None)
    yl, ctxl = pyadr.linear_forward(np.ones((5, 6)), np.ones((3, 6)), reuse=pyadr.ReuseConfig(L=3, H=4))
    with pytest.raises(TypeError, match=r"forward call \(float64\), got float32"):
        ctxl._state.backward(np.ones((5, 3, 1, 1), np.float32), None, np.empty((3, 6, 1, 1), np.float32), None)
    geom = (2, 3, 6, 6, 4, 3, 3, 1, 1, 0, 0, 1, 1)
    with pytest.raises(TypeError, match="w must be float32"):
        nat.conv_forward_exact(0, geom, x, w.astype(np.float64), None, y)
    with pytest.raises(TypeError, match="dy must be float64"):
        nat.conv_backward_exact(1, geom, x.astype(np.float64), w.astype(np.float64), y, None, None, None)


# --- values checked by the native core (native/src/params.cpp) -------------------------------
# The C++ core checks every VALUE itself, so the Python layer may keep only type/dtype/ndim checks.

_G = (2, 3, 6, 6, 4, 3, 3, 1, 1, 0, 0, 1, 1)   # (B, C, H, W, M, kh, kw, sh, sw, ph, pw, dh, dw)


def _with(**kw):
    names = ("B", "C", "H", "W", "M", "kh", "kw", "sh", "sw", "ph", "pw", "dh", "dw")
    return tuple(kw.get(n, v) for n, v in zip(names, _G))


@pytest.mark.parametrize("geom,match", [
    (_with(B=0), r"x: batch size must be >= 1, got 0"),
    (_with(C=0), r"x: channels, height and width must be >= 1, got \(0, 6, 6\)"),
    (_with(W=-1), r"x: channels, height and width must be >= 1"),
    (_with(M=0), r"w: out_channels must be >= 1, got 0"),
    (_with(kh=0), r"w: kernel size must be >= 1, got \(0, 3\)"),
    (_with(sw=0), r"stride must be >= 1, got \(1, 0\)"),
    (_with(ph=-1), r"padding must be >= 0, got \(-1, 0\)"),
    (_with(dh=0), r"dilation must be >= 1, got \(0, 1\)"),
    (_with(kh=7), r"w: kernel \(7x3 with dilation\) is larger than the padded input \(6x6\)"),
    (_with(dw=4), r"w: kernel \(3x9 with dilation\) is larger than the padded input \(6x6\)"),
    (_with(ph=2 ** 62), r"padding is too large"),
    (_with(dh=2 ** 62, ph=2 ** 40), r"dilation \* \(kernel - 1\) is too large"),
    (_with(B=2 ** 31, H=2 ** 31, W=2 ** 10), r"is too large \(more than 2\^62 elements\)"),
    (_with(C=2 ** 40, M=2 ** 30), r"w is too large"),
])
def test_native_geometry_checks(geom, match):
    with pytest.raises(ValueError, match=match):
        _nat().output_shape(geom)


def test_native_reuse_checks(rng):
    nat = _nat()
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    y = np.empty((2, 4, 4, 4), np.float32)

    def call(L=9, H=4, order=0, hash=0, scope=0, planes=None, offsets=None, width=1.0, exact=0):
        planes = np.ones((L, H), np.float32) if planes is None else planes
        nat.conv_forward_reuse(0, _G, L, H, order, hash, scope, planes, offsets, width, exact, x, w, None, y)

    for exact in (7, -1, 8):
        with pytest.raises(ValueError, match=r"reuse\.exact must be a combination of 1 \(forward\), 2 \(dw\) and "
                                             rf"4 \(dx\), not all three .*, got {exact}"):
            call(exact=exact)

    with pytest.raises(ValueError, match=r"reuse\.L must be in \[1, K=27\], got 0"):
        call(L=0)
    with pytest.raises(ValueError, match=r"reuse\.H must be in \[1, 64\], got 0"):
        call(H=0)
    with pytest.raises(ValueError, match=r"reuse\.order must be 0 \(hwc\) or 1 \(chw\), got 2"):
        call(order=2)
    with pytest.raises(ValueError, match=r"reuse\.hash must be 0 \(sign\) or 1 \(l2\), got -1"):
        call(hash=-1)
    with pytest.raises(ValueError, match=r"reuse\.scope must be 0 \(batch\) or 1 \(input\), got 5"):
        call(scope=5)
    bad = np.ones((9, 4), np.float32)
    bad[3, 1] = np.inf
    with pytest.raises(ValueError, match=r"reuse\.planes must be finite"):
        call(planes=bad)
    with pytest.raises(ValueError, match=r"reuse\.offsets must be given for l2 hashing"):
        call(hash=1)
    with pytest.raises(ValueError, match=r"reuse\.width must be finite and > 0 for l2 hashing"):
        call(hash=1, offsets=np.zeros(4, np.float32), width=0.0)
    with pytest.raises(ValueError, match=r"reuse\.offsets must be finite"):
        call(hash=1, offsets=np.array([0, np.nan, 0, 0], np.float32))


def test_limits_come_from_the_native_core():
    lim = _nat().limits()
    assert lim["max_hash_bits"] == 64 and lim["max_rows_per_call"] == 2 ** 31 - 1
    from pyadr import _config
    assert _config.MAX_H == lim["max_hash_bits"]
    pyadr.ReuseConfig(H=lim["max_hash_bits"])
    with pytest.raises(ValueError, match=rf"ReuseConfig\.H must be in \[1, {lim['max_hash_bits']}\]"):
        pyadr.ReuseConfig(H=lim["max_hash_bits"] + 1)


@pytest.mark.parametrize("j", [-1, 3, 100])
def test_native_block_index_checked(xw, j):
    """The native state refuses a sub-matrix index out of range itself (no out-of-bounds read)."""
    _, ctx = pyadr.conv2d_forward(xw[0], xw[1], reuse=pyadr.ReuseConfig(L=9, H=4))   # 3 blocks
    st = ctx._state
    for call in (lambda: st.block_len(j), lambda: st.counts_into(j, np.empty(64, np.int32)),
                 lambda: st.centroids_into(j, np.empty((64, 9), np.float32))):
        with pytest.raises(ValueError, match=rf"j must be a sub-matrix index in \[0, 3\), got {j}"):
            call()
