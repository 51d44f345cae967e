"""pyadr.jax: jit, grad and vmap over pyadr's conv2d and linear (skipped without jax).

References: jax.lax.conv_general_dilated and x @ w.T for the exact path (values and JAX's own
gradients), pyadr's eager conv2d_forward/backward on one context for the reuse path (the
wrapper recomputes the context in its backward, so it must give the same gradients)."""
from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

import pyadr  # noqa: E402
import pyadr.jax as pj  # noqa: E402

RNG = np.random.default_rng(7)


def _data(shape_x=(3, 4, 9, 8), shape_w=(5, 4, 3, 3), dtype=np.float32):
    x = RNG.standard_normal(shape_x).astype(dtype)
    w = (RNG.standard_normal(shape_w) / 3).astype(dtype)
    b = RNG.standard_normal(shape_w[0]).astype(dtype)
    return x, w, b


def _lax_conv(x, w, b, stride, padding, dilation):
    s, p, d = (pyadr._checks.pair(v, "") for v in (stride, padding, dilation))
    y = jax.lax.conv_general_dilated(x, w, window_strides=s, padding=[(p[0], p[0]), (p[1], p[1])],
                                     rhs_dilation=d, dimension_numbers=("NCHW", "OIHW", "NCHW"),
                                     precision=jax.lax.Precision.HIGHEST)
    return y if b is None else y + b[None, :, None, None]


def _loss(fn, g):
    """A scalar of fn's output weighted by fixed g (so that every output element matters)."""
    return lambda *args: jnp.sum(fn(*args) * g)


@pytest.mark.parametrize("stride,padding,dilation,bias", [(1, 0, 1, True), (2, 1, 1, False), ((1, 2), (2, 1), 2, True)])
def test_exact_conv2d_jit_and_grad_match_lax(stride, padding, dilation, bias):
    x, w, b = _data()
    b = b if bias else None
    ours = jax.jit(lambda x, w, b: pj.conv2d(x, w, b, stride, padding, dilation))
    ref = lambda x, w, b: _lax_conv(x, w, b, stride, padding, dilation)  # noqa: E731
    y = ours(x, w, b)
    np.testing.assert_allclose(np.asarray(y), np.asarray(ref(x, w, b)), rtol=1e-4, atol=1e-4)
    g = jnp.asarray(RNG.standard_normal(y.shape).astype(np.float32))
    argnums = (0, 1, 2) if bias else (0, 1)
    got = jax.jit(jax.grad(_loss(ours, g), argnums=argnums))(x, w, b)
    want = jax.grad(_loss(ref, g), argnums=argnums)(x, w, b)
    for a, e in zip(got, want):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=1e-4, atol=1e-4)


