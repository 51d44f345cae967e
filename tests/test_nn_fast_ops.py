"""The native memory-bound kernels of pyadr.nn (batch_norm.cpp, sgd_update.cpp, the fused ReLU
paths) against their array-module references and finite differences."""
import copy

import numpy as np
import pytest

import pyadr.nn as nn
from pyadr import _native

from test_nn_layers import check_module_grads, to64


@pytest.fixture
def rng():
    return np.random.default_rng(4321)


def _bn_pair(rng, C, dtype, affine=True, momentum=0.1):
    a = nn.BatchNorm2d(C, affine=affine, momentum=momentum, dtype=dtype)
    if affine:
        a.weight.data = rng.standard_normal(C).astype(dtype)
        a.bias.data = rng.standard_normal(C).astype(dtype)
    return a, copy.deepcopy(a)


@pytest.mark.parametrize("dtype,tol", [(np.float32, 2e-6), (np.float64, 1e-13)])
# HW < 64 takes the channel-block path (one block; (2, 300, 2, 3): two), HW >= 64 the channel path
@pytest.mark.parametrize("shape", [(4, 3, 5, 5), (1, 2, 1, 1), (7, 70, 1, 1), (2, 300, 2, 3), (16, 8, 9, 11),
                                   (3, 5, 8, 9)])
@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm_native_matches_vectorised(rng, dtype, tol, shape, affine):
    """Training forward (y, running stats), backward (dx, dgamma, dbeta) and eval forward of the
    native kernel against forward_vectorised on the same module state."""
    C = shape[1]
    a, b = _bn_pair(rng, C, dtype, affine)
    for step in range(2):      # the second step starts from updated running stats
        x = (rng.standard_normal(shape) * 3 + 1.5).astype(dtype)
        ya, yb = a.forward(x), b.forward_vectorised(x)
        assert a._cache[0] == "native" and b._cache[0] == "vectorised"
        scale = max(1.0, float(np.abs(yb).max()))
        np.testing.assert_allclose(ya, yb, rtol=0, atol=tol * 10 * scale)
        np.testing.assert_allclose(a.running_mean, b.running_mean, rtol=tol * 10, atol=tol)
        np.testing.assert_allclose(a.running_var, b.running_var, rtol=tol * 10, atol=tol)
        dy = rng.standard_normal(shape).astype(dtype)
        dxa, dxb = a.backward(dy), b.backward(dy)
        np.testing.assert_allclose(dxa, dxb, rtol=0, atol=tol * 100 * max(1.0, float(np.abs(dxb).max())))
        if affine:
            for pa, pb in ((a.weight, b.weight), (a.bias, b.bias)):
                assert pa.grad.dtype == dtype
                np.testing.assert_allclose(pa.grad, pb.grad, rtol=tol * 100, atol=tol * 100 * np.abs(pb.grad).max())
    a.eval()
    b.eval()
    x = rng.standard_normal(shape).astype(dtype)
    np.testing.assert_allclose(a.forward(x), b.forward_vectorised(x), rtol=0, atol=tol * 10)


# Batches past the float partial sums (16 images per partial in the channel-block path, one
# plane per partial in the channel path), with a ReLU fused, against the float64 computation.
@pytest.mark.parametrize("shape", [(40, 20, 3, 3), (130, 3, 7, 7), (37, 4, 9, 9), (129, 2, 1, 1)])
def test_batchnorm_native_float32_large_batch_against_float64(rng, shape):
    a, b = _bn_pair(rng, shape[1], np.float32, True)
    b = to64(b)
    x = (rng.standard_normal(shape) * 2 + 3).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    fused = nn.Sequential(a, nn.ReLU())
    y = fused.forward(x)
    assert a.relu_applied
    yb = np.maximum(b.forward_vectorised(x.astype(np.float64)), 0)
    np.testing.assert_allclose(y, yb, rtol=0, atol=2e-5 * np.abs(yb).max())
    dx = fused.backward(dy)
    dxb = b.backward(dy * (yb > 0))
    np.testing.assert_allclose(dx, dxb, rtol=0, atol=2e-5 * np.abs(dxb).max())
    np.testing.assert_allclose(a.weight.grad, b.weight.grad, rtol=0, atol=2e-5 * np.abs(b.weight.grad).max())
    np.testing.assert_allclose(a.bias.grad, b.bias.grad, rtol=0, atol=2e-5 * np.abs(b.bias.grad).max())


