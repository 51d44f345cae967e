"""Loader of the CUDA kernels in pyadr/gpu/kernels/*.cu (shipped as package data).

Every kernel is a template; its instantiations are compiled by NVRTC through `cupy.RawModule`
with `name_expressions`, lazily on first use, and cached per (device, file, template argument):
float kernels per dtype ("float"/"double"), the integer kernels of cluster.cu for the index type
"long long". `precompile()` compiles everything ahead of time.

`launch(name, targ, n, *args)` is the only way kernels are started: it checks every argument against
the kernel's signature below (a CuPy array of the right dtype, C-contiguous, on the current device,
for a pointer; a Python/NumPy number, converted to the exact NumPy type, for a scalar) and uses a
grid-stride launch over `n` work items. This module never imports CuPy at import time.
"""
from __future__ import annotations

import os
import threading

import numpy as np

KERNEL_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels")
BLOCK = 256
MAX_GRID = 1 << 20  # grid-stride loops cover the rest

# Template arguments of each file, and the dtype that "T" stands for.
FILE_TARGS = {
    "im2col.cu": ("float", "double"),
    "col2im.cu": ("float", "double"),
    "lsh_hash.cu": ("float", "double"),
    "cluster.cu": ("long long",),
    "centroids.cu": ("float", "double"),
    "reuse_gemm.cu": ("float", "double"),
    "reuse_backward.cu": ("float", "double"),
}
TARG_DTYPE = {"float": np.float32, "double": np.float64, "long long": np.int64}

_G = ("i64",) * 10  # kh, kw, OH, OW, sh, sw, ph, pw, dh, dw
# name -> (file, template parameter name, parameter types in source order). Pointer types name the
# element type ("T*" is the template type); scalars: "T", "i64", "i32".
KERNELS = {
    "im2col_kp": ("im2col.cu", "T", ("T*", "T*", "i64", "i64", "i64", "i64") + _G + ("i64",) * 4),
    "im2col_blocks": ("im2col.cu", "T", ("T*", "T*", "i64", "i64", "i64", "i64", "i64", "i64", "i64") + _G
                      + ("i64",) * 4 + ("i32",)),
    "col2im_kp": ("col2im.cu", "T", ("T*", "T*", "i64", "i64", "i64", "i64") + _G),
    "sign_keys": ("lsh_hash.cu", "T", ("T*", "u64*", "i64", "i32")),
    "l2_keys": ("lsh_hash.cu", "T", ("T*", "T*", "T", "i64*", "u64*", "i32*", "i64", "i32")),
    "sign_boundaries": ("cluster.cu", "I", ("u64*", "I*", "i32*", "i64", "i64")),
    "l2_boundaries": ("cluster.cu", "I", ("i64*", "u64*", "I*", "i32*", "i32*", "i64", "i64", "i32", "i32")),
    "assign_ids": ("cluster.cu", "I", ("i32*", "i64*", "I*", "i64*", "i32*", "i64*", "i64", "i64")),
    "dense_mark": ("cluster.cu", "I", ("u64*", "i32*", "i64", "i64", "i32")),
    "dense_ids": ("cluster.cu", "I", ("u64*", "i64*", "i64*", "i32*", "I*", "i32*", "i64", "i64", "i64", "i32")),
    "segment_sum": ("centroids.cu", "T", ("T*", "i64*", "i64*", "T*", "i64", "i64", "i64", "i32")),
    "gather_add": ("reuse_gemm.cu", "T", ("T*", "i32*", "i64*", "T*", "i64", "i64", "i64")),
    "col2im_clusters": ("reuse_backward.cu", "T", ("T*", "i32*", "i64*", "T*", "i64", "i64", "i64", "i64", "i64",
                                                   "i64", "i64") + _G + ("i32",)),
}
_SCALAR = {"i64": np.int64, "i32": np.int32}
_POINTER = {"i64*": np.int64, "i32*": np.int32, "u64*": np.uint64}

_lock = threading.Lock()
_modules = {}  # (device id, file, targ) -> cupy.RawModule


def kernel_files():
    return sorted(FILE_TARGS)


def name_expressions(file, targ=None):
    """The NVRTC name expressions of `file` (for one template argument, or all)."""
    targs = FILE_TARGS[file] if targ is None else (targ,)
    return [f"{name}<{t}>" for t in targs for name, spec in KERNELS.items() if spec[0] == file]


def read_source(file):
    with open(os.path.join(KERNEL_DIR, file), encoding="utf-8") as f:
        return f.read()


def _module(file, targ):
    import cupy
    dev = cupy.cuda.runtime.getDevice()
    key = (dev, file, targ)
    mod = _modules.get(key)
    if mod is None:
        with _lock:
            mod = _modules.get(key)
            if mod is None:
                mod = cupy.RawModule(code=read_source(file), options=("-std=c++17",),
                                     name_expressions=name_expressions(file, targ))
                for expr in name_expressions(file, targ):
                    mod.get_function(expr)  # compile and load now, on this device
                _modules[key] = mod
    return mod


def get_kernel(name, targ):
    file = KERNELS[name][0]
    if targ not in FILE_TARGS[file]:
        raise ValueError(f"kernel {name} has no instantiation for {targ!r}")
    return _module(file, targ).get_function(f"{name}<{targ}>")


def precompile(dtypes=("float", "double")):
    """Compiles (or loads from CuPy's disk cache) every kernel for the current device."""
    for file, targs in FILE_TARGS.items():
        for t in targs:
            if t in dtypes or TARG_DTYPE[t] is np.int64:
                _module(file, t)


def _check_args(name, targ, args):
    import cupy
    file, tname, types = KERNELS[name]
    if len(args) != len(types):
        raise TypeError(f"kernel {name} takes {len(types)} arguments, got {len(args)}")
    tdtype = np.dtype(TARG_DTYPE[targ])
    dev = cupy.cuda.runtime.getDevice()
    out = []
    for i, (a, ty) in enumerate(zip(args, types)):
        if ty.endswith("*"):
            want = tdtype if ty == tname + "*" else np.dtype(_POINTER[ty])
            if not isinstance(a, cupy.ndarray):
                raise TypeError(f"{name} argument {i} must be a CuPy array ({ty}), got {type(a).__name__}")
            if a.dtype != want:
                raise TypeError(f"{name} argument {i} must have dtype {want}, got {a.dtype}")
            if not a.flags.c_contiguous:
                raise ValueError(f"{name} argument {i} must be C-contiguous")
            if a.device.id != dev:
                raise ValueError(f"{name} argument {i} lives on device {a.device.id}, not {dev}")
            out.append(a)
        else:
            want = tdtype.type if ty in (tname, "T") else _SCALAR[ty]
            if isinstance(a, cupy.ndarray) or isinstance(a, (bool, np.bool_)):
                raise TypeError(f"{name} argument {i} must be a {ty} scalar, got {type(a).__name__}")
            out.append(want(a))
    return out


def launch(name, targ, n, *args):
    """Starts kernel `name<targ>` on the current stream with enough threads for `n` work items."""
    args = _check_args(name, targ, args)
    n = int(n)
    if n <= 0:
        return
    grid = min((n + BLOCK - 1) // BLOCK, MAX_GRID)
    get_kernel(name, targ)((grid,), (BLOCK,), tuple(args))
