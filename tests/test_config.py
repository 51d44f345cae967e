"""ReuseConfig, what a context exposes, show_config, threads, import cost, GIL release."""
import io
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import pyadr
from pyadr import reference as ref

from _util import DTYPES, assert_close, compare_state, exact_cfg, int_data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_import_is_light():
    code = ("import pyadr, sys; "
            "bad = [m for m in ('cupy', 'scipy') if m in sys.modules]; "
            "assert not bad, bad")
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)


def test_show_config_keys():
    buf = io.StringIO()
    cfg = pyadr.show_config(file=buf)
    assert set(cfg) >= {"version", "gemm", "blas", "openmp", "threads", "OMP_NUM_THREADS", "simd", "gpu"}
    assert cfg["version"] == pyadr.__version__
    assert cfg["gemm"] in ("builtin", "blas")
    assert isinstance(cfg["openmp"], bool)
    assert cfg["threads"] == pyadr.get_num_threads()
    text = buf.getvalue()
    assert "pyadr configuration" in text
    for k in cfg:
        assert k in text


def test_block_cache_recycles_and_empties(rng):
    # A reuse call frees blocks of >= 256 KiB; they wait in the cache (default cap 256 MB) until
    # empty_cache(), and a call served from recycled blocks computes the same result.
    if os.environ.get("PYADR_CACHE_MB") == "0":
        pytest.skip("cache turned off by PYADR_CACHE_MB=0")
    x = rng.standard_normal((16, 32, 32, 32)).astype(np.float32)    # padded copy: 2.4 MB
    w = rng.standard_normal((32, 32, 3, 3)).astype(np.float32)
    cfg = pyadr.ReuseConfig(L=32, H=10, seed=1)
    pyadr.empty_cache()
    y1, ctx1 = pyadr.conv2d_forward(x, w, None, padding=1, reuse=cfg)
    dx1, dw1, _ = pyadr.conv2d_backward(np.ones_like(y1), ctx1)
    assert "block cache" in pyadr.show_config(file=io.StringIO())
    held = pyadr.empty_cache()
    assert held > 0
    assert pyadr.empty_cache() == 0
    y2, ctx2 = pyadr.conv2d_forward(x, w, None, padding=1, reuse=cfg)   # fresh blocks
    y3, ctx3 = pyadr.conv2d_forward(x, w, None, padding=1, reuse=cfg)   # recycled blocks
    dx3, dw3, _ = pyadr.conv2d_backward(np.ones_like(y3), ctx3)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(y1, y3)
    np.testing.assert_array_equal(dx1, dx3)
    np.testing.assert_array_equal(dw1, dw3)


def test_num_threads_roundtrip(restore_threads):
    pyadr.set_num_threads(1)
    assert pyadr.get_num_threads() == 1
    if pyadr.show_config(file=io.StringIO())["openmp"]:
        pyadr.set_num_threads(2)
        assert pyadr.get_num_threads() == 2
        assert pyadr.show_config(file=io.StringIO())["threads"] == 2


def test_reuse_config_defaults_and_equality():
    cfg = pyadr.ReuseConfig()
    assert (cfg.L, cfg.H, cfg.scope, cfg.order, cfg.hash, cfg.seed) == (25, 10, "batch", "hwc", "sign", 0)
    assert cfg == pyadr.ReuseConfig()
    assert cfg != pyadr.ReuseConfig(seed=1)
    assert hash(cfg) == hash(pyadr.ReuseConfig())
    assert cfg.replace(L=5).L == 5 and cfg.L == 25
    r = repr(pyadr.ReuseConfig(L=4, H=3, hash="l2"))
    assert "L=4" in r and "H=3" in r and "l2" in r
    d = pyadr.ReuseConfig(planes=np.ones((2, 3))).to_dict()
    assert d["planes"] == [[1.0] * 3] * 2 and d["L"] == 2 and d["H"] == 3


