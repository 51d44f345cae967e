"""pyadr.gpu against pyadr.reference, on two backends:

  "cuda"      real CuPy on a CUDA device (skipped cleanly without CuPy or a device);
  "emulated"  the very same .cu kernel sources compiled for the host with g++ (a grid of one
              thread: every kernel is a grid-stride loop, so one thread runs all its work items in
              order), called through pyadr.gpu._kernels.launch (argument checks included) with a
              NumPy-backed stand-in for CuPy. It tests the kernels' index arithmetic and the whole
              orchestration in pyadr/gpu/conv.py where no GPU exists; skipped without g++.

Data are exactly representable (small integers, half-integer planes, power-of-two l2 widths), so
partitions must match the reference exactly (up to relabelling) and values to rounding.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest

import pyadr
from pyadr import reference as ref
from pyadr.gpu import _kernels

# ------------------------------------------------------------------------------------------------
# Host emulation of the kernels and of the few CuPy functions pyadr.gpu uses
# ------------------------------------------------------------------------------------------------

_PRELUDE = r"""
#include <math.h>
struct PyadrDim { long long x; };
static const PyadrDim blockIdx{0}, threadIdx{0}, blockDim{1}, gridDim{1};
#define __global__
#define __device__
#define __forceinline__ inline
static inline int atomicOr(int* p, int v) { int o = *p; *p |= v; return o; }
static inline int atomicAdd(int* p, int v) { int o = *p; *p += v; return o; }
"""
_CTYPE = {"i64*": "long long*", "i32*": "int*", "u64*": "unsigned long long*", "i64": "long long", "i32": "int"}


def _wrapper_name(name, targ):
    return f"emu_{name}_{targ.replace(' ', '_')}"


def _build_emulator(tmpdir):
    src = [_PRELUDE] + [f'#include "{os.path.join(_kernels.KERNEL_DIR, f)}"' for f in _kernels.kernel_files()]
    for name, (file, tname, params) in _kernels.KERNELS.items():
        for targ in _kernels.FILE_TARGS[file]:
            ctys = [targ + "*" if p == tname + "*" else targ if p == tname else _CTYPE[p] for p in params]
            decl = ", ".join(f"{t} a{i}" for i, t in enumerate(ctys))
            call = ", ".join(f"a{i}" for i in range(len(ctys)))
            src.append(f'extern "C" void {_wrapper_name(name, targ)}({decl}) {{ {name}<{targ}>({call}); }}')
    cpp = os.path.join(tmpdir, "emu.cpp")
    lib = os.path.join(tmpdir, "emu.so")
    with open(cpp, "w") as f:
        f.write("\n".join(src) + "\n")
    subprocess.run(["g++", "-std=c++17", "-O1", "-shared", "-fPIC", "-o", lib, cpp], check=True,
                   capture_output=True, text=True)
    return ctypes.CDLL(lib)


class _FakeArray(np.ndarray):
    class _Dev:
        id = 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    @property
    def device(self):
        return self._Dev()

    def get(self):
        return np.array(self)


def _fake_cupy():
    m = types.ModuleType("cupy")
    m.__version__ = "emulated"
    m.ndarray = _FakeArray
    wrap = lambda f: (lambda *a, **k: np.asarray(f(*a, **k)).view(_FakeArray))  # noqa: E731
    for name in ("empty", "zeros", "arange", "empty_like", "zeros_like", "ascontiguousarray", "asarray",
                 "concatenate", "diff", "cumsum"):
        setattr(m, name, wrap(getattr(np, name)))
    m.argsort = wrap(lambda a, axis=-1: np.argsort(a, axis=axis, kind="stable"))
    m.matmul = lambda a, b, out=None: np.matmul(a, b, out=out).view(_FakeArray)
    m.asnumpy = lambda a: np.array(a)
    m.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDevice=lambda: 0, getDeviceCount=lambda: 1))
    return m


def _ctype_arg(a):
    if isinstance(a, np.ndarray):
        return ctypes.c_void_p(a.ctypes.data)
    return {np.int64: ctypes.c_longlong, np.int32: ctypes.c_int, np.float32: ctypes.c_float,
            np.float64: ctypes.c_double}[type(a)](a.item())


@pytest.fixture(scope="session")
def _emulator_lib(tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip("g++ not found: cannot build the host emulation of the kernels")
    return _build_emulator(str(tmp_path_factory.mktemp("gpu_emu")))


class Backend:
    def __init__(self, xp, to_host):
        self.xp, self.to_host = xp, to_host

    def asarray(self, a):
        return self.xp.asarray(a)


@pytest.fixture(params=["cuda", "emulated"])
def backend(request, monkeypatch):
    if request.param == "cuda":
        cp = pytest.importorskip("cupy")
        if not pyadr.gpu.is_available():
            pytest.skip(f"no CUDA device: {pyadr.gpu.why_unavailable()}")
        return Backend(cp, cp.asnumpy)
    lib = request.getfixturevalue("_emulator_lib")
    fake = _fake_cupy()
    monkeypatch.setitem(sys.modules, "cupy", fake)
    launched = []

    def get_kernel(name, targ):
        fn = getattr(lib, _wrapper_name(name, targ))

        def run(grid, block, args):
            launched.append(name)
            fn(*[_ctype_arg(a) for a in args])
        return run

    monkeypatch.setattr(_kernels, "get_kernel", get_kernel)
    be = Backend(fake, np.asarray)
    be.launched = launched
    return be


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------

def _int_data(rng, shape, dtype, lo=-2, hi=3):
    return rng.integers(lo, hi, size=shape).astype(dtype)


def _same_partition(a, b):
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    assert a.shape == b.shape
    pairs = set(zip(a.tolist(), b.tolist()))
    assert len(pairs) == len(set(a.tolist())) == len(set(b.tolist())), "partitions differ"


def _tol(dtype):
    return dict(rtol=1e-5, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-10)


def _cfg(K, L, H, hash, scope, order, seed=0):
    rng = np.random.default_rng(seed + 100)
    planes = rng.integers(-3, 4, size=(L, H)) / 2.0       # half-integers: exact projections
    if hash == "l2":
        offsets = rng.integers(0, 4, size=H) / 2.0
        return pyadr.ReuseConfig(planes=planes, hash="l2", width=2.0, offsets=offsets, scope=scope, order=order)
    return pyadr.ReuseConfig(planes=planes, hash="sign", scope=scope, order=order)


def _check_conv(be, dtype, shape, wshape, stride, padding, dilation, cfg, bias=True, seed=0):
    rng = np.random.default_rng(seed)
    x, w = _int_data(rng, shape, dtype), _int_data(rng, wshape, dtype)
    b = _int_data(rng, (wshape[0],), dtype) if bias else None
    y_ref, ctx_ref = ref.conv2d_forward(x, w, b, stride, padding, dilation, reuse=cfg)
    dy = _int_data(rng, y_ref.shape, dtype)
    dx_ref, dw_ref, db_ref = ref.conv2d_backward(dy, ctx_ref)
    xd, wd = be.asarray(x), be.asarray(w)
    bd = None if b is None else be.asarray(b)
    y, ctx = pyadr.gpu.conv2d_forward(xd, wd, bd, stride, padding, dilation, reuse=cfg)
    assert isinstance(y, be.xp.ndarray) and y.dtype == dtype and y.shape == y_ref.shape
    np.testing.assert_allclose(be.to_host(y), y_ref, **_tol(dtype))
    dx, dw, db = pyadr.gpu.conv2d_backward(be.asarray(dy), ctx)
    np.testing.assert_allclose(be.to_host(dx), dx_ref, **_tol(dtype))
    np.testing.assert_allclose(be.to_host(dw), dw_ref, **_tol(dtype))
    if bias:
        np.testing.assert_allclose(be.to_host(db), db_ref, **_tol(dtype))
    else:
        assert db is None
    if cfg is not None:
        st = ctx_ref["state"]
        ids = be.to_host(ctx.cluster_ids())
        assert ids.shape == (len(st["ids"]), y_ref.shape[0] * y_ref.shape[2] * y_ref.shape[3])
        for j in range(len(st["ids"])):
            _same_partition(ids[j], st["ids"][j])
            assert sorted(be.to_host(ctx.cluster_counts(j)).tolist()) == sorted(st["counts"][j].tolist())
            cent = be.to_host(ctx.centroids(j))
            assert cent.shape == st["centroids"][j].shape
            assert ctx.stats.clusters[j] == len(st["counts"][j])
        assert ctx.stats.rc == pytest.approx(ctx_ref["rc"])
        np.testing.assert_array_equal(ctx.planes, np.asarray(cfg.planes, dtype=dtype))
    return ctx


# ------------------------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------------------------

GEOMS = [  # x shape, w shape, stride, padding, dilation
    ((2, 3, 6, 5), (4, 3, 3, 3), 1, 1, 1),
    ((2, 4, 7, 7), (3, 4, 3, 2), (2, 1), (0, 1), 1),
    ((1, 2, 8, 8), (2, 2, 3, 3), 1, 2, 2),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geom", GEOMS)
def test_exact_matches_reference(backend, dtype, geom):
    _check_conv(backend, dtype, *geom, cfg=None)


@pytest.mark.parametrize("hash", ["sign", "l2"])
@pytest.mark.parametrize("scope", ["batch", "input"])
@pytest.mark.parametrize("order", ["hwc", "chw"])
@pytest.mark.parametrize("L,H", [(4, 3), (5, 12), (27, 40), (1, 64)])
def test_reuse_matches_reference(backend, hash, scope, order, L, H):
    shape, wshape, s, p, d = GEOMS[0]
    K = wshape[1] * wshape[2] * wshape[3]
    _check_conv(backend, np.float64, shape, wshape, s, p, d, _cfg(K, L, H, hash, scope, order))


@pytest.mark.parametrize("geom", GEOMS[1:])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reuse_geometries(backend, geom, dtype):
    K = geom[1][1] * geom[1][2] * geom[1][3]
    _check_conv(backend, dtype, *geom, cfg=_cfg(K, 5, 6, "sign", "batch", "hwc"), bias=False)


def test_block_groups_give_identical_results(backend, monkeypatch):
    from pyadr.gpu import conv
    shape, wshape, s, p, d = GEOMS[0]
    cfg = _cfg(27, 4, 5, "l2", "input", "hwc")
    rng = np.random.default_rng(3)
    x, w = backend.asarray(_int_data(rng, shape, np.float64)), backend.asarray(_int_data(rng, wshape, np.float64))
    y1, c1 = pyadr.gpu.conv2d_forward(x, w, None, s, p, d, reuse=cfg)
    monkeypatch.setattr(conv, "WORKSPACE_BYTES", 1)         # one block per group, several syncs
    y2, c2 = pyadr.gpu.conv2d_forward(x, w, None, s, p, d, reuse=cfg)
    assert len(c2._gpu.groups) == c2.stats.blocks > len(c1._gpu.groups)
    np.testing.assert_array_equal(backend.to_host(y1), backend.to_host(y2))
    np.testing.assert_array_equal(backend.to_host(c1.cluster_ids()), backend.to_host(c2.cluster_ids()))
    dy = backend.asarray(_int_data(rng, y1.shape, np.float64))
    for a, b in zip(pyadr.gpu.conv2d_backward(dy, c1)[:2], pyadr.gpu.conv2d_backward(dy, c2)[:2]):
        np.testing.assert_allclose(backend.to_host(a), backend.to_host(b), rtol=1e-12)


def test_dense_and_sorted_grouping_agree(backend, monkeypatch):
    from pyadr.gpu import conv
    shape, wshape, s, p, d = GEOMS[0]
    cfg = _cfg(27, 6, 4, "sign", "input", "chw")
    x = backend.asarray(_int_data(np.random.default_rng(4), shape, np.float32))
    w = backend.asarray(_int_data(np.random.default_rng(5), wshape, np.float32))
    y1, c1 = pyadr.gpu.conv2d_forward(x, w, None, s, p, d, reuse=cfg)
    monkeypatch.setattr(conv, "DENSE_MAX_H", 0)
    y2, c2 = pyadr.gpu.conv2d_forward(x, w, None, s, p, d, reuse=cfg)
    np.testing.assert_array_equal(backend.to_host(c1.cluster_ids()), backend.to_host(c2.cluster_ids()))
    np.testing.assert_array_equal(backend.to_host(y1), backend.to_host(y2))


def test_deterministic(backend):
    shape, wshape, s, p, d = GEOMS[0]
    rng = np.random.default_rng(6)
    x = backend.asarray(rng.standard_normal(shape).astype(np.float32))
    w = backend.asarray(rng.standard_normal(wshape).astype(np.float32))
    cfg = pyadr.ReuseConfig(L=9, H=8, seed=1)
    outs = [pyadr.gpu.conv2d_forward(x, w, None, s, p, d, reuse=cfg) for _ in range(2)]
    np.testing.assert_array_equal(backend.to_host(outs[0][0]), backend.to_host(outs[1][0]))
    dy = backend.asarray(rng.standard_normal(outs[0][0].shape).astype(np.float32))
    g = [pyadr.gpu.conv2d_backward(dy, c) for _, c in outs]
    for a, b in zip(g[0][:2], g[1][:2]):
        np.testing.assert_array_equal(backend.to_host(a), backend.to_host(b))


def test_rc_one_is_exact(backend):
    # Distinct rows everywhere (every row its own cluster) => the reuse result is the exact one.
    x = np.arange(2 * 1 * 4 * 4, dtype=np.float64).reshape(2, 1, 4, 4) + 1
    w = np.random.default_rng(7).standard_normal((3, 1, 2, 2))
    cfg = pyadr.ReuseConfig(planes=np.ones((4, 1)) * 0.5, hash="l2", width=0.25, offsets=[0.0])
    y, ctx = pyadr.gpu.conv2d_forward(backend.asarray(x), backend.asarray(w), None, reuse=cfg)
    assert ctx.stats.rc == 1.0
    np.testing.assert_allclose(backend.to_host(y), ref.naive_conv2d(x, w), rtol=1e-12)


@pytest.mark.parametrize("reuse", [False, True])
def test_linear(backend, reuse):
    rng = np.random.default_rng(8)
    x, w, b = _int_data(rng, (6, 10), np.float64), _int_data(rng, (4, 10), np.float64), _int_data(rng, (4,), np.float64)
    cfg = _cfg(10, 4, 3, "sign", "batch", "hwc") if reuse else None
    y_ref, c_ref = ref.linear_forward(x, w, b, reuse=cfg)
    y, ctx = pyadr.gpu.linear_forward(backend.asarray(x), backend.asarray(w), backend.asarray(b), reuse=cfg)
    np.testing.assert_allclose(backend.to_host(y), y_ref, rtol=1e-12)
    dy = _int_data(rng, y_ref.shape, np.float64)
    for a, r in zip(pyadr.gpu.linear_backward(backend.asarray(dy), ctx), ref.linear_backward(dy, c_ref)):
        np.testing.assert_allclose(backend.to_host(a), r, rtol=1e-12, atol=1e-12)


def test_argument_errors(backend):
    x = backend.asarray(np.zeros((1, 2, 4, 4), np.float32))
    w = backend.asarray(np.zeros((3, 2, 3, 3), np.float32))
    with pytest.raises(TypeError):
        pyadr.gpu.conv2d_forward(np.zeros((1, 2, 4, 4), np.float32), w)
    with pytest.raises(TypeError):
        pyadr.gpu.conv2d_forward(x, backend.asarray(np.zeros((3, 2, 3, 3), np.float64)))
    with pytest.raises(ValueError):
        pyadr.gpu.conv2d_forward(x, backend.asarray(np.zeros((3, 5, 3, 3), np.float32)))
    with pytest.raises(ValueError):
        pyadr.gpu.conv2d_forward(x, w, reuse=pyadr.ReuseConfig(L=19, H=2))
    y, ctx = pyadr.gpu.conv2d_forward(x, w, padding=1)
    with pytest.raises(ValueError):
        pyadr.gpu.conv2d_backward(backend.asarray(np.zeros((1, 3, 2, 2), np.float32)), ctx)
    with pytest.raises(ValueError):
        ctx.cluster_ids()


@pytest.mark.parametrize("hash,H", [("sign", 3), ("sign", 30), ("l2", 5)])
@pytest.mark.parametrize("scope", ["batch", "input"])
def test_identical_rows(backend, hash, H, scope):
    # Every row identical: one cluster per block and scope group, and the exact convolution.
    B = 3
    x = np.ones((B, 2, 5, 5))
    w = np.random.default_rng(9).standard_normal((4, 2, 3, 3))
    cfg = _cfg(18, 4, H, hash, scope, "hwc")
    y, ctx = pyadr.gpu.conv2d_forward(backend.asarray(x), backend.asarray(w), None, reuse=cfg)
    per_block = B if scope == "input" else 1
    assert ctx.stats.clusters.tolist() == [per_block] * 5
    np.testing.assert_allclose(backend.to_host(y), ref.naive_conv2d(x, w), rtol=1e-12)
    ids = backend.to_host(ctx.cluster_ids())
    expect = np.repeat(np.arange(B), 9) if scope == "input" else np.zeros(B * 9, int)
    for j in range(5):
        _same_partition(ids[j], expect)