def test_exact_grad_equals_pyadr_backward():
    x, w, b = _data()
    y, ctx = pyadr.conv2d_forward(x, w, b, padding=1)
    g = RNG.standard_normal(y.shape).astype(np.float32)
    dx, dw, db = pyadr.conv2d_backward(g, ctx)
    got = jax.jit(jax.grad(_loss(lambda x, w, b: pj.conv2d(x, w, b, padding=1), g), argnums=(0, 1, 2)))(x, w, b)
    for a, e in zip(got, (dx, dw, db)):
        np.testing.assert_allclose(np.asarray(a), e, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("reuse", [pyadr.ReuseConfig(L=9, H=6, seed=3),
                                   pyadr.ReuseConfig(L=12, H=8, hash="l2", scope="input"),
                                   pyadr.ReuseConfig(L=6, H=5, exact="dx")])
def test_reuse_conv2d_jit_and_grad_equal_pyadr(reuse):
    """The backward recomputes the reuse context: same clusters, so pyadr's eager gradients."""
    x, w, b = _data((4, 4, 10, 10))
    y_ref, ctx = pyadr.conv2d_forward(x, w, b, stride=1, padding=1, reuse=reuse)
    assert ctx.stats.rc < 1.0                       # the clustering really merged rows
    g = RNG.standard_normal(y_ref.shape).astype(np.float32)
    want = pyadr.conv2d_backward(g, ctx)
    f = lambda x, w, b: pj.conv2d(x, w, b, padding=1, reuse=reuse)  # noqa: E731
    np.testing.assert_allclose(np.asarray(jax.jit(f)(x, w, b)), y_ref, rtol=1e-6, atol=1e-6)
    got = jax.jit(jax.grad(_loss(f, g), argnums=(0, 1, 2)))(x, w, b)
    for a, e in zip(got, want):
        np.testing.assert_allclose(np.asarray(a), e, rtol=1e-5, atol=1e-5)


def test_linear_exact_and_reuse():
    x = RNG.standard_normal((16, 12)).astype(np.float32)
    w = RNG.standard_normal((7, 12)).astype(np.float32)
    b = RNG.standard_normal(7).astype(np.float32)
    g = RNG.standard_normal((16, 7)).astype(np.float32)
    ref = lambda x, w, b: jnp.dot(x, w.T, precision=jax.lax.Precision.HIGHEST) + b  # noqa: E731
    ours = jax.jit(pj.linear)
    np.testing.assert_allclose(np.asarray(ours(x, w, b)), np.asarray(ref(x, w, b)), rtol=1e-5, atol=1e-5)
    for a, e in zip(jax.grad(_loss(ours, g), argnums=(0, 1, 2))(x, w, b),
                    jax.grad(_loss(ref, g), argnums=(0, 1, 2))(x, w, b)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=1e-5, atol=1e-5)
    reuse = pyadr.ReuseConfig(L=4, H=3)
    y_ref, ctx = pyadr.linear_forward(x, w, None, reuse=reuse)
    f = jax.jit(lambda x, w: pj.linear(x, w, reuse=reuse))
    np.testing.assert_allclose(np.asarray(f(x, w)), y_ref, rtol=1e-6, atol=1e-6)
    dx, dw, _ = pyadr.linear_backward(g, ctx)
    got = jax.grad(_loss(f, g), argnums=(0, 1))(x, w)
    np.testing.assert_allclose(np.asarray(got[0]), dx, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(got[1]), dw, rtol=1e-5, atol=1e-5)


def test_a_jitted_training_step_lowers_the_loss():
    x, w, b = _data((8, 4, 8, 8), (6, 4, 3, 3))
    w2 = (RNG.standard_normal((3, 6 * 8 * 8)) / 20).astype(np.float32)
    labels = jnp.asarray(RNG.integers(0, 3, 8))
    reuse = pyadr.ReuseConfig(L=9, H=8)

    def loss(params, x):
        w, b, w2 = params
        h = jax.nn.relu(pj.conv2d(x, w, b, padding=1, reuse=reuse)).reshape(x.shape[0], -1)
        logits = pj.linear(h, w2)
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(8), labels])

    @jax.jit
    def step(params, x):
        value, grads = jax.value_and_grad(loss)(params, x)
        return value, tuple(p - 0.1 * g for p, g in zip(params, grads))

    params = (jnp.asarray(w), jnp.asarray(b), jnp.asarray(w2))
    first, params = step(params, x)
    for _ in range(4):
        last, params = step(params, x)
    assert float(last) < float(first)


