"""Data-aware hash planes: the top principal directions of a layer's sub-vectors.

ReuseConfig(planes=P) hashes every L-long sub-vector x of a layer's im2col rows by x . P[:, h]
(DESIGN.md, "Semantics"). Seeded random planes ignore the data; these point where the data
varies most, so H bits separate more of what matters (measured in docs/tuning.md, "Data-aware
planes"). Pipeline, each step a function:

  sample_subvectors(x, L, ...)  x (B, C, H, W) conv input (or (B, K) linear input)
                                 -> S (rows * ceil(K/L), L) float64: `rows` sampled rows of the
                                 virtual im2col matrix (columns in `order`), each cut into its
                                 sub-vectors, the shorter last one zero-padded (the engine uses the
                                 first rows of P for it, the same dot product). The im2col matrix
                                 itself is never built: the sample is gathered from the input.
  subvector_moments(x, L, ...)   -> Moments (count, sum, second moment S^T S, and sum(x**2), x.size
                                 for the l2 width): additive, so data-parallel ranks sum them.
  planes_from_moments(m, H)      -> PlaneFit: planes (L, H) orthonormal, the top-H eigenvectors of
                                 the second-moment matrix (centred=False) or of the covariance
                                 (centred=True), largest first; each column's sign fixed (its
                                 largest-magnitude entry positive) so the result is deterministic.
  principal_planes(x, L, H, ...) the three in one: the (L, H) array for ReuseConfig(planes=...).

For hash="l2" the automatic width (ReuseConfig.width=None) is width_scale * sigma with sigma the
RMS of a projection estimated for random Gaussian planes, sqrt(mean(x**2) * mean_h ||p_h||**2).
Principal directions project with a much larger RMS than that estimate says, so PlaneFit.width_factor
(= measured RMS of the projections / that estimate) multiplies width_scale to keep its meaning,
"width = width_scale x the RMS of the projections": ReuseConfig(planes=fit.planes, hash="l2",
width_scale=width_scale * fit.width_factor).
"""
from __future__ import annotations

import dataclasses
import math
import numbers

import numpy as np

from ._checks import column_permutation, pair
from ._config import ORDERS, native_limits

__all__ = ["Moments", "PlaneFit", "sample_subvectors", "subvector_moments", "planes_from_moments",
           "principal_planes", "DEFAULT_ROWS"]

DEFAULT_ROWS = 1024         # im2col rows sampled per call (conv2 of CifarNet, L=64: 25 600 sub-vectors)


@dataclasses.dataclass
class Moments:
    """Sums over sampled sub-vectors s (L,): count, total = sum s, outer = sum s s^T; and over the
    layer input's entries: x_sq_sum = sum x**2, x_size (for the l2 width estimate)."""
    count: float
    total: np.ndarray       # (L,)
    outer: np.ndarray       # (L, L)
    x_sq_sum: float
    x_size: float

    @property
    def L(self):
        return int(self.total.shape[0])

    def to_vector(self):
        """One flat float64 vector (count, total, outer, x_sq_sum, x_size): sum it over ranks."""
        return np.concatenate([[self.count], self.total, self.outer.ravel(), [self.x_sq_sum, self.x_size]])

    @classmethod
    def from_vector(cls, v, L):
        v = np.asarray(v, dtype=np.float64)
        if v.shape != (L * L + L + 3,):
            raise ValueError(f"a Moments vector for L={L} has {L * L + L + 3} values, got shape {v.shape}")
        return cls(float(v[0]), v[1:1 + L].copy(), v[1 + L:1 + L + L * L].reshape(L, L).copy(),
                   float(v[-2]), float(v[-1]))


@dataclasses.dataclass
class PlaneFit:
    planes: np.ndarray          # (L, H) orthonormal columns, largest variance first
    variances: np.ndarray       # (H,) eigenvalues per sub-vector (of the matrix the planes came from)
    rms: float                  # RMS of the projections s . p_h over the sample and h (uncentred)
    width_factor: float         # rms / the engine's automatic-width estimate of it (see module doc)
    centred: bool


def _int(v, name, lo, hi=None):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    v = int(v)
    if v < lo or (hi is not None and v > hi):
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {v}" if hi is not None
                         else f"{name} must be >= {lo}, got {v}")
    return v


def _host(x):
    """A NumPy view/copy of x (NumPy, CuPy via .get(), or any array-like); float64 not forced."""
    if hasattr(x, "__cuda_array_interface__") and hasattr(x, "get"):
        x = x.get()
    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise TypeError(f"x must be a float array (the layer input), got dtype {x.dtype}")
    return x


def _geometry(x, kernel_size, stride, padding, dilation):
    """(B, C, kh, kw, (sh, sw), (ph, pw), (dh, dw), OH, OW) of a conv input, checked."""
    if x.ndim != 4:
        raise ValueError(f"x must be a (B, C, H, W) convolution input when kernel_size is given, got shape {x.shape}")
    B, C, Hh, W = x.shape
    kh, kw = pair(kernel_size, "kernel_size")
    s, p, d = pair(stride, "stride"), pair(padding, "padding"), pair(dilation, "dilation")
    if min(kh, kw, *s, *d) < 1 or min(p) < 0:
        raise ValueError(f"kernel_size, stride, dilation must be >= 1 and padding >= 0, got kernel_size "
                         f"{(kh, kw)}, stride {s}, padding {p}, dilation {d}")
    OH = (Hh + 2 * p[0] - d[0] * (kh - 1) - 1) // s[0] + 1
    OW = (W + 2 * p[1] - d[1] * (kw - 1) - 1) // s[1] + 1
    if OH < 1 or OW < 1:
        raise ValueError(f"the kernel {(kh, kw)} (dilation {d}) does not fit the padded input {x.shape[2:]}")
    return B, C, kh, kw, s, p, d, OH, OW


