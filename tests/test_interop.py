"""pyadr's public functions accept CPU DLPack producers and hand results back in their kind."""
import numpy as np
import pytest

import pyadr
from pyadr import _interop
from pyadr.reference import conv2d_forward as ref_forward  # noqa: F401  (reference exists)


class Producer:
    """A minimal third-party DLPack producer wrapping a NumPy array."""

    def __init__(self, a, device=(1, 0)):
        self._a = a
        self._device = device

    def __dlpack__(self, **kwargs):
        return self._a.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._device


def _data(dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 3, 7, 6)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    return x, w, b


def test_numpy_fast_path_unchanged():
    x, w, b = _data()
    y, ctx = pyadr.conv2d_forward(x, w, b, padding=1)
    assert isinstance(y, np.ndarray)
    dx, dw, db = pyadr.conv2d_backward(np.ones_like(y), ctx)
    assert all(isinstance(a, np.ndarray) for a in (dx, dw, db))


def test_generic_dlpack_producer_matches_numpy():
    x, w, b = _data(np.float64)
    y0, c0 = pyadr.conv2d_forward(x, w, b, padding=1)
    y1, c1 = pyadr.conv2d_forward(Producer(x), Producer(w), b=Producer(b), padding=1)
    assert isinstance(y1, np.ndarray)
    np.testing.assert_array_equal(y0, y1)
    g0 = pyadr.conv2d_backward(np.ones_like(y0), c0)
    g1 = pyadr.conv2d_backward(Producer(np.ones_like(y0)), c1)
    for a, b_ in zip(g0, g1):
        np.testing.assert_array_equal(a, b_)


def test_generic_producer_on_gpu_is_rejected():
    x, w, b = _data()
    with pytest.raises(TypeError, match="x .*CUDA.*CPU only"):
        pyadr.conv2d_forward(Producer(x, device=(2, 0)), w)


def test_generic_producer_dtype_is_checked():
    x, w, _ = _data()
    with pytest.raises(TypeError, match="x must be float32 or float64, got int32"):
        pyadr.conv2d_forward(Producer(x.astype(np.int32)), w)


def test_linear_with_producer():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 7)).astype(np.float32)
    w = rng.standard_normal((3, 7)).astype(np.float32)
    y, ctx = pyadr.linear_forward(Producer(x), w)
    np.testing.assert_allclose(y, x @ w.T, rtol=1e-5, atol=1e-5)
    dx, dw, db = pyadr.linear_backward(Producer(np.ones_like(y)), ctx)
    assert db is None
    np.testing.assert_allclose(dw, np.ones((5, 3), np.float32).T @ x, rtol=1e-5, atol=1e-5)


def test_other_objects_still_get_the_numpy_error():
    _, w, _ = _data()
    with pytest.raises(TypeError, match=r"x must be a numpy.ndarray .*got list"):
        pyadr.conv2d_forward([[1.0]], w)


def test_wrapper_keeps_name_doc_and_signature():
    import inspect
    assert pyadr.conv2d_forward.__name__ == "conv2d_forward"
    assert "reuse" in pyadr.conv2d_forward.__doc__
    assert list(inspect.signature(pyadr.conv2d_forward).parameters)[:3] == ["x", "w", "b"]


def test_from_numpy_passthrough():
    a = np.zeros(3)
    assert _interop.from_numpy(a, "numpy") is a
    assert _interop.from_numpy(None, "torch") is None


# ---- PyTorch ---------------------------------------------------------------------------------
def test_torch_in_torch_out():
    torch = pytest.importorskip("torch")
    x, w, b = _data(np.float64)
    tx, tw, tb = map(torch.from_numpy, (x, w, b))
    y, ctx = pyadr.conv2d_forward(tx, tw, tb, stride=2, padding=1)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float64
    ref = torch.nn.functional.conv2d(tx, tw, tb, stride=2, padding=1)
    torch.testing.assert_close(y, ref, rtol=1e-10, atol=1e-10)
    dy = torch.randn_like(y)
    dx, dw, db = pyadr.conv2d_backward(dy, ctx)
    assert all(isinstance(a, torch.Tensor) for a in (dx, dw, db))
    tx.requires_grad_(True), tw.requires_grad_(True), tb.requires_grad_(True)
    torch.nn.functional.conv2d(tx, tw, tb, stride=2, padding=1).backward(dy)
    torch.testing.assert_close(dx, tx.grad)
    torch.testing.assert_close(dw, tw.grad)
    torch.testing.assert_close(db, tb.grad)


def test_torch_zero_copy_input_and_requires_grad_ok():
    torch = pytest.importorskip("torch")
    t = torch.randn(3, 4, requires_grad=True)
    a, kind = _interop.to_numpy(t, "x")
    assert kind == "torch"
    assert a.__array_interface__["data"][0] == t.data_ptr()


def test_torch_mixed_with_numpy_and_reuse():
    torch = pytest.importorskip("torch")
    x, w, b = _data()
    cfg = pyadr.ReuseConfig(L=9, H=8, seed=3)
    y0, c0 = pyadr.conv2d_forward(x, w, b, padding=1, reuse=cfg)
    y1, c1 = pyadr.conv2d_forward(torch.from_numpy(x), w, b, padding=1, reuse=cfg)
    assert isinstance(y1, torch.Tensor)
    np.testing.assert_array_equal(y0, y1.numpy())
    assert c1.stats.rc == c0.stats.rc


def test_torch_errors():
    torch = pytest.importorskip("torch")
    x, w, b = _data()
    with pytest.raises(TypeError, match="x must be float32 or float64, got torch.float16"):
        pyadr.conv2d_forward(torch.from_numpy(x).half(), w)
    with pytest.raises(TypeError, match="w must be float32 or float64, got torch.int64"):
        pyadr.conv2d_forward(x, torch.ones(4, 3, 3, 3, dtype=torch.int64))
    if torch.cuda.is_available():
        with pytest.raises(TypeError, match="CPU only"):
            pyadr.conv2d_forward(torch.from_numpy(x).cuda(), w)


def test_mixing_two_foreign_kinds_is_an_error():
    torch = pytest.importorskip("torch")
    jnp = pytest.importorskip("jax.numpy")
    x, w, _ = _data()
    with pytest.raises(TypeError, match="earlier argument"):
        pyadr.conv2d_forward(torch.from_numpy(x), jnp.asarray(w))


def test_torch_meta_device_rejected():
    torch = pytest.importorskip("torch")
    x = torch.empty(2, 3, 7, 6, device="meta")
    with pytest.raises(TypeError, match="on meta.*CPU only"):
        pyadr.conv2d_forward(x, np.zeros((4, 3, 3, 3), np.float32))


# ---- JAX -------------------------------------------------------------------------------------
def test_jax_in_jax_out():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    x, w, b = _data()
    y0, _ = pyadr.conv2d_forward(x, w, b, padding=1)
    y, ctx = pyadr.conv2d_forward(jnp.asarray(x), jnp.asarray(w), jnp.asarray(b), padding=1)
    assert isinstance(y, jax.Array)
    np.testing.assert_array_equal(np.asarray(y), y0)
    dx, dw, db = pyadr.conv2d_backward(jnp.ones(y.shape, jnp.float32), ctx)
    assert isinstance(dx, jax.Array)