def test_independent_calls_in_one_jit():
    """XLA may run the two callbacks at once: they take turns and each gets its own result."""
    x, w, b = _data()
    reuse = pyadr.ReuseConfig(L=9, H=5)
    both = jax.jit(lambda x1, x2: (pj.conv2d(x1, w, b, reuse=reuse), pj.conv2d(x2, w, b, padding=1)))
    y1, y2 = both(x, 2 * x)
    np.testing.assert_allclose(np.asarray(y1), pyadr.conv2d_forward(x, w, b, reuse=reuse)[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(y2), pyadr.conv2d_forward(2 * x, w, b, padding=1)[0], rtol=1e-6, atol=1e-6)


def test_vmap_maps_one_pyadr_call_per_element():
    xs = RNG.standard_normal((3, 2, 4, 7, 7)).astype(np.float32)
    _, w, b = _data()
    for reuse in (None, pyadr.ReuseConfig(L=9, H=5)):
        f = lambda x: pj.conv2d(x, w, b, padding=1, reuse=reuse)  # noqa: E731
        got = jax.jit(jax.vmap(f))(xs)
        want = np.stack([pyadr.conv2d_forward(x, w, b, padding=1, reuse=reuse)[0] for x in xs])
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-6)
        # per-element gradients (vmap of grad) match one grad per element
        gw = jax.vmap(jax.grad(lambda x, w: jnp.sum(pj.conv2d(x, w, b, padding=1, reuse=reuse) ** 2),
                               argnums=1), in_axes=(0, None))(xs, w)
        for i, x in enumerate(xs):
            y, ctx = pyadr.conv2d_forward(x, w, b, padding=1, reuse=reuse)
            np.testing.assert_allclose(np.asarray(gw[i]), pyadr.conv2d_backward(2 * y, ctx)[1],
                                       rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_is_computed_in_float32_and_returned_in_its_dtype(dtype):
    x, w, b = _data()
    xh, wh, bh = (jnp.asarray(a).astype(dtype) for a in (x, w, b))
    y = jax.jit(pj.conv2d)(xh, wh, bh)
    assert y.dtype == jnp.dtype(dtype)
    ref = pyadr.conv2d_forward(*(np.asarray(a.astype(jnp.float32)) for a in (xh, wh, bh)))[0]
    np.testing.assert_allclose(np.asarray(y.astype(jnp.float32)), ref, rtol=2e-2, atol=5e-2)
    gx = jax.grad(lambda x: jnp.sum(pj.conv2d(x, wh, bh).astype(jnp.float32)))(xh)
    assert gx.dtype == jnp.dtype(dtype) and gx.shape == x.shape


def test_float64_with_x64_enabled():
    enable_x64 = jax.enable_x64 if hasattr(jax, "enable_x64") else jax.experimental.enable_x64
    with enable_x64(True):
        x, w, b = _data(dtype=np.float64)
        y = jax.jit(pj.conv2d)(jnp.asarray(x), jnp.asarray(w), jnp.asarray(b))
        assert y.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(y), pyadr.conv2d_forward(x, w, b)[0], rtol=1e-12, atol=1e-12)
        gx = jax.grad(lambda x: jnp.sum(pj.conv2d(x, w, b)))(jnp.asarray(x))
        assert gx.dtype == jnp.float64


def test_bad_input_raises_clear_errors_when_traced():
    x, w, b = _data()
    with pytest.raises(TypeError, match="x must be a float32, float64, float16 or bfloat16"):
        pj.conv2d(jnp.asarray(x).astype(jnp.int32), w)
    with pytest.raises(TypeError, match="w must have the dtype of x"):
        pj.conv2d(x, jnp.asarray(w).astype(jnp.float16))
    with pytest.raises(ValueError, match="x must be 4-D"):
        jax.jit(pj.conv2d)(x[0], w)
    with pytest.raises(ValueError, match="to match x's 4 channels"):
        jax.jit(pj.conv2d)(x, w[:, :3])
    with pytest.raises(ValueError, match=r"b must have shape \(5,\)"):
        pj.conv2d(x, w, b[:4])
    with pytest.raises(ValueError, match="L must be <= K = 36"):
        pj.conv2d(x, w, reuse=pyadr.ReuseConfig(L=40, H=4))
    with pytest.raises(TypeError, match="reuse must be a pyadr.ReuseConfig or None"):
        pj.conv2d(x, w, reuse={"L": 9})
    with pytest.raises(TypeError, match="stride must be an int or a pair"):
        pj.conv2d(x, w, stride=1.5)
    with pytest.raises(ValueError, match="w must have shape \\(out_features, 12\\)"):
        pj.linear(np.ones((2, 12), np.float32), np.ones((3, 11), np.float32))


def test_forward_mode_is_refused_by_jax():
    x, w, _ = _data()
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(lambda x: pj.conv2d(x, w), (x,), (x,))
