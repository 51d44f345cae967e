"""Backends of the behaviour suite: one object per way of running pyadr's public API.

  "cpu"       pyadr.* on NumPy arrays: the native C++ engine.
  "cuda"      pyadr.* on CuPy arrays, which pyadr dispatches to pyadr.gpu. Skipped without CuPy or
              a CUDA device -- a failure instead when PYADR_REQUIRE_GPU=1, so that a GPU machine
              cannot pass by skipping.
  "emulated"  pyadr.* on a NumPy-backed stand-in for CuPy, which pyadr dispatches to pyadr.gpu as it
              would CuPy; every kernel launch runs the very same .cu sources compiled for the host
              with g++ (a grid of one thread: every kernel is a grid-stride loop, so one thread runs
              all its work items in order), after pyadr.gpu._kernels.launch has checked its
              arguments. It tests the kernels' index arithmetic and the whole orchestration of
              pyadr/gpu/conv.py where no GPU exists. Skipped without g++.

A behaviour test takes the `backend` fixture (conftest.py), moves its NumPy inputs with
`backend.put(...)`, calls pyadr.* and brings results back with `backend.to_numpy(...)`, which also
checks that a GPU backend really returned device arrays (nothing fell back to the CPU engine).
`gpu_backend` is the same fixture restricted to "cuda" and "emulated", for GPU-only behaviour.

Tolerances live in one table, TOLERANCES, per (backend, dtype).
"""
from __future__ import annotations

import ctypes
import importlib.machinery
import os
import shutil
import subprocess
import types

import numpy as np

BACKENDS = ("cpu", "cuda", "emulated")
GPU_BACKENDS = ("cuda", "emulated")

# Relative tolerance of a result against the float64 reference, per backend and dtype; the
# absolute tolerance is the same figure times max(1, max|expected|) (see _util.assert_close).
# cpu: measured margins of the native engine. emulated: the kernels run sequentially in a fixed
# order, like the CPU. cuda: cuBLAS sums in its own (blocked) order; pyadr.gpu uses no float
# atomics, so the order is fixed per device -- the float32 figure is 4x the CPU's for that,
# the float64 one 10x. (Not yet measured on a device: adjust here if a GPU run shows otherwise.)
TOLERANCES = {
    ("cpu", "float32"): 1e-5, ("cpu", "float64"): 1e-12,
    ("emulated", "float32"): 1e-5, ("emulated", "float64"): 1e-12,
    ("cuda", "float32"): 4e-5, ("cuda", "float64"): 1e-11,
}


class Backend:
    """How a behaviour test runs pyadr's public API on one backend."""

    def __init__(self, name, xp):
        self.name = name
        self.xp = xp                     # numpy, cupy, or the emulator's stand-in for cupy
        self.is_gpu = name in GPU_BACKENDS
        # The CPU engine numbers clusters by first occurrence; pyadr.gpu by (scope group, key).
        # DESIGN.md: numbering is an implementation detail, partitions must agree.
        self.first_occurrence_ids = not self.is_gpu
        self.launched = []               # kernel names run (emulated only)

    def __repr__(self):
        return f"<backend {self.name}>"

    def rtol(self, dtype):
        return TOLERANCES[(self.name, np.dtype(dtype).name)]

    def asarray(self, a):
        """A NumPy array (or None) on this backend."""
        if a is None:
            return None
        return self.xp.asarray(a)

    def put(self, *arrays):
        """asarray of each argument, as a tuple."""
        return tuple(self.asarray(a) for a in arrays)

    def to_numpy(self, a):
        """A result of pyadr (or None) as a NumPy array; on a GPU backend it must be a device array."""
        if a is None:
            return None
        if self.is_gpu:
            assert isinstance(a, self.xp.ndarray), \
                f"{self.name}: pyadr returned a {type(a).__module__}.{type(a).__name__}, not a device array"
            return self.xp.asnumpy(a)
        assert isinstance(a, np.ndarray), type(a)
        return a


def cpu_backend():
    return Backend("cpu", np)


def cuda_backend():
    """The CUDA backend, or the reason it cannot run here (a string)."""
    try:
        import cupy
    except Exception as exc:  # noqa: BLE001 - report, never fail
        return f"no CUDA device: CuPy not importable ({type(exc).__name__}: {exc})"
    import pyadr.gpu
    if not pyadr.gpu.is_available():
        return f"no CUDA device: {pyadr.gpu.why_unavailable()}"
    return Backend("cuda", cupy)


# ------------------------------------------------------------------------------------------------
# The host emulator: the .cu kernels compiled with g++, and the few CuPy functions pyadr.gpu uses
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


def build_emulator(tmpdir):
    """Compiles every kernel of pyadr/gpu/kernels for the host; returns the loaded library, or the
    reason it cannot be built (a string)."""
    if shutil.which("g++") is None:
        return "g++ not found: cannot build the host emulation of the kernels"
    from pyadr.gpu import _kernels
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


class FakeDeviceArray(np.ndarray):
    """A NumPy array that pyadr takes for a CuPy one (its type lives in a "cupy" module)."""

    __module__ = "cupy._emulated"

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
    m.__spec__ = importlib.machinery.ModuleSpec("cupy", None)   # importlib.util.find_spec works
    m.__version__ = "emulated"
    m.ndarray = FakeDeviceArray
    wrap = lambda f: (lambda *a, **k: np.asarray(f(*a, **k)).view(FakeDeviceArray))  # noqa: E731
    for name in ("empty", "zeros", "ones", "arange", "empty_like", "zeros_like", "ascontiguousarray", "asarray",
                 "concatenate", "diff", "cumsum"):
        setattr(m, name, wrap(getattr(np, name)))
    m.argsort = wrap(lambda a, axis=-1: np.argsort(a, axis=axis, kind="stable"))
    m.matmul = lambda a, b, out=None: np.matmul(a, b, out=out).view(FakeDeviceArray)
    m.asnumpy = lambda a: np.array(a)
    m.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDevice=lambda: 0, getDeviceCount=lambda: 1))
    return m


def _ctype_arg(a):
    if isinstance(a, np.ndarray):
        return ctypes.c_void_p(a.ctypes.data)
    return {np.int64: ctypes.c_longlong, np.int32: ctypes.c_int, np.float32: ctypes.c_float,
            np.float64: ctypes.c_double}[type(a)](a.item())


def emulated_backend(lib, monkeypatch):
    """Installs the stand-in for CuPy and the host kernels for one test (undone by monkeypatch)."""
    import sys

    from pyadr.gpu import _kernels
    fake = _fake_cupy()
    monkeypatch.setitem(sys.modules, "cupy", fake)
    be = Backend("emulated", fake)

    def get_kernel(name, targ):
        fn = getattr(lib, _wrapper_name(name, targ))

        def run(grid, block, args):
            be.launched.append(name)
            fn(*[_ctype_arg(a) for a in args])
        return run

    monkeypatch.setattr(_kernels, "get_kernel", get_kernel)
    return be
