"""ReuseConfig: how a layer groups its neuron sub-vectors (see DESIGN.md, "Semantics").

A config is layer-independent; `resolve(K, x)` turns it into the concrete hashing parameters
(planes, offsets, width) for one call. Planes and offsets are drawn from `seed` with NumPy's
PCG64 so that CPU, GPU and reference see the same numbers.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional

import numpy as np

ORDERS = ("hwc", "chw")
HASHES = ("sign", "l2")
SCOPES = ("batch", "input")
PRODUCTS = ("forward", "dw", "dx")   # what a reusing layer computes: y, dL/dw, dL/dx
_LIMITS = None


def native_limits() -> dict:
    """The native core's limits (max_hash_bits, max_rows_per_call, ...), defined once in
    native/include/pyadr/params.hpp. pyadr._native is imported on first use, not by `import pyadr`."""
    global _LIMITS
    if _LIMITS is None:
        from . import _native
        _LIMITS = dict(_native.limits())
    return _LIMITS


def __getattr__(name):
    if name == "MAX_H":  # the largest H, from the native core
        return native_limits()["max_hash_bits"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclasses.dataclass(frozen=True, eq=False)
class ReuseConfig:
    """Deep-reuse parameters of one layer.

    L      sub-vector length (1 <= L <= K of the layer).
    H      number of hash functions (hyperplanes), 1 <= H <= 64 (the native core's limit).
    scope  "batch" (cluster all rows of the batch together) or "input" (each image alone).
    order  "hwc" (kernel row, kernel column, channel; default) or "chw" (PyTorch's flattening).
    hash   "sign" (bit h = [x . p_h > 0]) or "l2" (q_h = floor((x . p_h + o_h) / width)).
    seed   seeds the planes (standard normal, shape (L, H)) and the l2 offsets.
    planes optional (L, H) array; when given, L and H are taken from its shape.
    width  l2 only: bucket width. None: width_scale * sigma, where sigma is the RMS of a
           projection, estimated as sqrt(mean(x**2) * mean_h ||planes[:, h]||**2).
    offsets l2 only: (H,) array in [0, width); needs an explicit width. None: seeded uniform.
    exact  which of the layer's three products ignore the clusters and are computed exactly:
           a subset of ("forward", "dw", "dx"), as a tuple or a comma-separated string
           ("dx", "dw,dx"). Default () reuses all three. exact="dx" keeps the reused forward and
           dW but computes dX = col2im(dY . W^T) with one full GEMM: at low rc most of the
           accuracy reuse loses comes from the reused dX (DESIGN.md, "Which gradients reuse").
           Naming all three is rejected: that is the exact convolution (reuse=None).
    """

    L: int = 25
    H: int = 10
    scope: str = "batch"
    order: str = "hwc"
    hash: str = "sign"
    seed: int = 0
    planes: Optional[np.ndarray] = None
    width: Optional[float] = None
    width_scale: float = 1.0
    offsets: Optional[np.ndarray] = None
    exact: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "exact", _products(self.exact))
        if self.planes is not None:
            planes = np.array(self.planes, dtype=np.float64, copy=True)
            if planes.ndim != 2:
                raise ValueError(f"planes must be a 2-D (L, H) array, got shape {planes.shape}")
            if not np.all(np.isfinite(planes)):
                raise ValueError("planes must be finite")
            planes.setflags(write=False)
            object.__setattr__(self, "planes", planes)
            object.__setattr__(self, "L", int(planes.shape[0]))
            object.__setattr__(self, "H", int(planes.shape[1]))
        for name in ("L", "H", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"ReuseConfig.{name} must be an int, got {type(v).__name__}")
            object.__setattr__(self, name, int(v))
        if self.L < 1:
            raise ValueError(f"ReuseConfig.L must be >= 1, got {self.L}")
        max_h = native_limits()["max_hash_bits"]
        if not 1 <= self.H <= max_h:
            raise ValueError(f"ReuseConfig.H must be in [1, {max_h}], got {self.H}")
        for name, allowed in (("scope", SCOPES), ("order", ORDERS), ("hash", HASHES)):
            v = getattr(self, name)
            if v not in allowed:
                raise ValueError(f"ReuseConfig.{name} must be one of {allowed}, got {v!r}")
        if self.width is not None:
            w = float(self.width)
            if not (math.isfinite(w) and w > 0):
                raise ValueError(f"ReuseConfig.width must be a finite float > 0, got {self.width!r}")
            object.__setattr__(self, "width", w)
        ws = float(self.width_scale)
        if not (math.isfinite(ws) and ws > 0):
            raise ValueError(f"ReuseConfig.width_scale must be a finite float > 0, got {self.width_scale!r}")
        object.__setattr__(self, "width_scale", ws)
        if self.offsets is not None:
            if self.hash != "l2":
                raise ValueError("ReuseConfig.offsets is only used with hash='l2'")
            if self.width is None:
                raise ValueError("ReuseConfig.offsets needs an explicit width (offsets lie in [0, width))")
            off = np.array(self.offsets, dtype=np.float64, copy=True)
            if off.shape != (self.H,):
                raise ValueError(f"ReuseConfig.offsets must have shape ({self.H},), got {off.shape}")
            if not np.all((off >= 0) & (off < self.width)):
                raise ValueError("ReuseConfig.offsets must lie in [0, width)")
            off.setflags(write=False)
            object.__setattr__(self, "offsets", off)

    # -- derived parameters -------------------------------------------------------------------
    def _draw(self):
        rng = np.random.default_rng(self.seed)
        planes = rng.standard_normal((self.L, self.H))
        unit_offsets = rng.random(self.H)
        return planes, unit_offsets

    def resolved_planes(self) -> np.ndarray:
        """The (L, H) float64 hyperplanes this config uses."""
        if self.planes is not None:
            return self.planes
        return self._draw()[0]

    def resolve(self, K: int, x=None, mean_square: Optional[float] = None):
        """Concrete (planes, offsets, width) for a layer with row length K.

        `mean_square` (mean of x**2) is needed only for hash='l2' with width=None; when it is
        not given it is computed from `x` (NumPy or CuPy; the latter synchronises once).
        """
        if self.L > K:
            raise ValueError(f"ReuseConfig.L must be <= K = {K} (C*kh*kw or in_features) of this layer, "
                             f"got L={self.L}")
        planes = self.resolved_planes()
        if self.hash == "sign":
            return planes, None, None
        if self.width is not None:
            width = self.width
        else:
            if mean_square is None:
                if x is None:
                    raise ValueError("an automatic l2 width needs the layer input")
                flat = x.reshape(-1)
                mean_square = float((flat @ flat)) / max(flat.size, 1)
            sigma = math.sqrt(max(mean_square, 0.0) * float(np.mean(np.sum(planes * planes, axis=0))))
            width = self.width_scale * sigma
            if not (math.isfinite(width) and width > 0):
                width = self.width_scale  # all-zero input: any width groups it into one bucket
        if self.offsets is not None:
            offsets = self.offsets
        else:
            offsets = self._draw()[1] * width
        return planes, np.asarray(offsets, dtype=np.float64), float(width)

    @property
    def reused(self) -> tuple:
        """The products that use the clusters: those of ("forward", "dw", "dx") not in `exact`."""
        return tuple(p for p in PRODUCTS if p not in self.exact)

    def replace(self, **changes) -> "ReuseConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["exact"] = list(self.exact)
        for k in ("planes", "offsets"):
            if d[k] is not None:
                d[k] = np.asarray(d[k]).tolist()
        return d

    def __repr__(self):
        extra = ""
        if self.hash == "l2":
            extra = f", width={self.width if self.width is not None else f'auto*{self.width_scale:g}'}"
        planes = ", planes=<given>" if self.planes is not None else ""
        exact = f", exact={','.join(self.exact)!r}" if self.exact else ""
        return (f"ReuseConfig(L={self.L}, H={self.H}, scope={self.scope!r}, order={self.order!r}, "
                f"hash={self.hash!r}, seed={self.seed}{extra}{planes}{exact})")

    def __eq__(self, other):
        if not isinstance(other, ReuseConfig):
            return NotImplemented
        a, b = self.to_dict(), other.to_dict()
        return a == b

    def __hash__(self):
        return hash(repr(self))


def _products(value) -> tuple:
    """ReuseConfig.exact: a comma-separated string or an iterable of names of PRODUCTS -> a tuple
    in PRODUCTS order (duplicates merged); not all three."""
    what = f"ReuseConfig.exact must name products among {PRODUCTS} (a tuple or a comma-separated string)"
    if isinstance(value, str):
        names = [v.strip() for v in value.split(",") if v.strip()]
    else:
        try:
            names = list(value)
        except TypeError:
            raise TypeError(f"{what}, got {type(value).__name__}") from None
    for n in names:
        if not isinstance(n, str):
            raise TypeError(f"{what}, got an element of type {type(n).__name__}: {n!r}")
        if n not in PRODUCTS:
            raise ValueError(f"{what}, got {n!r}")
    out = tuple(p for p in PRODUCTS if p in names)
    if len(out) == len(PRODUCTS):
        raise ValueError("ReuseConfig.exact must not name all of forward, dw and dx: a layer that reuses "
                         "nothing is the exact convolution (pass reuse=None)")
    return out
