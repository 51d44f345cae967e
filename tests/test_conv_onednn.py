"""oneDNN as the provider of the exact float32 convolution (native/src/conv_onednn.cpp,
pyadr/_onednn.py): results against the NumPy reference and the builtin kernels, the switch, the
environment variables and the errors. Tests that need the library skip cleanly without it
(`pip install onednn-cpu-gomp`); those about its absence run in a subprocess that cannot find it."""
import os
import subprocess
import sys

import numpy as np
import pytest

import pyadr
from pyadr import _onednn
from pyadr import reference as ref

from _util import assert_close, exact_cfg, int_data

# (B, C, H, W, M, kh, kw, stride, padding, dilation)
GEOMS = [
    (1, 1, 5, 5, 1, 3, 3, 1, 0, 1),                 # batch 1, one channel
    (2, 3, 7, 6, 4, 3, 3, 1, 1, 1),
    (3, 2, 8, 9, 5, 2, 3, 2, 0, 1),                 # non-square kernel, stride 2
    (2, 4, 9, 7, 3, 3, 2, (2, 1), (1, 2), 1),       # per-axis stride / padding
    (1, 3, 10, 10, 2, 3, 3, 1, 2, (2, 3)),          # per-axis dilation
    (2, 5, 6, 6, 6, 1, 1, 1, 0, 1),                 # 1x1 conv on an image
    (2, 2, 4, 4, 3, 4, 4, 1, 0, 1),                 # kernel = input: one output pixel
    (1, 2, 3, 5, 2, 5, 3, (3, 2), 1, (1, 2)),       # kernel taller than the unpadded input
    (3, 17, 11, 13, 19, 5, 5, 1, 2, 1),             # odd channel counts (oneDNN pads its blocks)
    (4, 32, 6, 6, 48, 3, 3, 1, 1, 1),               # whole 16-channel blocks
    (2, 16, 1, 1, 8, 3, 3, 1, 1, 1),                # 1x1 image, 3x3 kernel (VGG's last layers)
]


def _have_onednn():
    try:
        return _onednn.load()
    except Exception:  # noqa: BLE001 - no native module or no library: skipped either way
        return False


needs_onednn = pytest.mark.skipif(not _have_onednn(), reason="oneDNN unavailable (pip install onednn-cpu-gomp)")


@pytest.fixture
def provider():
    """Restores the provider setting (and the thread count) after a test that switches it."""
    from pyadr import _native as nat
    _onednn.ensure_configured()
    code, threads = nat.get_conv_provider(), pyadr.get_num_threads()
    yield nat
    nat.set_conv_provider(code)
    pyadr.set_num_threads(threads)


def _layer(rng, geom, bias=True, dtype=np.float32):
    B, C, H, W, M, kh, kw = geom[:7]
    x = rng.standard_normal((B, C, H, W)).astype(dtype)
    w = rng.standard_normal((M, C, kh, kw)).astype(dtype)
    b = rng.standard_normal(M).astype(dtype) if bias else None
    return x, w, b


def _run(name, x, w, b, s, p, d, dy=None, input_grad=True):
    pyadr.set_conv_provider(name)
    y, ctx = pyadr.conv2d_forward(x, w, b, stride=s, padding=p, dilation=d)
    if dy is None:
        dy = np.random.default_rng(5).standard_normal(y.shape).astype(x.dtype)
    return (y,) + tuple(pyadr.conv2d_backward(dy, ctx, input_grad=input_grad)), dy


@needs_onednn
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("geom", GEOMS)
def test_matches_reference_and_builtin(provider, rng, geom, bias):
    x, w, b = _layer(rng, geom, bias)
    s, p, d = geom[7:]
    got, dy = _run("onednn", x, w, b, s, p, d)
    assert "unimplemented" not in provider.onednn_info()[2]   # no silent fall-back to builtin
    builtin, _ = _run("builtin", x, w, b, s, p, d, dy)
    yr, rctx = ref.conv2d_forward(x.astype(np.float64), w.astype(np.float64),
                                  None if b is None else b.astype(np.float64), s, p, d)
    expected = (yr,) + ref.conv2d_backward(dy.astype(np.float64), rctx)
    for name, a, e, bi in zip(("y", "dx", "dw", "db"), got, expected, builtin):
        if e is None:
            assert a is None and bi is None
            continue
        assert a.dtype == np.float32 and a.shape == e.shape
        assert_close(a, e, np.float32, err_msg=name)
        assert_close(a, bi, np.float32, err_msg=name + " vs builtin")


