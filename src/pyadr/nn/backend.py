"""Array-module selection: NumPy unless the array is a CuPy array (CuPy is never imported here
unless such an array is already in hand)."""
from __future__ import annotations

import numpy as np


def is_cupy_array(x) -> bool:
    return type(x).__module__.startswith("cupy")


def array_module(x):
    """`numpy`, or `cupy` when `x` is a CuPy array."""
    if is_cupy_array(x):
        import cupy  # already imported by whoever made x
        return cupy
    return np


def to_numpy(x) -> np.ndarray:
    """A NumPy copy/view of a NumPy or CuPy array (for checkpoints and metrics)."""
    if is_cupy_array(x):
        return x.get()
    return np.asarray(x)


def device_module(device: str):
    """Array module for a device name ("cpu" or "cuda"); a clear error when CuPy is absent."""
    if device == "cpu":
        return np
    if device == "cuda":
        try:
            import cupy
        except ImportError as exc:
            raise RuntimeError("device 'cuda' needs CuPy: pip install cupy-cuda12x") from exc
        return cupy
    raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")


def synchronize(xp) -> None:
    """Wait for queued GPU work so that wall-clock timings mean something (no-op on NumPy)."""
    if xp is not np:
        xp.cuda.get_current_stream().synchronize()
