"""pyadr.nn layers against finite differences (float64) and loop references."""
import numpy as np
import pytest

import pyadr.nn as nn
from pyadr.nn import pooling


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def numerical_grad(f, x, eps=1e-6):
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return g


def check_module_grads(module, x, rng, atol=1e-6):
    """Compare backward's dx and parameter grads with central differences of sum(y * r)."""
    module.train()
    y = module.forward(x)
    r = rng.standard_normal(y.shape)
    dx = module.backward(r.copy())

    def loss():
        return float((module.forward(x) * r).sum())
    np.testing.assert_allclose(dx, numerical_grad(loss, x), atol=atol, rtol=1e-5)
    for name, p in module.named_parameters():
        np.testing.assert_allclose(p.grad, numerical_grad(loss, p.data), atol=atol, rtol=1e-5,
                                   err_msg=name)


def to64(module):
    for _, p in module.named_parameters():
        p.data = p.data.astype(np.float64)
    for _, mod, b in module.named_buffers():
        mod.register_buffer(b, mod._buffers[b].astype(np.float64))
    return module


def test_conv2d_gradients(rng):
    conv = to64(nn.Conv2d(2, 3, 3, stride=2, padding=1, rng=rng))
    check_module_grads(conv, rng.standard_normal((2, 2, 5, 5)), rng)


def test_linear_gradients(rng):
    lin = to64(nn.Linear(5, 4, rng=rng))
    check_module_grads(lin, rng.standard_normal((3, 5)), rng)


@pytest.mark.parametrize("k,s,p,size", [(3, 2, 1, 7), (2, 2, 0, 6), (3, 1, 0, 5), (3, 3, 1, 7), (2, 2, 0, 5)])
def test_maxpool_gradients(rng, k, s, p, size):
    check_module_grads(nn.MaxPool2d(k, s, p), rng.standard_normal((2, 3, size, size)), rng)


@pytest.mark.parametrize("k,s,p,size", [(3, 2, 1, 7), (2, 2, 0, 6), (3, 1, 1, 5)])
def test_avgpool_gradients(rng, k, s, p, size):
    check_module_grads(nn.AvgPool2d(k, s, p), rng.standard_normal((2, 3, size, size)), rng)


def test_lrn_and_batchnorm_gradients(rng):
    check_module_grads(nn.LocalResponseNorm(4, alpha=0.3, beta=0.75, k=1.5),
                       rng.standard_normal((2, 6, 3, 3)), rng)
    check_module_grads(nn.LocalResponseNorm(3, alpha=0.2, beta=0.6, k=2.0),
                       rng.standard_normal((2, 5, 2, 2)), rng)
    bn = to64(nn.BatchNorm2d(3))
    bn.weight.data = rng.standard_normal(3)
    bn.bias.data = rng.standard_normal(3)
    check_module_grads(bn, rng.standard_normal((4, 3, 3, 3)), rng, atol=1e-5)


def test_relu_flatten_dropout_gradients(rng):
    x = rng.standard_normal((3, 2, 3, 3))
    x[np.abs(x) < 1e-3] = 0.5   # keep away from the kink
    check_module_grads(nn.Sequential(nn.ReLU(), nn.Flatten()), x, rng)
    drop = nn.Dropout(0.5, rng=np.random.default_rng(0))
    drop.train()
    y = drop.forward(np.ones((4, 100)))
    assert set(np.unique(y)) <= {0.0, 2.0} and 0 < (y == 0).mean() < 1
    np.testing.assert_array_equal(drop.backward(np.ones((4, 100))), y)
    drop.eval()
    np.testing.assert_array_equal(drop.forward(x), x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3,), (2, 3, 5, 7), (70000,)])   # 70000: several parallel chunks
def test_native_relu_matches_numpy(rng, dtype, shape):
    """The native ReLU (contiguous NumPy float arrays) against NumPy: NaN propagates forward, the
    backward passes dy only where y > 0 (zeros, NaN and negatives block it), the input is untouched."""
    x = rng.standard_normal(shape).astype(dtype)
    flat = x.reshape(-1)
    flat[::5] = 0.0
    flat[1] = np.nan
    x0 = x.copy()
    relu = nn.ReLU()
    y = relu.forward(x)
    np.testing.assert_array_equal(y, np.maximum(x0, 0))
    np.testing.assert_array_equal(x, x0)
    dy = rng.standard_normal(shape).astype(dtype)
    dx = relu.backward(dy)
    assert dx.dtype == dtype
    np.testing.assert_array_equal(dx, np.where(y > 0, dy, 0))
    # the array-module fallback (non-contiguous input) gives the same values
    xt = np.asfortranarray(x0.reshape(shape[0], -1)) if len(shape) > 1 else x0[::1]
    other = nn.ReLU()
    yt = other.forward(xt)
    np.testing.assert_array_equal(yt, np.maximum(xt, 0))
    dyt = np.asfortranarray(dy.reshape(xt.shape))
    np.testing.assert_array_equal(other.backward(dyt), np.where(yt > 0, dyt, 0))