@needs_onednn
def test_onednn_really_runs_and_is_reported(provider, rng):
    x, w, b = _layer(rng, (2, 6, 9, 9, 7, 3, 3))
    _run("onednn", x, w, b, 1, 1, 1)
    assert pyadr.get_conv_provider() == "onednn"
    loaded, library, kernels = provider.onednn_info()
    assert loaded and library.startswith("3.") and "libdnnl" in library
    for op in ("fwd", "bwd-data", "bwd-weights"):
        assert op in kernels, kernels
    line = _onednn.describe()
    assert line.startswith("onednn 3.") and "kernels:" in line
    cfg = pyadr.show_config(file=open(os.devnull, "w"))
    assert cfg["conv exact"] == _onednn.describe()


@needs_onednn
def test_exact_integer_data_is_bit_identical_to_builtin(provider, rng):
    """Small integers: every product and partial sum is exact in float32, whatever the order."""
    x, w, b = int_data(rng, (3, 20, 9, 9), np.float32), int_data(rng, (24, 20, 3, 3), np.float32), None
    got, dy = _run("onednn", x, w, b, 1, 1, 1, dy=int_data(rng, (3, 24, 9, 9), np.float32))
    builtin, _ = _run("builtin", x, w, b, 1, 1, 1, dy)
    for a, e in zip(got, builtin):
        if e is not None:
            np.testing.assert_array_equal(a, e)


@needs_onednn
@pytest.mark.parametrize("threads", [1, 2])
def test_thread_counts_and_determinism(provider, rng, threads):
    pyadr.set_num_threads(threads)
    x, w, b = _layer(rng, (4, 16, 12, 12, 24, 5, 5))
    first, dy = _run("onednn", x, w, b, 1, 2, 1)
    again, _ = _run("onednn", x, w, b, 1, 2, 1, dy)
    builtin, _ = _run("builtin", x, w, b, 1, 2, 1, dy)
    for a, a2, e in zip(first, again, builtin):
        np.testing.assert_array_equal(a, a2)          # same inputs, same threads: same bits
        assert_close(a, e, np.float32)


@needs_onednn
def test_weight_gradient_without_input_gradient(provider, rng):
    x, w, b = _layer(rng, (3, 5, 8, 8, 6, 3, 3))
    (y, dx, dw, db), dy = _run("onednn", x, w, b, 1, 1, 1, input_grad=False)
    (_, _, dw_b, db_b), _ = _run("builtin", x, w, b, 1, 1, 1, dy, input_grad=False)
    assert dx is None
    assert_close(dw, dw_b, np.float32)
    assert_close(db, db_b, np.float32)


@needs_onednn
def test_float64_and_linear_stay_builtin(provider, rng):
    """float64 never goes to oneDNN, nor do fully connected layers: bit-identical to builtin."""
    x, w, b = _layer(rng, (2, 3, 7, 7, 4, 3, 3), dtype=np.float64)
    got, dy = _run("onednn", x, w, b, 1, 1, 1)
    builtin, _ = _run("builtin", x, w, b, 1, 1, 1, dy)
    for a, e in zip(got, builtin):
        np.testing.assert_array_equal(a, e)
    xl, wl, bl = rng.standard_normal((5, 12)).astype(np.float32), rng.standard_normal((3, 12)).astype(np.float32), None
    outs = []
    for name in ("onednn", "builtin"):
        pyadr.set_conv_provider(name)
        y, ctx = pyadr.linear_forward(xl, wl, bl)
        outs.append((y,) + pyadr.linear_backward(np.ones_like(y), ctx)[:2])
    for a, e in zip(*outs):
        np.testing.assert_array_equal(a, e)


@needs_onednn
def test_auto_leaves_mostly_padding_layers_to_builtin(provider, rng):
    """Under "auto", a 3x3 pad-1 layer on 1x1 maps (one live tap of nine: VGG's conv7/8) runs the
    builtin kernels, bit for bit; "onednn" asked by name still runs oneDNN (agreeing to rounding);
    a 3x3 map (every tap live) stays on oneDNN under auto."""
    x, w, b = _layer(rng, (6, 64, 1, 1, 48, 3, 3))
    auto, dy = _run("auto", x, w, b, 1, 1, 1)
    builtin, _ = _run("builtin", x, w, b, 1, 1, 1, dy)
    forced, _ = _run("onednn", x, w, b, 1, 1, 1, dy)
    assert pyadr.get_conv_provider() == "onednn"
    for a, e, f in zip(auto, builtin, forced):
        np.testing.assert_array_equal(a, e)
        assert_close(f, e, np.float32)
    assert any(not np.array_equal(f, e) for f, e in zip(forced, builtin))  # oneDNN really ran there
    x3, w3, b3 = _layer(rng, (6, 64, 3, 3, 48, 3, 3))
    auto3, dy3 = _run("auto", x3, w3, b3, 1, 1, 1)
    forced3, _ = _run("onednn", x3, w3, b3, 1, 1, 1, dy3)
    for a, f in zip(auto3, forced3):
        np.testing.assert_array_equal(a, f)