@pytest.mark.parametrize("shape", [(40, 70, 3, 3), (20, 6, 9, 9)])
def test_batchnorm_native_same_bits_for_any_thread_count(rng, shape):
    """Channels (or channel blocks) are whole per thread: 1 and 2 threads give the same bits."""
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    import pyadr
    outs, before = [], pyadr.get_num_threads()
    try:
        for nt in (1, 2):
            pyadr.set_num_threads(nt)
            bn = nn.BatchNorm2d(shape[1])
            y = bn.forward(x)
            outs.append((y, bn.backward(dy)))
    finally:
        pyadr.set_num_threads(before)
    for u, v in zip(*outs):
        np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm_native_gradients(rng, affine):
    bn = to64(nn.BatchNorm2d(3, affine=affine))
    if affine:
        bn.weight.data = rng.standard_normal(3)
        bn.bias.data = rng.standard_normal(3)
    check_module_grads(bn, rng.standard_normal((3, 3, 2, 4)), rng, atol=1e-5)
    assert bn._cache[0] == "native"


def test_batchnorm_falls_back_for_mixed_dtypes(rng):
    bn = nn.BatchNorm2d(2)            # float32 parameters, float64 input: the NumPy path
    x = rng.standard_normal((3, 2, 2, 2))
    bn.forward(x)
    assert bn._cache[0] == "vectorised"


def test_batchnorm_native_bad_input(rng):
    bn = nn.BatchNorm2d(2)
    x = rng.standard_normal((3, 2, 2, 2)).astype(np.float32)
    bn.forward(x)
    with pytest.raises(ValueError, match="dy must have the forward's output shape"):
        bn.backward(np.zeros((3, 2, 2, 1), np.float32))
    with pytest.raises(RuntimeError, match="forward in training mode"):
        bn.eval()
        bn.forward(x)
        bn.backward(np.zeros_like(x))
    C = 2
    f32 = [np.zeros(C, np.float32) for _ in range(2)]
    f64 = [np.zeros(C, np.float64) for _ in range(2)]
    with pytest.raises(TypeError, match="gamma must be float32"):
        _native.batch_norm_forward(3, C, 4, x, f64[0], None, 1e-5, True, *f64, *f32, False, np.empty_like(x))
    with pytest.raises(ValueError, match="B, C and HW must be >= 1"):
        _native.batch_norm_forward(0, C, 4, x, None, None, 1e-5, True, *f64, *f32, False, np.empty_like(x))
    with pytest.raises(ValueError, match="eps must be > 0"):
        _native.batch_norm_forward(3, C, 4, x, None, None, 0.0, True, *f64, *f32, False, np.empty_like(x))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("HW", [6, 70])
def test_batchnorm_kernel_fused_relu(rng, dtype, HW):
    """relu=True gives max(bn(x), 0); the backward with y given equals the plain backward of
    dy * (y > 0)."""
    B, C = 5, 4
    x = rng.standard_normal((B, C, HW)).astype(dtype)
    gamma, beta = rng.standard_normal(C).astype(dtype), rng.standard_normal(C).astype(dtype)
    outs = []
    for relu in (False, True):
        mean, var = np.empty(C), np.empty(C)
        mt, s, y = np.empty(C, dtype), np.empty(C, dtype), np.empty_like(x)
        _native.batch_norm_forward(B, C, HW, x, gamma, beta, 1e-5, True, mean, var, mt, s, relu, y)
        outs.append((y, mt, s))
    (y0, mt, s), (y1, _, _) = outs
    np.testing.assert_array_equal(y1, np.maximum(y0, 0))
    dy = rng.standard_normal(x.shape).astype(dtype)
    grads = []
    for mask_y, g in ((None, dy * (y1 > 0)), (y1, dy)):
        dx, dg, db = np.empty_like(x), np.empty(C, dtype), np.empty(C, dtype)
        _native.batch_norm_backward(B, C, HW, x, g, mask_y, mt, s, gamma, dx, dg, db)
        grads.append((dx, dg, db))
    for u, v in zip(*grads):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("momentum,dampening,wd,nesterov",
                         [(0.0, 0.0, 0.0, False), (0.0, 0.0, 1e-3, False), (0.9, 0.0, 5e-4, False),
                          (0.9, 0.3, 0.0, False), (0.9, 0.0, 1e-3, True)])