def test_reuse_config_planes():
    a = pyadr.ReuseConfig(L=6, H=5, seed=3).resolved_planes()
    assert a.shape == (6, 5) and a.dtype == np.float64
    np.testing.assert_array_equal(a, pyadr.ReuseConfig(L=6, H=5, seed=3).resolved_planes())
    assert not np.array_equal(a, pyadr.ReuseConfig(L=6, H=5, seed=4).resolved_planes())
    given = np.arange(12.0).reshape(4, 3)
    cfg = pyadr.ReuseConfig(planes=given, L=99, H=99)         # L, H come from the planes
    assert (cfg.L, cfg.H) == (4, 3)
    given[0, 0] = 100.0                                       # the config keeps its own copy
    assert cfg.planes[0, 0] == 0.0
    with pytest.raises(ValueError):
        cfg.planes[0, 0] = 1.0                                # read-only


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hash_", ["sign", "l2"])
def test_ctx_exposes_parameters(rng, hash_, dtype):
    x = rng.standard_normal((2, 3, 5, 5)).astype(dtype)
    w = rng.standard_normal((2, 3, 3, 3)).astype(dtype)
    cfg = pyadr.ReuseConfig(L=7, H=9, hash=hash_, seed=8)
    _, ctx = pyadr.conv2d_forward(x, w, reuse=cfg)
    assert ctx.reuse is cfg
    assert ctx.planes.shape == (7, 9) and ctx.planes.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(ctx.planes, cfg.resolved_planes().astype(dtype))
    if hash_ == "l2":
        planes, offsets, width = cfg.resolve(27, x=x)
        assert ctx.width == width
        np.testing.assert_array_equal(ctx.offsets, offsets.astype(dtype))
    else:
        assert ctx.offsets is None and ctx.width is None
    assert "rc=" in repr(ctx)


@pytest.mark.parametrize("order", ["hwc", "chw"])
@pytest.mark.parametrize("scope", ["batch", "input"])
@pytest.mark.parametrize("hash_", ["sign", "l2"])
def test_ctx_parameters_reproduce_result(rng, order, scope, hash_):
    """A config rebuilt from ctx.planes / ctx.offsets / ctx.width reproduces the clustering and the
    output through the reference."""
    x = int_data(rng, (2, 4, 6, 6), np.float32, -1, 1)
    w = rng.standard_normal((3, 4, 3, 3)).astype(np.float32)
    cfg = exact_cfg(rng, 8, 12, hash=hash_, order=order, scope=scope)
    y, ctx = pyadr.conv2d_forward(x, w, padding=1, reuse=cfg)
    kw = dict(planes=ctx.planes, order=order, scope=scope, hash=hash_)
    if hash_ == "l2":
        kw.update(width=ctx.width, offsets=ctx.offsets)
    rebuilt = pyadr.ReuseConfig(**kw)
    yr, rctx = ref.conv2d_forward(x, w, None, 1, 1, 1, reuse=rebuilt)
    compare_state(ctx, rctx, np.float32)
    assert_close(y, yr, np.float32)


def test_auto_width_config_reproduced_with_explicit_width(rng):
    """hash='l2', width=None: passing back ctx.width and ctx.offsets gives the same call."""
    x = int_data(rng, (2, 4, 6, 6), np.float64, -2, 2)
    w = rng.standard_normal((3, 4, 3, 3))
    cfg = pyadr.ReuseConfig(L=4, H=6, hash="l2", seed=2)
    y, ctx = pyadr.conv2d_forward(x, w, padding=1, reuse=cfg)
    again = pyadr.ReuseConfig(L=4, H=6, hash="l2", seed=2, width=ctx.width, offsets=ctx.offsets)
    y2, ctx2 = pyadr.conv2d_forward(x, w, padding=1, reuse=again)
    np.testing.assert_array_equal(ctx.cluster_ids(), ctx2.cluster_ids())
    np.testing.assert_array_equal(y, y2)


def test_ctx_nbytes(rng):
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    _, ctx = pyadr.conv2d_forward(x, w)
    assert ctx.nbytes == x.nbytes + w.nbytes
    _, ctx = pyadr.conv2d_forward(x, w, reuse=pyadr.ReuseConfig(L=9, H=4))
    N, K = ctx.stats.rows, 27
    ids_bytes = ctx.stats.blocks * N * 4
    assert ctx.nbytes >= ids_bytes + K * 4 * 4       # ids + reordered weights at least
    assert ctx.stats.nbytes == ctx.nbytes
    assert ctx.nbytes < N * K * 4 + ids_bytes + 4096  # never the im2col matrix on top of the ids


def test_threads_release_gil_and_stay_correct(rng):
    """Concurrent calls from Python threads give the same results as sequential ones."""
    x = int_data(rng, (4, 8, 16, 16), np.float32, -1, 1)
    w = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
    cfgs = [None, exact_cfg(rng, 8, 16), exact_cfg(rng, 6, 20, hash="l2", order="chw")]
    expected = [pyadr.conv2d_forward(x, w, padding=1, reuse=c)[0] for c in cfgs]
    results, errors = {}, []

    def work(i):
        try:
            for _ in range(5):
                y, ctx = pyadr.conv2d_forward(x, w, padding=1, reuse=cfgs[i % 3])
                pyadr.conv2d_backward(y, ctx)
            results[i] = y
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i in range(6):
        np.testing.assert_array_equal(results[i], expected[i % 3])
