"""oneDNN as the provider of the exact float32 convolution: finding libdnnl.so.3, the switch.

The native core dlopens oneDNN v3 built on OpenMP (PyPI's onednn-cpu-gomp: `pip install
onednn-cpu-gomp`, or `pip install pyadr[onednn]`); it never links it. This module finds the
library and applies the provider setting on the FIRST convolution (pyadr._api calls
ensure_configured), never at `import pyadr`.

  provider   PYADR_CONV_PROVIDER (read once) or set_conv_provider(): "auto" (default: oneDNN when
             its library loads, else builtin), "builtin", "onednn" (RuntimeError if unavailable).
             float64 always runs on the builtin kernels.
  library    first that loads: PYADR_ONEDNN_LIBRARY (a path), the onednn-cpu-gomp wheel's own
             file list (importlib.metadata), sys.prefix/lib/libdnnl.so.3, then "libdnnl.so.3"
             through the dynamic loader's search path.
"""
from __future__ import annotations

import os
import sys

PROVIDERS = {"auto": 0, "builtin": 1, "onednn": 2}
_INSTALL_HINT = "pip install onednn-cpu-gomp"
_state = {"configured": False, "tried": False, "error": None}


def _native():
    from . import _native as nat  # the compiled core, imported on first use
    return nat


def candidates():
    """Paths (or bare names) of libdnnl.so.3 to try, in order."""
    env = os.environ.get("PYADR_ONEDNN_LIBRARY")
    if env:
        return [env]
    out = []
    try:
        from importlib import metadata
        for f in metadata.distribution("onednn-cpu-gomp").files or ():
            if os.path.basename(str(f)) == "libdnnl.so.3":
                out.append(os.path.normpath(str(f.locate())))
    except Exception:  # noqa: BLE001 - no wheel, or no file list: the other places remain
        pass
    out.append(os.path.join(sys.prefix, "lib", "libdnnl.so.3"))
    out.append("libdnnl.so.3")
    seen = set()
    return [p for p in out if not (p in seen or seen.add(p))]


def load():
    """Loads oneDNN into the core once; True when loaded. The reasons of failure: unavailable()."""
    nat = _native()
    if not _state["tried"]:
        _state["tried"] = True
        errors = []
        for path in candidates():
            if os.sep in path and not os.path.exists(path):
                errors.append(f"{path}: no such file")
                continue
            why = nat.onednn_load(path)
            if not why:
                break
            errors.append(why)
        else:
            _state["error"] = "; ".join(errors)
    return nat.onednn_info()[0]


def unavailable():
    """Why oneDNN could not be loaded (None if it was, or was not tried)."""
    return _state["error"]


def _code(name, what):
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a str, got {type(name).__name__}")
    if name not in PROVIDERS:
        raise ValueError(f"{what} must be one of {tuple(PROVIDERS)}, got {name!r}")
    return PROVIDERS[name]


def _apply(name):
    nat = _native()
    if name != "builtin" and not load() and name == "onednn":
        raise RuntimeError(f"conv provider 'onednn' is unavailable ({_state['error']}); install it with "
                           f"`{_INSTALL_HINT}` (or `pip install pyadr[onednn]`), or set PYADR_ONEDNN_LIBRARY "
                           f"to a libdnnl.so.3 built on OpenMP")
    nat.set_conv_provider(PROVIDERS[name])
    _state["configured"] = True


def ensure_configured():
    """Applies PYADR_CONV_PROVIDER on the first convolution; cheap afterwards."""
    if _state["configured"]:
        return
    name = os.environ.get("PYADR_CONV_PROVIDER", "auto").strip().lower() or "auto"
    _code(name, "PYADR_CONV_PROVIDER")
    _apply(name)


def set_conv_provider(name: str) -> None:
    """Provider of the exact float32 convolution: "auto", "builtin" or "onednn".

    "auto" uses oneDNN when its library loads, else the builtin kernels; "onednn" raises
    RuntimeError when oneDNN is unavailable (`pip install onednn-cpu-gomp`). Overrides
    PYADR_CONV_PROVIDER. float64 convolutions always run on the builtin kernels."""
    _code(name, "name")
    _apply(name)


def get_conv_provider() -> str:
    """What runs the exact float32 convolution now: "onednn" or "builtin" ("auto" resolved)."""
    ensure_configured()
    nat = _native()
    return "onednn" if nat.onednn_info()[0] and nat.get_conv_provider() != PROVIDERS["builtin"] else "builtin"


def describe() -> str:
    """One line for show_config: provider, library version and path, kernels that ran."""
    try:
        used = get_conv_provider()
    except (RuntimeError, ValueError) as exc:
        return f"error: {exc}"
    nat = _native()
    setting = {v: k for k, v in PROVIDERS.items()}[nat.get_conv_provider()]
    _, library, kernels = nat.onednn_info()
    if used == "onednn":
        text = f"onednn {library}"
        return text + (f"; kernels: {kernels}" if kernels else "; no convolution ran yet")
    if setting == "builtin":
        return "builtin (set_conv_provider / PYADR_CONV_PROVIDER)"
    return f"builtin (oneDNN unavailable: {_state['error'] or 'not loaded'}; {_INSTALL_HINT})"