@needs_onednn
def test_reuse_path_unaffected(provider, rng):
    """The clustered products never use the provider: bit-identical under either one."""
    x, w = int_data(rng, (2, 4, 8, 8), np.float32), rng.standard_normal((5, 4, 3, 3)).astype(np.float32)
    cfg = exact_cfg(rng, 6, 4)
    outs = []
    for name in ("onednn", "builtin"):
        pyadr.set_conv_provider(name)
        y, ctx = pyadr.conv2d_forward(x, w, None, padding=1, reuse=cfg)
        outs.append((y,) + pyadr.conv2d_backward(np.ones_like(y), ctx)[:2] + (ctx.stats.rc,))
    for a, e in zip(*outs):
        np.testing.assert_array_equal(a, e)


def test_bad_provider_names(provider):
    with pytest.raises(ValueError, match="auto.*builtin.*onednn"):
        pyadr.set_conv_provider("mkl")
    with pytest.raises(TypeError, match="str"):
        pyadr.set_conv_provider(2)


def test_native_switch_rejects_bad_codes(provider):
    with pytest.raises(ValueError, match="provider"):
        provider.set_conv_provider(7)


def test_library_candidates_honour_the_environment(monkeypatch):
    monkeypatch.setenv("PYADR_ONEDNN_LIBRARY", "/opt/x/libdnnl.so.3")
    assert _onednn.candidates() == ["/opt/x/libdnnl.so.3"]
    monkeypatch.delenv("PYADR_ONEDNN_LIBRARY")
    c = _onednn.candidates()
    assert c[-1] == "libdnnl.so.3" and os.path.join(sys.prefix, "lib", "libdnnl.so.3") in c


def _python(code, **env):
    full = dict(os.environ, **env)
    full.pop("PYTEST_CURRENT_TEST", None)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=120)


_CONV = ("import numpy as np, pyadr\n"
         "x = np.ones((1, 2, 5, 5), np.float32); w = np.ones((3, 2, 3, 3), np.float32)\n")


def test_unavailable_library(tmp_path):
    """Without the library: auto runs builtin, "onednn" is a RuntimeError naming the pip package."""
    missing = str(tmp_path / "libdnnl.so.3")
    r = _python(_CONV + "y, _ = pyadr.conv2d_forward(x, w)\nassert y[0, 0, 2, 2] == 18\n"
                "print(pyadr.get_conv_provider())\n"
                "try:\n    pyadr.set_conv_provider('onednn')\nexcept RuntimeError as e:\n    print('RE', e)\n"
                "print(pyadr.get_conv_provider())\n", PYADR_ONEDNN_LIBRARY=missing, PYADR_CONV_PROVIDER="auto")
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[0] == "builtin" and out[2] == "builtin"
    assert out[1].startswith("RE ") and "pip install onednn-cpu-gomp" in out[1] and "no such file" in out[1]
    r = _python(_CONV + "pyadr.conv2d_forward(x, w)\n", PYADR_ONEDNN_LIBRARY=missing, PYADR_CONV_PROVIDER="onednn")
    assert r.returncode != 0 and "RuntimeError" in r.stderr and "pip install onednn-cpu-gomp" in r.stderr


def test_a_file_that_is_not_onednn(tmp_path):
    bogus = tmp_path / "libdnnl.so.3"
    bogus.write_bytes(b"not a shared object")
    r = _python(_CONV + "pyadr.set_conv_provider('onednn')\n", PYADR_ONEDNN_LIBRARY=str(bogus))
    assert r.returncode != 0 and "RuntimeError" in r.stderr and "cannot load" in r.stderr


def test_environment_variable():
    r = _python(_CONV + "from pyadr import _native as nat\npyadr.conv2d_forward(x, w)\n"
                "print(pyadr.get_conv_provider(), nat.onednn_info()[0])\n", PYADR_CONV_PROVIDER="builtin")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["builtin", "False"]          # "builtin" does not even load oneDNN
    r = _python(_CONV + "pyadr.conv2d_forward(x, w)\n", PYADR_CONV_PROVIDER="fastest")
    assert r.returncode != 0 and "ValueError" in r.stderr and "PYADR_CONV_PROVIDER" in r.stderr


def test_import_does_not_load_onednn():
    r = _python("import sys, pyadr\nassert 'pyadr._native' not in sys.modules\n"
                "import pyadr._native as nat\nprint(nat.onednn_info()[0])\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


@needs_onednn
def test_environment_selects_onednn():
    r = _python(_CONV + "pyadr.conv2d_forward(x, w)\nprint(pyadr.get_conv_provider())\n", PYADR_CONV_PROVIDER="onednn")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "onednn"
