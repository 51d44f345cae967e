"""show_config(), the GEMM provider switch and the version (pyadr.__version__ is this one).

The exact convolution's provider switch (set_conv_provider) is in _onednn."""
from __future__ import annotations

import importlib.util
import os

__version__ = "0.1.0"
_PROVIDERS = {"builtin": 0, "blas": 1}


def set_gemm_provider(name: str) -> None:
    """GEMM used outside the core's own parallel loops: "builtin" (default) or "blas" (SciPy's)."""
    if name not in _PROVIDERS:
        raise ValueError(f"name must be one of {tuple(_PROVIDERS)}, got {name!r}")
    from ._api import _native
    _native().set_provider(_PROVIDERS[name])


def _gpu_status():
    if importlib.util.find_spec("cupy") is None:
        return "CuPy not installed"
    try:
        import cupy
        n = cupy.cuda.runtime.getDeviceCount()
        return f"CuPy {cupy.__version__}, {n} CUDA device(s)"
    except Exception as exc:  # noqa: BLE001 - report, never fail
        return f"CuPy installed but unusable ({type(exc).__name__}: {exc})"


def show_config(file=None) -> dict:
    """Prints (and returns) which GEMM, OpenMP threads, SIMD level and GPU support are in use."""
    from ._api import _native
    from . import _onednn
    from ._blas import blas_error, blas_library
    nat = _native()
    info = nat.info()
    provider = {v: k for k, v in _PROVIDERS.items()}[nat.get_provider()]
    cfg = {
        "version": __version__,
        "gemm": provider,
        "conv exact": _onednn.describe(),
        "blas": blas_library() if nat.has_blas() else f"unavailable ({blas_error()})",
        "openmp": info["openmp"],
        "threads": nat.get_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
        "GOMP_SPINCOUNT": os.environ.get("GOMP_SPINCOUNT"),
        "simd": info["simd"],
        "block cache": f"{nat.cache_bytes() / 2**20:.1f} MB held, cap {nat.cache_limit() / 2**20:.0f} MB"
                       " (PYADR_CACHE_MB)",
        "gpu": _gpu_status(),
    }
    width = max(len(k) for k in cfg)
    lines = [f"{k:<{width}} : {v}" for k, v in cfg.items()]
    print("pyadr configuration\n" + "\n".join("  " + ln for ln in lines), file=file)
    return cfg
