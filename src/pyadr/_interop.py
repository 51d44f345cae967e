"""Framework interop: the public functions accept any CPU DLPack producer, not only NumPy.

`dlpack_boundary(fn, names)` wraps a public function of pyadr._api. Arguments named in `names`
that are PyTorch tensors, JAX arrays or other DLPack producers are converted to NumPy without a
copy (`np.from_dlpack`), the NumPy function runs, and every array it returns is handed back in
the caller's kind (`torch.from_dlpack`, `jax.numpy.from_dlpack`; NumPy for any other producer).

- NumPy arrays (and None) take a fast path: no conversion, no extra import.
- CuPy arrays are left alone: pyadr._api sends them to the GPU backend (pyadr.gpu) when it
  exists and raises a clear TypeError otherwise.
- Tensors on an accelerator (CUDA, ROCm, TPU, ...) raise TypeError: the CPU engine cannot read
  them, and pyadr never copies between devices behind the caller's back.
- dtypes other than float32/float64 raise TypeError naming the argument (bool, integers, half
  and bfloat16 included: pyadr does not silently up-cast).
- Mixing two different non-NumPy kinds in one call (say a torch x and a JAX w) is a TypeError.

Nothing here imports torch or jax unless the caller passed one of their arrays.
"""
from __future__ import annotations

import functools
import inspect

import numpy as np

_FLOAT_NAMES = ("float32", "float64")
_DL_CPU = 1  # DLDeviceType kDLCPU; 3 (kDLCUDAHost) is also host memory
_DL_HOST = (1, 3)
_DL_DEVICE_NAMES = {2: "CUDA", 4: "OpenCL", 7: "Vulkan", 8: "Metal", 9: "VPI", 10: "ROCm",
                    13: "CUDA managed memory", 14: "oneAPI"}


def _kind(a):
    """'numpy', 'cupy', 'torch', 'jax', 'dlpack' (another producer) or None (not an array)."""
    if a is None or isinstance(a, np.ndarray):
        return "numpy"
    mod = type(a).__module__.split(".")[0]
    if mod == "cupy":
        return "cupy"
    if mod == "torch" and hasattr(a, "device") and hasattr(a, "dtype"):
        return "torch"
    if mod in ("jax", "jaxlib"):
        return "jax"
    if hasattr(a, "__dlpack__") and hasattr(a, "__dlpack_device__"):
        return "dlpack"
    return None


def _torch_to_numpy(t, name):
    if t.device.type != "cpu":
        raise TypeError(f"{name} is a torch tensor on {t.device}: pyadr runs on CPU only for now "
                        f"(the GPU backend takes CuPy arrays); move it with {name}.cpu()")
    if str(t.dtype).replace("torch.", "") not in _FLOAT_NAMES:
        raise TypeError(f"{name} must be float32 or float64, got {t.dtype}")
    t = t.detach()
    if t.is_conj() or t.is_neg():
        t = t.resolve_conj().resolve_neg()
    try:
        return np.from_dlpack(t)
    except (TypeError, RuntimeError, BufferError):
        return t.numpy()


def _jax_to_numpy(a, name):
    devs = a.devices() if hasattr(a, "devices") else set()
    platforms = {getattr(d, "platform", "cpu") for d in devs}
    if platforms - {"cpu"}:
        raise TypeError(f"{name} is a JAX array on {sorted(platforms)}: pyadr runs on CPU only for now; "
                        f"move it with jax.device_put({name}, jax.devices('cpu')[0])")
    if str(a.dtype) not in _FLOAT_NAMES:
        raise TypeError(f"{name} must be float32 or float64, got {a.dtype}")
    try:
        return np.from_dlpack(a)
    except (TypeError, RuntimeError, BufferError):
        return np.asarray(a)


def _dlpack_to_numpy(a, name):
    dev = a.__dlpack_device__()
    dev_type = int(dev[0])
    if dev_type not in _DL_HOST:
        where = _DL_DEVICE_NAMES.get(dev_type, f"DLPack device type {dev_type}")
        raise TypeError(f"{name} ({type(a).__name__}) lives on {where}: pyadr runs on CPU only for now")
    arr = np.from_dlpack(a)
    if arr.dtype.name not in _FLOAT_NAMES:
        raise TypeError(f"{name} must be float32 or float64, got {arr.dtype}")
    return arr


_TO_NUMPY = {"torch": _torch_to_numpy, "jax": _jax_to_numpy, "dlpack": _dlpack_to_numpy}


def to_numpy(a, name):
    """(NumPy view of a, its kind). Non-array objects are returned unchanged with kind None."""
    k = _kind(a)
    if k in _TO_NUMPY:
        return _TO_NUMPY[k](a, name), k
    return a, k


def from_numpy(arr, kind):
    """Hands a NumPy result back in `kind` ('torch', 'jax'; anything else: NumPy)."""
    if arr is None or not isinstance(arr, np.ndarray):
        return arr
    if kind == "torch":
        import torch
        arr = np.ascontiguousarray(arr)
        if not arr.flags.writeable:  # torch warns on read-only memory; results are ours to give
            arr = arr.copy()
        try:
            return torch.from_dlpack(arr)
        except (TypeError, RuntimeError, BufferError):
            return torch.from_numpy(arr)
    if kind == "jax":
        import jax.numpy as jnp
        try:
            return jnp.from_dlpack(arr)
        except (TypeError, RuntimeError, BufferError, AttributeError, ValueError):
            return jnp.asarray(arr)
    return arr


def dlpack_boundary(fn, names):
    """Wraps fn so that the arguments in `names` may be any CPU DLPack producer (see module doc)."""
    sig = inspect.signature(fn)
    params = list(sig.parameters)
    positions = {n: params.index(n) for n in names}

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        # Fast path: every array argument is NumPy, None, or not an array at all.
        foreign = False
        for n, i in positions.items():
            a = args[i] if i < len(args) else kwargs.get(n)
            if a is not None and not isinstance(a, np.ndarray) and _kind(a) in _TO_NUMPY:
                foreign = True
                break
        if not foreign:
            return fn(*args, **kwargs)
        args = list(args)
        kind = None
        for n, i in positions.items():
            in_args = i < len(args)
            a = args[i] if in_args else kwargs.get(n)
            conv, k = to_numpy(a, n)
            if k in _TO_NUMPY:
                if kind is not None and k != kind:
                    raise TypeError(f"{n} is a {k} array but an earlier argument is a {kind} array: "
                                    f"pass arrays of one kind (or NumPy) to one call")
                kind = k
            if in_args:
                args[i] = conv
            elif n in kwargs:
                kwargs[n] = conv
        out = fn(*args, **kwargs)
        if isinstance(out, tuple):
            return tuple(from_numpy(o, kind) for o in out)
        return from_numpy(out, kind)

    wrapper.__wrapped__ = fn
    return wrapper
