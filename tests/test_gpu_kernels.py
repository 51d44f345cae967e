"""Internals of pyadr.gpu, GPU-only: availability reporting, lazy CuPy import, the kernel files
shipped as package data, the loader's name expressions and signatures against the .cu sources,
the nvcc compile check, (when NVRTC can be loaded) an NVRTC compile with the loader's name
expressions -- the exact path cupy.RawModule takes -- and, on the `gpu_backend` fixture ("cuda",
"emulated"), that the orchestration's internal choices (block groups, dense or sorted grouping)
do not change results. The behaviour of the public API on the GPU is tested per backend in the
behaviour files (test_conv_exact.py, test_conv_reuse.py, ...)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import pyadr
from pyadr.gpu import _kernels

from _util import gpu_groups, int_data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_import_does_not_import_cupy():
    out = subprocess.run([sys.executable, "-c", "import sys, pyadr, pyadr.gpu, pyadr.gpu.conv, "
                          "pyadr.gpu._kernels, pyadr.gpu._context; print('cupy' in sys.modules)"],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def test_availability_is_explained():
    import pyadr.gpu as g
    reason = g.why_unavailable()
    assert g.is_available() == (reason == "")
    if not g.is_available():
        assert "CuPy" in reason
        with pytest.raises(RuntimeError, match="not available"):
            g.precompile()


def test_public_functions_exist():
    import pyadr.gpu as g
    for name in ("is_available", "why_unavailable", "precompile", "conv2d_forward", "conv2d_backward",
                 "linear_forward", "linear_backward"):
        assert callable(getattr(g, name))


def test_every_kernel_file_is_package_data():
    files = sorted(f for f in os.listdir(_kernels.KERNEL_DIR) if f.endswith(".cu"))
    assert files == _kernels.kernel_files()
    for f in ("im2col.cu", "lsh_hash.cu", "cluster.cu", "centroids.cu", "reuse_gemm.cu", "reuse_backward.cu",
              "col2im.cu"):
        assert f in files
        assert os.path.getsize(os.path.join(_kernels.KERNEL_DIR, f)) > 0
    # inside the (installed or source) package directory, so wheel.packages = ["pyadr"] ships them
    pkg = os.path.dirname(os.path.abspath(pyadr.__file__))
    assert os.path.commonpath([os.path.abspath(_kernels.KERNEL_DIR), pkg]) == pkg


_KERNEL_RE = re.compile(r"template\s*<\s*class\s+(\w+)\s*>\s*__global__\s+void\s+(\w+)\s*\(([^)]*)\)", re.S)
_TYPE = {"long long": "i64", "i64": "i64", "int": "i32", "u64": "u64", "unsigned long long": "u64"}


def _param_type(p, tname):
    p = re.sub(r"\b(const|__restrict__)\b", " ", p)
    ptr = "*" in p
    words = p.replace("*", " ").split()[:-1]       # drop the parameter name
    base = " ".join(words)
    base = tname if base == tname else _TYPE[base]
    return base + ("*" if ptr else "")


def _source_kernels():
    found = {}
    for f in _kernels.kernel_files():
        for tname, name, params in _KERNEL_RE.findall(_kernels.read_source(f)):
            found[name] = (f, tname, tuple(_param_type(p, tname) for p in params.split(",")))
    return found


def test_name_expressions_exist_in_source():
    src = _source_kernels()
    for f in _kernels.kernel_files():
        exprs = _kernels.name_expressions(f)
        assert exprs, f
        for e in exprs:
            name, targ = re.fullmatch(r"(\w+)<(.+)>", e).groups()
            assert name in src and src[name][0] == f, f"{e} not defined in {f}"
            assert targ in _kernels.TARG_DTYPE


def test_loader_signatures_match_source():
    src = _source_kernels()
    assert set(src) == set(_kernels.KERNELS), "every __global__ kernel is registered, and only those"
    for name, (f, tname, params) in _kernels.KERNELS.items():
        assert src[name] == (f, tname, params), name


def test_check_cuda_script():
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc not found")
    if os.environ.get("PYADR_SKIP_NVCC"):
        pytest.skip("PYADR_SKIP_NVCC set")
    r = subprocess.run(["bash", os.path.join(ROOT, "tools", "check_cuda.sh")], capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("check_cuda: ok") == len(_kernels.kernel_files())


def test_nvrtc_compiles_name_expressions():
    try:
        from cupy.cuda import nvrtc
        nvrtc.getVersion()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"NVRTC not loadable: {type(exc).__name__}")
    for f in _kernels.kernel_files():
        for targ in _kernels.FILE_TARGS[f]:
            exprs = _kernels.name_expressions(f, targ)
            prog = nvrtc.createProgram(_kernels.read_source(f), f, [], [])
            for e in exprs:
                nvrtc.addNameExpression(prog, e)
            nvrtc.compileProgram(prog, ["-std=c++17", "-arch=compute_75"])
            ptx = nvrtc.getPTX(prog)
            ptx = ptx.decode() if isinstance(ptx, bytes) else ptx
            for e in exprs:
                assert ".entry " + nvrtc.getLoweredName(prog, e) in ptx, e


# ------------------------------------------------------------------------------------------------
# Orchestration choices of pyadr/gpu/conv.py that must not change results
# ------------------------------------------------------------------------------------------------

def _cfg(rng, L, H, hash, scope, order):
    planes = rng.integers(-3, 4, size=(L, H)) / 2.0       # half-integers: exact projections
    if hash == "l2":
        offsets = rng.integers(0, 4, size=H) / 2.0
        return pyadr.ReuseConfig(planes=planes, hash="l2", width=2.0, offsets=offsets, scope=scope, order=order)
    return pyadr.ReuseConfig(planes=planes, hash="sign", scope=scope, order=order)


def test_block_groups_give_identical_results(gpu_backend, rng, monkeypatch):
    """A workspace of 1 byte (one sub-matrix per block group, several host syncs) gives bit-identical
    forward outputs and ids, and backward results within rounding, to the default single group."""
    from pyadr.gpu import conv
    be = gpu_backend
    cfg = _cfg(rng, 4, 5, "l2", "input", "hwc")
    x, w = be.put(int_data(rng, (2, 3, 6, 5), np.float64), int_data(rng, (4, 3, 3, 3), np.float64))
    y1, c1 = pyadr.conv2d_forward(x, w, None, 1, 1, 1, reuse=cfg)
    monkeypatch.setattr(conv, "WORKSPACE_BYTES", 1)
    y2, c2 = pyadr.conv2d_forward(x, w, None, 1, 1, 1, reuse=cfg)
    assert len(gpu_groups(c2)) == c2.stats.blocks > len(gpu_groups(c1))
    np.testing.assert_array_equal(be.to_numpy(y1), be.to_numpy(y2))
    np.testing.assert_array_equal(be.to_numpy(c1.cluster_ids()), be.to_numpy(c2.cluster_ids()))
    dy = be.asarray(int_data(rng, y1.shape, np.float64))
    for a, b in zip(pyadr.conv2d_backward(dy, c1)[:2], pyadr.conv2d_backward(dy, c2)[:2]):
        np.testing.assert_allclose(be.to_numpy(a), be.to_numpy(b), rtol=1e-12)


def test_dense_and_sorted_grouping_agree(gpu_backend, rng, monkeypatch):
    """Sign keys with small H take a dense 2^H table; forcing the sorted grouping instead
    (DENSE_MAX_H = 0) gives the same ids and a bit-identical forward."""
    from pyadr.gpu import conv
    be = gpu_backend
    cfg = _cfg(rng, 6, 4, "sign", "input", "chw")
    x, w = be.put(int_data(rng, (2, 3, 6, 5), np.float32), int_data(rng, (4, 3, 3, 3), np.float32))
    be.launched.clear()
    y1, c1 = pyadr.conv2d_forward(x, w, None, 1, 1, 1, reuse=cfg)
    if be.name == "emulated":
        assert "dense_mark" in be.launched and "sign_boundaries" not in be.launched
    monkeypatch.setattr(conv, "DENSE_MAX_H", 0)
    be.launched.clear()
    y2, c2 = pyadr.conv2d_forward(x, w, None, 1, 1, 1, reuse=cfg)
    if be.name == "emulated":
        assert "sign_boundaries" in be.launched and "dense_mark" not in be.launched
    np.testing.assert_array_equal(be.to_numpy(c1.cluster_ids()), be.to_numpy(c2.cluster_ids()))
    np.testing.assert_array_equal(be.to_numpy(y1), be.to_numpy(y2))