def test_relu_backward_without_training_forward_raises(rng):
    relu = nn.ReLU()
    relu.eval()
    relu.forward(np.ones((2, 2), np.float32))
    with pytest.raises(RuntimeError, match="training mode"):
        relu.backward(np.ones((2, 2), np.float32))


def loop_maxpool(x, k, s, p):
    B, C, H, W = x.shape
    OH, OW = (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1
    y = np.full((B, C, OH, OW), -np.inf)
    dx_index = {}
    for b in range(B):
        for c in range(C):
            for oh in range(OH):
                for ow in range(OW):
                    for i in range(k):          # row-major scan, strict '>' keeps the first max
                        for j in range(k):
                            h, w = oh * s - p + i, ow * s - p + j
                            if 0 <= h < H and 0 <= w < W and x[b, c, h, w] > y[b, c, oh, ow]:
                                y[b, c, oh, ow] = x[b, c, h, w]
                                dx_index[b, c, oh, ow] = (h, w)
    return y, dx_index


@pytest.mark.parametrize("impl", ["native", "vectorised"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k,s,p", [(3, 2, 1), (2, 2, 0), (3, 1, 1), (2, 1, 0)])
def test_maxpool_matches_loop_reference_with_ties(rng, k, s, p, dtype, impl):
    """The native kernel (NumPy float arrays) and the vectorised one (CuPy's path) against loops."""
    fwd, bwd = pooling.maxpool2d_forward, pooling.maxpool2d_backward
    if impl == "vectorised":
        fwd, bwd = pooling.maxpool2d_forward_vectorised, pooling.maxpool2d_backward_vectorised
    x = rng.integers(0, 3, size=(2, 2, 6, 7)).astype(dtype)   # many ties
    y, cache = fwd(x, (k, k), (s, s), (p, p))
    assert y.dtype == dtype
    y_ref, where = loop_maxpool(x, k, s, p)
    np.testing.assert_array_equal(y, y_ref)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = bwd(dy, cache)
    dx_ref = np.zeros_like(x)
    for (b, c, oh, ow), (h, w) in where.items():
        dx_ref[b, c, h, w] += dy[b, c, oh, ow]
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-6, atol=1e-6)
    y_eval, no_cache = fwd(x, (k, k), (s, s), (p, p), track=False)
    np.testing.assert_array_equal(y_eval, y_ref)
    assert no_cache is None


@pytest.mark.parametrize("shape", [(2, 2, 5, 1), (2, 2, 1, 5), (1, 3, 2, 2), (2, 1, 1, 1)])
@pytest.mark.parametrize("k,s,p", [(3, 2, 1), (3, 3, 1), (2, 2, 1)])
def test_native_maxpool_on_planes_narrower_than_the_window(rng, shape, k, s, p):
    """Taps that fall right of a narrow plane must not read the next row (or plane): values
    there are made large so that such a read would win."""
    x = rng.standard_normal(shape).astype(np.float32)
    x[..., 1:, :] += 10.0 * np.arange(1, shape[2])[:, None]   # later rows larger
    x[1:] += 100.0                                             # later planes larger still
    y, cache = pooling.maxpool2d_forward(x, (k, k), (s, s), (p, p))
    y_ref, _ = loop_maxpool(x, k, s, p)
    np.testing.assert_array_equal(y, y_ref)


def test_native_maxpool_non_contiguous_input_and_bad_geometry(rng):
    x = rng.standard_normal((2, 7, 6, 3)).astype(np.float32).transpose(0, 3, 1, 2)   # (2, 3, 7, 6) view
    y, cache = pooling.maxpool2d_forward(x, (3, 3), (2, 2), (1, 1))
    y_ref, _ = pooling.maxpool2d_forward_vectorised(x, (3, 3), (2, 2), (1, 1))
    np.testing.assert_array_equal(y, y_ref)
    with pytest.raises(ValueError, match="padding"):
        pooling.maxpool2d_forward(x, (2, 2), (1, 1), (2, 2))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size,C", [(9, 64), (4, 6), (5, 3), (1, 2)])
def test_native_lrn_matches_vectorised(rng, size, C, dtype):
    """The native LRN (NumPy float arrays) against the vectorised version, forward and backward,
    including windows wider than the channel count and even sizes."""
    x = rng.standard_normal((3, C, 5, 4)).astype(dtype) * 2
    dy = rng.standard_normal(x.shape).astype(dtype)
    layer = nn.LocalResponseNorm(size, alpha=0.3, beta=0.75, k=1.5)
    y = layer.forward(x)
    assert layer._cache[0] == "native" and y.dtype == dtype
    dx = layer.backward(dy)
    ref = nn.LocalResponseNorm(size, alpha=0.3, beta=0.75, k=1.5)
    y_ref = ref.forward_vectorised(x)
    dx_ref = ref.backward(dy)
    tol = dict(rtol=2e-5, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(y, y_ref, **tol)
    np.testing.assert_allclose(dx, dx_ref, **tol)
    other = nn.LocalResponseNorm(size, alpha=0.3, beta=0.6, k=1.5)      # beta != 0.75: pow
    np.testing.assert_allclose(other.forward(x), other.forward_vectorised(x), **tol)


def test_avgpool_matches_loop_reference(rng):
    x = rng.standard_normal((2, 3, 7, 7))
    y, _ = pooling.avgpool2d_forward(x, (3, 3), (2, 2), (1, 1))
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    ref = np.array([[[[xp[b, c, 2 * i: 2 * i + 3, 2 * j: 2 * j + 3].mean() for j in range(4)]
                      for i in range(4)] for c in range(3)] for b in range(2)])
    np.testing.assert_allclose(y, ref, rtol=1e-12)


def test_lrn_matches_pytorch_formula(rng):
    x = rng.standard_normal((2, 7, 2, 3))
    size, alpha, beta, k = 4, 0.01, 0.75, 2.0
    y = nn.LocalResponseNorm(size, alpha, beta, k).forward(x)
    ref = np.empty_like(x)
    for c in range(7):
        lo, hi = max(0, c - size // 2), min(7, c + (size - 1) // 2 + 1)
        s = k + alpha / size * (x[:, lo:hi] ** 2).sum(axis=1)
        ref[:, c] = x[:, c] / s ** beta
    np.testing.assert_allclose(y, ref, rtol=1e-12)


def test_batchnorm_running_stats_and_eval(rng):
    bn = nn.BatchNorm2d(2, momentum=0.5)
    x = rng.standard_normal((8, 2, 3, 3)).astype(np.float32) * 3 + 1
    bn.train()
    y = bn.forward(x)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(bn.running_mean, 0.5 * x.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(bn.running_var, 0.5 + 0.5 * x.var(axis=(0, 2, 3), ddof=1), rtol=1e-5)
    bn.eval()
    ye = bn.forward(x)
    np.testing.assert_allclose(ye, (x - bn.running_mean[None, :, None, None])
                               / np.sqrt(bn.running_var[None, :, None, None] + 1e-5), rtol=1e-5)


def test_softmax_cross_entropy_gradient(rng):
    logits = rng.standard_normal((4, 5))
    labels = np.array([0, 3, 4, 1])
    loss, grad, correct = nn.softmax_cross_entropy(logits, labels)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert loss == pytest.approx(-np.log(p[np.arange(4), labels]).mean())
    num = numerical_grad(lambda: nn.softmax_cross_entropy(logits, labels)[0], logits)
    np.testing.assert_allclose(grad, num, atol=1e-7)
    assert correct == int((logits.argmax(1) == labels).sum())
    total, correct2 = nn.cross_entropy_loss(logits, labels)
    assert total / 4 == pytest.approx(loss) and correct2 == correct


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="out_channels"):
        nn.Conv2d(3, 0, 3)
    with pytest.raises(TypeError, match="kernel_size"):
        nn.Conv2d(3, 4, 2.5)
    with pytest.raises(TypeError, match="reuse"):
        nn.Conv2d(3, 4, 3).reuse = "fast"
    with pytest.raises(ValueError, match="Dropout p"):
        nn.Dropout(1.0)
    with pytest.raises(ValueError, match="padding"):
        nn.MaxPool2d(2, 2, padding=2)
    with pytest.raises(ValueError, match="labels"):
        nn.softmax_cross_entropy(np.zeros((2, 3)), np.zeros(3, dtype=int))


@pytest.mark.parametrize("reuse", [None, "reuse"])
def test_conv_backward_without_input_grad(rng, reuse):
    """input_grad=False skips dx (None) and leaves dw, db unchanged; models skip the first layer's."""
    import pyadr
    x = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    cfg = pyadr.ReuseConfig(L=9, H=6, seed=1) if reuse else None
    y, ctx = pyadr.conv2d_forward(x, w, b, padding=1, reuse=cfg)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, dw, db = pyadr.conv2d_backward(dy, ctx)
    y, ctx = pyadr.conv2d_forward(x, w, b, padding=1, reuse=cfg)
    none, dw2, db2 = pyadr.conv2d_backward(dy, ctx, input_grad=False)
    assert none is None and dx is not None
    np.testing.assert_array_equal(dw2, dw)
    np.testing.assert_array_equal(db2, db)
    with pytest.raises(TypeError, match="input_grad"):
        pyadr.conv2d_backward(dy, ctx, input_grad="no")
    from pyadr.train.models import build_model, engine_layers
    layers = dict(engine_layers(build_model("cifarnet", (1, 12, 12), 4, 0.25)))
    assert layers["conv1"].input_grad is False and layers["conv2"].input_grad is True