def _sampled_rows(x, kernel_size, stride, padding, dilation, order, rows, seed):
    """(n, K) float64: n sampled rows of the virtual im2col matrix (columns in `order`)."""
    rng = np.random.default_rng(seed)
    if kernel_size is None:                                   # linear layer: rows are samples
        if x.ndim != 2:
            raise ValueError(f"x must be a (B, K) linear-layer input when kernel_size is None, got shape {x.shape}")
        N = x.shape[0]
        idx = np.arange(N) if N <= rows else np.sort(rng.choice(N, rows, replace=False))
        return x[idx].astype(np.float64)
    B, C, kh, kw, s, p, d, OH, OW = _geometry(x, kernel_size, stride, padding, dilation)
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))
    Hp, Wp = xp.shape[2], xp.shape[3]
    N = B * OH * OW
    n = np.arange(N) if N <= rows else np.sort(rng.choice(N, rows, replace=False))
    b, rem = np.divmod(n, OH * OW)
    oh, ow = np.divmod(rem, OW)
    base = b * (C * Hp * Wp) + oh * s[0] * Wp + ow * s[1]                 # (n,)
    c, i, j = np.unravel_index(np.arange(C * kh * kw), (C, kh, kw))       # chw flattening
    offset = (c * (Hp * Wp) + i * d[0] * Wp + j * d[1])[column_permutation(C, kh, kw, order)]   # (K,) ordered
    return xp.reshape(-1)[base[:, None] + offset[None, :]].astype(np.float64)


def sample_subvectors(x, L, *, kernel_size=None, stride=1, padding=0, dilation=1, order="hwc",
                      rows=DEFAULT_ROWS, seed=0):
    """(rows' * ceil(K/L), L) float64 sub-vectors of `rows` im2col rows drawn without replacement
    (all rows when there are fewer), seeded; the shorter last sub-vector of a row zero-padded."""
    x = _host(x)
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    rows = _int(rows, "rows", 1)
    if not np.all(np.isfinite(x)):
        raise ValueError("x (the layer input) must be finite")
    X = _sampled_rows(x, kernel_size, stride, padding, dilation, order, rows, seed)
    K = X.shape[1]
    L = _int(L, "L", 1, K)
    blocks = -(-K // L)
    if blocks * L != K:
        X = np.pad(X, ((0, 0), (0, blocks * L - K)))
    return X.reshape(-1, L)


def subvector_moments(x, L, **sampling):
    """Moments of the sampled sub-vectors of x (keywords as sample_subvectors)."""
    S = sample_subvectors(x, L, **sampling)
    xh = _host(x)
    flat = xh.reshape(-1).astype(np.float64)
    return Moments(float(len(S)), S.sum(axis=0), S.T @ S, float(flat @ flat), float(flat.size))


def planes_from_moments(m, H, *, centred=False):
    """PlaneFit of the top-H principal directions of Moments m (see the module doc)."""
    if not isinstance(m, Moments):
        raise TypeError(f"m must be a pyadr.planes.Moments, got {type(m).__name__}")
    L = m.L
    max_h = native_limits()["max_hash_bits"]
    H = _int(H, "H", 1, min(L, max_h))
    if m.count < 1:
        raise ValueError("the moments hold no sub-vector")
    second = m.outer / m.count                                   # E[s s^T]
    mat = second - np.outer(m.total, m.total) / m.count ** 2 if centred else second
    mat = (mat + mat.T) / 2
    vals, vecs = np.linalg.eigh(mat)                             # ascending
    order = np.argsort(-vals, kind="stable")[:H]
    P = vecs[:, order]
    pivot = np.argmax(np.abs(P), axis=0)
    P = P * np.where(P[pivot, np.arange(H)] < 0, -1.0, 1.0)
    P = np.ascontiguousarray(P)
    rms = math.sqrt(max(float(np.mean(np.einsum("lh,lk,kh->h", P, second, P))), 0.0))
    ms = m.x_sq_sum / max(m.x_size, 1.0)
    estimate = math.sqrt(ms * float(np.mean(np.sum(P * P, axis=0))))
    factor = rms / estimate if estimate > 0 and rms > 0 else 1.0
    return PlaneFit(P, np.maximum(vals[order], 0.0), rms, factor, bool(centred))


def principal_planes(x, L, H, *, kernel_size=None, stride=1, padding=0, dilation=1, order="hwc",
                     centred=False, rows=DEFAULT_ROWS, seed=0, fit=False):
    """(L, H) float64 orthonormal planes for ReuseConfig(planes=...): the top-H principal directions
    of the layer's L-long sub-vectors, from `rows` sampled im2col rows of its input x. x is the
    convolution input (B, C, H, W) with the layer's kernel_size, stride, padding, dilation and the
    config's `order`, or a linear layer's (B, K) input with kernel_size=None. fit=True returns the
    PlaneFit (planes, variances, rms, width_factor) instead of the array."""
    m = subvector_moments(x, L, kernel_size=kernel_size, stride=stride, padding=padding,
                          dilation=dilation, order=order, rows=rows, seed=seed)
    result = planes_from_moments(m, H, centred=centred)
    return result if fit else result.planes