@pytest.mark.parametrize("size", [5, 40000])   # 40000: several parallel chunks
def test_sgd_native_matches_array_update(rng, dtype, momentum, dampening, wd, nesterov, size):
    p0 = rng.standard_normal(size).astype(dtype)
    a, b = nn.Parameter(p0.copy()), nn.Parameter(p0.copy())
    kw = dict(lr=0.05, momentum=momentum, weight_decay=wd, nesterov=nesterov, dampening=dampening)
    oa, ob = nn.SGD([a], **kw), nn.SGD([b], **kw)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    for _ in range(3):
        g = rng.standard_normal(size).astype(dtype)
        a.grad, b.grad = g, g.copy()
        oa.step()
        ob.step_array(0, b)
        np.testing.assert_allclose(a.data, b.data, rtol=tol, atol=tol)
        if momentum:
            np.testing.assert_allclose(oa.buffers[0], ob.buffers[0], rtol=tol, atol=tol)
        else:
            assert oa.buffers[0] is None
        np.testing.assert_array_equal(a.grad, b.grad)     # read, never written


def test_sgd_native_leaves_grad_and_takes_state(rng):
    """The gradient is read, never written; a buffer loaded from a state dict is used in place."""
    p = nn.Parameter(rng.standard_normal((3, 4)).astype(np.float32))
    g = rng.standard_normal((3, 4)).astype(np.float32)
    p.grad = g.copy()
    opt = nn.SGD([p], lr=0.1, momentum=0.9)
    opt.step()
    np.testing.assert_array_equal(p.grad, g)
    q = nn.Parameter(p.data.copy())
    q.grad = g.copy()
    opt2 = nn.SGD([q], lr=0.1, momentum=0.9)
    opt2.load_state_dict(opt.state_dict())
    buf = opt2.buffers[0]
    p.grad = g.copy()
    opt.step()
    opt2.step()
    assert opt2.buffers[0] is buf
    np.testing.assert_allclose(q.data, p.data, rtol=1e-6)


def test_sgd_falls_back_for_strided_grad(rng):
    p = nn.Parameter(rng.standard_normal(4))
    full = rng.standard_normal(8)
    p.grad = full[::2]                 # not contiguous: the array-module path
    p0 = p.data.copy()
    nn.SGD([p], lr=0.5).step()
    np.testing.assert_allclose(p.data, p0 - 0.5 * full[::2])


def _unfused(mods, x, dy):
    """Children called one by one (no Sequential: no fusion): (y, dx, grads)."""
    for m in mods:
        x = m.forward(x)
    y = x
    for m in reversed(mods):
        dy = m.backward(dy)
    return y, dy, [p.grad.copy() for m in mods for _, p in m.named_parameters()]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["bn_relu_pool", "relu_pool", "bn_relu", "relu_pool3"])
@pytest.mark.parametrize("integer", [False, True])   # integer values: ties and all-negative windows
def test_sequential_relu_fusion_matches_unfused(rng, dtype, kind, integer):
    def make():
        r = np.random.default_rng(5)
        layers = {"bn_relu_pool": [nn.BatchNorm2d(3, dtype=dtype), nn.ReLU(), nn.MaxPool2d(2)],
                  "relu_pool": [nn.ReLU(), nn.MaxPool2d(2)],
                  "bn_relu": [nn.BatchNorm2d(3, dtype=dtype), nn.ReLU()],
                  "relu_pool3": [nn.ReLU(), nn.MaxPool2d(3, 2, 1)]}[kind]
        for m in layers:
            if isinstance(m, nn.BatchNorm2d):
                m.weight.data = r.standard_normal(3).astype(dtype)
                m.bias.data = r.standard_normal(3).astype(dtype)
        return layers
    shape = (4, 3, 6, 7)
    x = rng.integers(-3, 3, shape).astype(dtype) if integer else rng.standard_normal(shape).astype(dtype)
    fused = make()
    seq = nn.Sequential(*fused)
    y = seq.forward(x)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = seq.backward(dy)
    relu = [m for m in fused if isinstance(m, nn.ReLU)][0]
    assert relu._passed                    # the fusion did happen
    y_ref, dx_ref, g_ref = _unfused(make(), x, dy)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, y_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(dx, dx_ref, rtol=tol, atol=tol)
    grads = [p.grad for m in fused for _, p in m.named_parameters()]
    for g, gr in zip(grads, g_ref):
        np.testing.assert_allclose(g, gr, rtol=tol, atol=tol)
    # the plan was for that call only: the same ReLU called on its own rectifies again
    np.testing.assert_array_equal(relu.forward(x), np.maximum(x, 0))
    assert not relu._passed


def test_fused_sequential_gradients(rng):
    bn = to64(nn.BatchNorm2d(2))
    bn.weight.data = rng.standard_normal(2)
    bn.bias.data = rng.standard_normal(2)
    x = rng.standard_normal((3, 2, 4, 4))
    check_module_grads(nn.Sequential(bn, nn.ReLU(), nn.MaxPool2d(2)), x, rng, atol=1e-5)
    n = 2 * 2 * 5 * 5                        # distinct values away from 0: no ties, no kink
    x = ((rng.permutation(n) - n / 3 + 0.5) / n).reshape(2, 2, 5, 5)
    check_module_grads(nn.Sequential(nn.ReLU(), nn.MaxPool2d(3, 2, 1)), x, rng)


