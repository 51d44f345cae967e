"""Peak memory of one call: RSS growth at its peak (Linux), for `pyadr bench` and `pyadr profile`.

Linux: /proc/self/clear_refs "5" resets VmHWM (the peak RSS), which is then read back after the
call; cheap and approximate. Elsewhere the figure is None. Layer 2: imports only pyadr._api
(to empty the engine's block cache first), lazily.
"""
from __future__ import annotations

import gc


def _proc_kb(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _malloc_trim():
    """Gives the heap's free memory back to the OS (glibc), so that RSS growth counts every page a
    call touches: glibc raises its mmap threshold after large frees and keeps such blocks."""
    try:
        import ctypes
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_delta_mb(fn):
    """Runs fn(); returns (result, MB of RSS growth at its peak) or (result, None). The engine's
    block cache is emptied and the heap trimmed first, so the figure is that of a call with
    nothing recycled."""
    from ._api import empty_cache
    gc.collect()
    empty_cache()
    _malloc_trim()
    before = _proc_kb("VmRSS")
    ok = before is not None and _reset_peak()
    res = fn()
    peak = _proc_kb("VmHWM") if ok else None
    if peak is None:
        return res, None
    return res, max(peak - before, 0) / 1024.0
