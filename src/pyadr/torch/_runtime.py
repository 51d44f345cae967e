"""What the custom ops of pyadr.torch._ops need at run time, kept out of the traced graph.

  backend_of(t) = route(device_type(t))   "cpu" | "gpu" for a tensor, or a clear error
  to_array(t, backend) / from_array(a, channels_last)   torch <-> NumPy (CPU) / CuPy (CUDA), no copy
  compute_dtype(dtype)            float16/bfloat16 compute in float32; float32/float64 as they are
  keep_context(ctx) -> handle     a (1,) int64 CPU tensor whose storage owns the reuse context
  context_of(handle)              the context again (backward); gone once the handle is freed
  record_stats(slot, stats)       what a layer's `last_stats` reads (slot: an int per layer)
  reuse_args(reuse) / reuse_from_args(*args)   ReuseConfig <-> plain op arguments

torch.compile and torch.export allow only tensors and plain values in a graph, so the reuse
context (clusters, centroids) of a forward is held here, in a table keyed by the int64 value of a
handle tensor. The handle's storage is a NumPy array that a weakref finalizer watches: when
autograd frees the saved handle (after backward, or with the graph), the entry goes too.
"""
from __future__ import annotations

import itertools
import threading
import weakref

import numpy as np
import torch

from .._config import ReuseConfig

_LOW_PRECISION = (torch.float16, torch.bfloat16)
_NUMPY_DTYPES = (torch.float32, torch.float64)

# ---- devices ------------------------------------------------------------------------------------


def _gpu_module():
    from .. import gpu  # never imports CuPy by itself
    return gpu


def route(device_type):
    """'cpu' for CPU tensors, 'gpu' for CUDA tensors when pyadr.gpu (CuPy) can run them."""
    if device_type == "cpu":
        return "cpu"
    if device_type == "cuda":
        gpu = _gpu_module()
        if not gpu.is_available():
            raise RuntimeError("pyadr.torch: a CUDA tensor needs pyadr's GPU backend (CuPy), which is "
                               f"unavailable: {gpu.why_unavailable()}. Move the model and input to the "
                               "CPU (.cpu()) or install CuPy")
        return "gpu"
    raise TypeError(f"pyadr.torch runs on CPU or CUDA tensors, got a tensor on {device_type!r}")


def device_type(t):
    """The device type pyadr routes `t` by (a seam: tests stand a CPU tensor in for a CUDA one)."""
    return t.device.type


def backend_of(t):
    return route(device_type(t))


def to_array(t, backend):
    """A NumPy ("cpu") or CuPy ("gpu") view of a contiguous tensor; None stays None."""
    if t is None:
        return None
    t = t.detach().contiguous()
    if backend == "cpu":
        return t.numpy()
    import cupy  # only reached for CUDA tensors, after route() found CuPy usable
    return cupy.from_dlpack(t)


def from_array(a, channels_last=False):
    """A tensor over the NumPy/CuPy result (no copy), in channels_last layout on request."""
    if isinstance(a, np.ndarray):
        if not a.flags.writeable:
            a = a.copy()
        t = torch.from_numpy(np.ascontiguousarray(a))
    else:
        t = torch.from_dlpack(a)
    return t.contiguous(memory_format=torch.channels_last) if channels_last else t


def is_channels_last(x):
    """True for a 4-D input laid out NHWC (and not also plainly contiguous): outputs follow it."""
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def compute_dtype(dtype):
    """The dtype pyadr computes in for tensors of `dtype` (half precision: float32)."""
    if dtype in _NUMPY_DTYPES:
        return dtype
    if dtype in _LOW_PRECISION:
        return torch.float32
    raise TypeError(f"pyadr.torch: tensors must be float16, bfloat16, float32 or float64, got {dtype}")


def upcast(t):
    """t in the dtype pyadr computes in (float16/bfloat16 -> float32), None stays None."""
    return None if t is None else t.to(compute_dtype(t.dtype))


# ---- reuse contexts between forward and backward ------------------------------------------------

_CONTEXTS = {}
_KEYS = itertools.count(1)
_LOCK = threading.Lock()


def keep_context(ctx):
    """A (1,) int64 CPU tensor naming `ctx`; the entry lives as long as the tensor's storage."""
    with _LOCK:
        key = next(_KEYS)
        _CONTEXTS[key] = ctx
    holder = np.array([key], dtype=np.int64)
    weakref.finalize(holder, _CONTEXTS.pop, key, None)
    return torch.from_numpy(holder)


def context_of(handle):
    """The context kept by keep_context for `handle`; a clear error when it is gone."""
    key = int(handle.reshape(-1)[0])
    ctx = _CONTEXTS.get(key)
    if ctx is None:
        raise RuntimeError("pyadr.torch: the reuse context of this forward is gone (its handle was freed "
                           "or it comes from another process); run the forward again")
    return ctx


def live_contexts():
    """Number of reuse contexts held (for tests: they must not pile up)."""
    return len(_CONTEXTS)


# ---- per-layer statistics -----------------------------------------------------------------------

_STATS = {}
_SLOTS = itertools.count(0)


def new_stats_slot(layer):
    """A fresh int naming `layer`'s statistics; the entry is dropped with the layer."""
    slot = next(_SLOTS)
    weakref.finalize(layer, _STATS.pop, slot, None)
    return slot


def record_stats(slot, stats):
    if slot >= 0:
        if stats is None:
            _STATS.pop(slot, None)
        else:
            _STATS[slot] = stats


def stats_of(slot):
    return _STATS.get(slot)


# ---- ReuseConfig <-> plain op arguments ---------------------------------------------------------
# (L, H, scope, order, hash, seed, planes, width, width_scale, offsets, exact): ints, strings,
# floats and optional float64 tensors, which torch.library schemas, compile and export accept.


def reuse_args(reuse):
    planes = None if reuse.planes is None else torch.from_numpy(np.array(reuse.planes))
    offsets = None if reuse.offsets is None else torch.from_numpy(np.array(reuse.offsets))
    return (reuse.L, reuse.H, reuse.scope, reuse.order, reuse.hash, reuse.seed, planes, reuse.width,
            reuse.width_scale, offsets, ",".join(reuse.exact))


def reuse_from_args(L, H, scope, order, hash, seed, planes, width, width_scale, offsets, exact):
    return ReuseConfig(L=L, H=H, scope=scope, order=order, hash=hash, seed=seed,
                       planes=None if planes is None else planes.cpu().numpy(), width=width,
                       width_scale=width_scale, offsets=None if offsets is None else offsets.cpu().numpy(),
                       exact=exact)


def reuse_to_plain(reuse):
    """A ReuseConfig as plain data (dict of ints/floats/strings/lists, or None): what a state_dict
    and a pickled layer carry, loadable by torch.load(weights_only=True)."""
    return None if reuse is None else reuse.to_dict()


def reuse_from_plain(d):
    if d is None or isinstance(d, ReuseConfig):
        return d
    if not isinstance(d, dict):
        raise TypeError(f"a pyadr reuse entry must be a dict (ReuseConfig.to_dict()) or None, got {type(d).__name__}")
    d = dict(d)
    d["exact"] = tuple(d.get("exact", ()))
    return ReuseConfig(**d)