def test_no_fusion_for_the_array_path(rng):
    """A float64 input to float32 BatchNorm2d takes the NumPy path: the ReLU must rectify itself."""
    bn, relu = nn.BatchNorm2d(2), nn.ReLU()
    y = nn.Sequential(bn, relu).forward(rng.standard_normal((3, 2, 2, 2)))
    assert not bn.relu_applied and not relu._passed and (y >= 0).all()


def _loop_maxpool_torch_rule(x, dy, k, st, pad):
    """(y, dx) of a max-pool by loops with PyTorch's rule: row-major scan, a tap wins when greater
    or NaN; -inf start, index of the first in-bounds tap."""
    H, W = x.shape[2:]
    OH, OW = (H + 2 * pad - k) // st + 1, (W + 2 * pad - k) // st + 1
    y_ref, dx_ref = np.empty(x.shape[:2] + (OH, OW), x.dtype), np.zeros_like(x)
    for b, ch, oh, ow in np.ndindex(*y_ref.shape):
        h0, w0 = max(oh * st - pad, 0), max(ow * st - pad, 0)
        best, at = -np.inf, (h0, w0)
        for i in range(h0, min(oh * st - pad + k, H)):
            for j in range(w0, min(ow * st - pad + k, W)):
                v = x[b, ch, i, j]
                if v > best or np.isnan(v):
                    best, at = v, (i, j)
        y_ref[b, ch, oh, ow] = best
        dx_ref[b, ch][at] += dy[b, ch, oh, ow]
    return y_ref, dx_ref


@pytest.mark.parametrize("size", [(4, 4), (5, 7), (2, 9), (6, 40), (1, 1), (1, 6), (3, 2)])
@pytest.mark.parametrize("k,st,pad", [(2, 2, 0), (3, 2, 1)])
def test_maxpool_fast_paths_match_loops(rng, size, k, st, pad):
    """The 2x2/2 and 3x3/2 pad 1 native paths against loops with PyTorch's rule (row-major scan,
    a tap wins when greater or NaN; -inf start, index of the first in-bounds tap), with ties
    (integers), NaN and -inf."""
    from pyadr.nn import pooling
    x = rng.integers(-2, 2, (3, 2) + size).astype(np.float32)
    x.reshape(-1)[::7] = np.nan
    x.reshape(-1)[3::11] = -np.inf
    H, W = size
    if min(pooling.pool_output_size(H, k, st, pad), pooling.pool_output_size(W, k, st, pad)) < 1:
        pytest.skip("empty output")
    y, c = pooling.maxpool2d_forward(x, (k, k), (st, st), (pad, pad))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = pooling.maxpool2d_backward(dy, c)
    y_ref, dx_ref = _loop_maxpool_torch_rule(x, dy, k, st, pad)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("size", [(28, 28), (14, 14), (7, 14), (2, 34)])
@pytest.mark.parametrize("k,st,pad", [(2, 2, 0), (3, 2, 1)])
def test_maxpool_stride2_rows_path_model_shapes(rng, size, k, st, pad):
    """The separable stride-2 path on the models' even widths (whole 16-lane rows of 14 and 7
    outputs, the plane's last rows through a buffer; 17 outputs: the variable-width loop), with
    ties, NaN and -inf, forward, backward and the untracked (eval) forward, against the loops."""
    from pyadr.nn import pooling
    x = rng.integers(-2, 2, (2, 3) + size).astype(np.float32)
    x.reshape(-1)[::13] = np.nan
    x.reshape(-1)[5::17] = -np.inf
    y, c = pooling.maxpool2d_forward(x, (k, k), (st, st), (pad, pad))
    y_eval, _ = pooling.maxpool2d_forward(x, (k, k), (st, st), (pad, pad), track=False)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = pooling.maxpool2d_backward(dy, c)
    y_ref, dx_ref = _loop_maxpool_torch_rule(x, dy, k, st, pad)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(y_eval, y_ref)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C,H,W,size,beta", [(64, 14, 14, 9, 0.75), (7, 9, 15, 4, 0.6), (3, 1, 1, 5, 0.75)])
