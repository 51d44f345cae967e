"""SciPy's BLAS as the core's optional GEMM provider.

The core always has its own blocked GEMM. When SciPy is installed, its ?gemm function pointers
(scipy.linalg.cython_blas capsules) are handed to the core, which then can use them for GEMMs
called outside its own parallel regions: `pyadr.set_gemm_provider("blas")`.
"""
from __future__ import annotations

import ctypes

_state = {"done": False, "error": None, "library": None}


def _capsule_pointer(capsule):
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype = ctypes.c_char_p
    get_name.argtypes = [ctypes.py_object]
    get_ptr = ctypes.pythonapi.PyCapsule_GetPointer
    get_ptr.restype = ctypes.c_void_p
    get_ptr.argtypes = [ctypes.py_object, ctypes.c_char_p]
    return get_ptr(capsule, get_name(capsule))


def ensure_injected(nat):
    """Injects SciPy's sgemm/dgemm into the core once; silently skipped without SciPy."""
    if _state["done"]:
        return
    _state["done"] = True
    try:
        from scipy.linalg import cython_blas
        capi = cython_blas.__pyx_capi__
        nat.set_blas(_capsule_pointer(capi["sgemm"]), _capsule_pointer(capi["dgemm"]))
        try:
            import scipy
            cfg = scipy.show_config(mode="dicts")
            _state["library"] = cfg["Build Dependencies"]["blas"].get("name", "scipy blas")
        except Exception:  # noqa: BLE001 - the name is cosmetic
            _state["library"] = "scipy blas"
    except Exception as exc:  # noqa: BLE001 - no SciPy means the built-in GEMM only
        _state["error"] = f"{type(exc).__name__}: {exc}"


def blas_library():
    return _state["library"]


def blas_error():
    return _state["error"]