def test_lrn_recompute_backward_matches_stored(rng, dtype, C, H, W, size, beta):
    """lrn_backward_recompute (s rebuilt from x per block of 64 pixels, HW not a multiple of 64)
    equals the backward from the stored s and s^-beta, and the layer's forward keeps only x."""
    x = (rng.standard_normal((3, C, H, W)) * 2).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    code, HW = (0 if dtype == np.float32 else 1), H * W
    y, s, sc = np.empty_like(x), np.empty_like(x), np.empty_like(x)
    _native.lrn_forward(code, 3, C, HW, size, 0.3, beta, 1.5, x, y, s, sc)
    dx_stored, dx_rebuilt = np.empty_like(x), np.empty_like(x)
    _native.lrn_backward(code, 3, C, HW, size, 0.3, beta, x, s, sc, dy, dx_stored)
    _native.lrn_backward_recompute(3, C, HW, size, 0.3, beta, 1.5, x, dy, dx_rebuilt)
    np.testing.assert_array_equal(dx_rebuilt, dx_stored)
    layer = nn.LocalResponseNorm(size, alpha=0.3, beta=beta, k=1.5)
    y_layer = layer.forward(x)
    assert len(layer._cache) == 2                       # ("native", x): no s, no scale
    np.testing.assert_array_equal(y_layer, y)
    np.testing.assert_array_equal(layer.backward(dy), dx_stored)
    ref = nn.LocalResponseNorm(size, alpha=0.3, beta=beta, k=1.5)
    y_ref = ref.forward_vectorised(x)
    tol = dict(rtol=2e-5, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(y, y_ref, **tol)
    np.testing.assert_allclose(dx_stored, ref.backward(dy), **tol)


def test_lrn_native_gradients_over_blocks(rng):
    """Finite differences of the native LRN (float64) on a plane of 70 pixels: two blocks."""
    check_module_grads(nn.LocalResponseNorm(5, alpha=0.3, beta=0.75, k=1.5), rng.standard_normal((2, 6, 7, 10)),
                       rng)


def test_lrn_backward_errors(rng):
    layer = nn.LocalResponseNorm(3)
    with pytest.raises(RuntimeError, match="training mode"):
        layer.backward(np.ones((1, 2, 2, 2), np.float32))
    layer.forward(np.ones((1, 2, 2, 2), np.float32))
    with pytest.raises(ValueError, match="output shape"):
        layer.backward(np.ones((1, 2, 2, 3), np.float32))


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_thread_slices_match_numpy(rng, threads, dtype, bias):
    """linear.cpp's per-thread GEMM slices (multiples of 16 columns, the last one short) against
    NumPy, forward and backward, above the single-thread threshold; bias add and gradient fused."""
    import pyadr
    B, n_in, n_out = 70, 300, 50
    x = rng.standard_normal((B, n_in)).astype(dtype)
    w = rng.standard_normal((n_out, n_in)).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype) if bias else None
    dy = rng.standard_normal((B, n_out)).astype(dtype)
    before = pyadr.get_num_threads()
    try:
        pyadr.set_num_threads(threads)
        y, ctx = pyadr.linear_forward(x, w, b)
        dx, dw, db = pyadr.linear_backward(dy, ctx)
    finally:
        pyadr.set_num_threads(before)
    x64, w64, dy64 = x.astype(np.float64), w.astype(np.float64), dy.astype(np.float64)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(y, x64 @ w64.T + (b if bias else 0), **tol)
    np.testing.assert_allclose(dx, dy64 @ w64, **tol)
    np.testing.assert_allclose(dw, dy64.T @ x64, **tol)
    if bias:
        np.testing.assert_allclose(db, dy64.sum(axis=0), **tol)
    else:
        assert db is None


def test_linear_layer_gradients_threaded(rng):
    """Directional finite differences of nn.Linear (float64) on a size that takes linear.cpp's
    threaded path: for random directions v of x, weight and bias, (L(p + eps v) - L(p - eps v)) /
    (2 eps) against <grad, v>, L = sum(y * r)."""
    lin = to64(nn.Linear(80, 40, rng=rng)).train()
    x = rng.standard_normal((90, 80))
    r = rng.standard_normal((90, 40))
    lin.forward(x)
    dx = lin.backward(r.copy())
    grads = {"x": dx, "weight": lin.weight.grad, "bias": lin.bias.grad}
    arrays = {"x": x, "weight": lin.weight.data, "bias": lin.bias.data}
    eps = 1e-6
    for name, a in arrays.items():
        for _ in range(3):
            v = rng.standard_normal(a.shape)
            a += eps * v
            up = float((lin.forward(x) * r).sum())
            a -= 2 * eps * v
            down = float((lin.forward(x) * r).sum())
            a += eps * v
            np.testing.assert_allclose((up - down) / (2 * eps), float((grads[name] * v).sum()), rtol=1e-6,
                                       err_msg=name)
