"""Slow, obviously correct NumPy reference of every pyadr kernel (DESIGN.md, "Semantics").

Nothing here is optimised: loops and dense matrices spell out the definitions so that the native
CPU engine and the GPU kernels can be tested against them. Shapes are written in comments:
  x (B, C, H, W), w (M, C, kh, kw), rows n = (b, oh, ow), N = B*OH*OW, K = C*kh*kw,
  X (N, K) im2col matrix with columns in `order`, Wm (K, M) weights flattened in the same order.
"""
from __future__ import annotations

import math

import numpy as np

from ._checks import column_permutation
from ._config import ReuseConfig


def _pair(v, name):
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{name} must be an int or a pair, got {v!r}")
        return int(v[0]), int(v[1])
    return int(v), int(v)


def output_size(H, W, kh, kw, stride=1, padding=0, dilation=1):
    sh, sw = _pair(stride, "stride")
    ph, pw = _pair(padding, "padding")
    dh, dw = _pair(dilation, "dilation")
    OH = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    OW = (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    return OH, OW


def im2col(x, kh, kw, stride=1, padding=0, dilation=1, order="hwc"):
    """(B, C, H, W) -> X (N, K), rows (b, oh, ow), columns in `order`."""
    B, C, H, W = x.shape
    sh, sw = _pair(stride, "stride")
    ph, pw = _pair(padding, "padding")
    dh, dw = _pair(dilation, "dilation")
    OH, OW = output_size(H, W, kh, kw, stride, padding, dilation)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = np.zeros((B, OH, OW, C, kh, kw), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i * dh: i * dh + sh * (OH - 1) + 1: sh, j * dw: j * dw + sw * (OW - 1) + 1: sw]
            cols[:, :, :, :, i, j] = patch.transpose(0, 2, 3, 1)
    X = cols.reshape(B * OH * OW, C * kh * kw)
    return X[:, column_permutation(C, kh, kw, order)]


def col2im(X, x_shape, kh, kw, stride=1, padding=0, dilation=1, order="hwc"):
    """Adjoint of im2col: X (N, K) -> dx (B, C, H, W), overlapping entries summed."""
    B, C, H, W = x_shape
    sh, sw = _pair(stride, "stride")
    ph, pw = _pair(padding, "padding")
    dh, dw = _pair(dilation, "dilation")
    OH, OW = output_size(H, W, kh, kw, stride, padding, dilation)
    Xc = np.empty_like(X)
    Xc[:, column_permutation(C, kh, kw, order)] = X
    cols = Xc.reshape(B, OH, OW, C, kh, kw)
    xp = np.zeros((B, C, H + 2 * ph, W + 2 * pw), dtype=X.dtype)
    for i in range(kh):
        for j in range(kw):
            xp[:, :, i * dh: i * dh + sh * (OH - 1) + 1: sh, j * dw: j * dw + sw * (OW - 1) + 1: sw] += \
                cols[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    return xp[:, :, ph: ph + H, pw: pw + W]


def weight_matrix(w, order="hwc"):
    """(M, C, kh, kw) -> Wm (K, M) with rows in `order`."""
    M, C, kh, kw = w.shape
    return w.reshape(M, -1)[:, column_permutation(C, kh, kw, order)].T.copy()


def weight_from_matrix(Wm, w_shape, order="hwc"):
    """Inverse of weight_matrix: Wm (K, M) -> (M, C, kh, kw)."""
    M, C, kh, kw = w_shape
    out = np.empty((M, C * kh * kw), dtype=Wm.dtype)
    out[:, column_permutation(C, kh, kw, order)] = Wm.T
    return out.reshape(w_shape)


def blocks(K, L):
    """Sub-matrix column ranges [jL, min((j+1)L, K))."""
    return [(s, min(s + L, K)) for s in range(0, K, L)]


def lsh_keys(S, planes, hash="sign", offsets=None, width=None):
    """Keys of sub-vectors S (R, Lj) under planes (L, H) (a shorter block uses the first rows).

    sign: (R,) uint64 codes, bit h = [S . planes[:, h] > 0].
    l2:   (R, H) int64, q_h = floor((S . planes[:, h] + offsets[h]) / width).
    The projection is computed in S's dtype.
    """
    dt = S.dtype
    P = np.asarray(planes)[: S.shape[1]].astype(dt)
    proj = np.zeros((S.shape[0], P.shape[1]), dtype=dt)
    for k in range(S.shape[1]):          # sequential sum over k, as the native kernels do
        proj += S[:, k:k + 1] * P[k]
    if hash == "sign":
        bits = (proj > 0).astype(np.uint64)
        return (bits << np.arange(P.shape[1], dtype=np.uint64)).sum(axis=1, dtype=np.uint64)
    if hash == "l2":
        off = np.asarray(offsets).astype(dt)
        return np.floor((proj + off) / dt.type(width)).astype(np.int64)
    raise ValueError(f"hash must be 'sign' or 'l2', got {hash!r}")


def cluster_ids(keys):
    """Cluster id per row, numbered by first occurrence; returns (ids (R,) int64, counts)."""
    seen = {}
    ids = np.empty(len(keys), dtype=np.int64)
    for r, k in enumerate(keys):
        key = k.tobytes() if isinstance(k, np.ndarray) else int(k)
        ids[r] = seen.setdefault(key, len(seen))
    counts = np.bincount(ids, minlength=len(seen)) if len(keys) else np.zeros(0, np.int64)
    return ids, counts


def reuse_forward_rows(X, Wm, b, L, planes, hash="sign", offsets=None, width=None,
                       group_size=None):
    """Deep-reuse product of X (N, K) and Wm (K, M).

    group_size: rows clustered together (None: all N, "batch" scope; OH*OW: "input" scope).
    Returns Y (N, M) and a state dict with per-block ids (N,), counts and centroids (nc, Lj).
    """
    N, K = X.shape
    M = Wm.shape[1]
    g = N if group_size is None else group_size
    Y = np.zeros((N, M), dtype=X.dtype)
    if b is not None:
        Y += b
    state = {"ids": [], "counts": [], "centroids": [], "blocks": blocks(K, L), "N": N}
    for (s, e) in state["blocks"]:
        S = X[:, s:e]
        ids = np.empty(N, dtype=np.int64)
        counts, offset = [], 0
        for g0 in range(0, N, max(g, 1)):
            keys = lsh_keys(S[g0:g0 + g], planes, hash, offsets, width)
            gid, gcnt = cluster_ids(keys)
            ids[g0:g0 + g] = gid + offset
            offset += len(gcnt)
            counts.append(gcnt)
        counts = np.concatenate(counts) if counts else np.zeros(0, np.int64)
        cent = np.zeros((len(counts), e - s), dtype=X.dtype)
        for n in range(N):
            cent[ids[n]] += S[n]
        cent /= counts[:, None].astype(X.dtype)
        Y += (cent @ Wm[s:e])[ids]
        state["ids"].append(ids)
        state["counts"].append(counts)
        state["centroids"].append(cent)
    return Y, state


def reuse_backward_rows(dY, state, Wm):
    """Exact derivative of reuse_forward_rows with clusters held fixed.

    Gamma_j(c) = sum_{n in c} dY[n];  dWm[block j] = centroids_j^T Gamma_j;
    dX[n, block j] = Gamma_j(c_j(n)) / |c| . Wm[block j]^T;  db = sum_n dY[n].
    """
    N, M = dY.shape
    K = Wm.shape[0]
    dX = np.zeros((N, K), dtype=dY.dtype)
    dWm = np.zeros_like(Wm)
    for (s, e), ids, counts, cent in zip(state["blocks"], state["ids"], state["counts"], state["centroids"]):
        gamma = np.zeros((len(counts), M), dtype=dY.dtype)
        np.add.at(gamma, ids, dY)
        dWm[s:e] = cent.T @ gamma
        dX[:, s:e] = ((gamma / counts[:, None].astype(dY.dtype)) @ Wm[s:e].T)[ids]
    return dX, dWm, dY.sum(axis=0)


def remaining_ratio(state, group_size=None):
    """rc = mean over blocks of clusters / rows clustered together."""
    N = state["N"]
    return float(np.mean([len(c) / N for c in state["counts"]])) if N else 1.0


# --------------------------------------------------------------------------------------------
# Layer-level reference: same call shapes as the public API, results as plain dicts.
# --------------------------------------------------------------------------------------------

def conv2d_forward(x, w, b=None, stride=1, padding=0, dilation=1, reuse=None):
    """Reference conv2d. reuse: None or ReuseConfig. Returns (y (B, M, OH, OW), ctx dict).

    With reuse, the products named in reuse.exact are computed as without reuse (the clusters
    are formed all the same, for the products that use them)."""
    B, C, H, W = x.shape
    M, _, kh, kw = w.shape
    OH, OW = output_size(H, W, kh, kw, stride, padding, dilation)
    order = reuse.order if reuse is not None else "chw"
    X = im2col(x, kh, kw, stride, padding, dilation, order)
    Wm = weight_matrix(w, order)
    ctx = {"x_shape": x.shape, "w_shape": w.shape, "geom": (kh, kw, stride, padding, dilation),
           "order": order, "X": X, "Wm": Wm, "has_bias": b is not None}
    if reuse is None:
        Y = X @ Wm + (b if b is not None else 0)
        ctx["state"] = None
    else:
        planes, offsets, width = reuse.resolve(X.shape[1], x=x)
        g = OH * OW if reuse.scope == "input" else None
        Y, state = reuse_forward_rows(X, Wm, b, reuse.L, planes, reuse.hash, offsets, width, g)
        if "forward" in reuse.exact:     # clusters formed (dW, dX use them), output exact
            Y = X @ Wm + (b if b is not None else 0)
        ctx.update(state=state, planes=planes, offsets=offsets, width=width,
                   rc=remaining_ratio(state))
    ctx["exact"] = reuse.exact if reuse is not None else ("forward", "dw", "dx")
    y = Y.reshape(B, OH, OW, M).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(y.astype(x.dtype, copy=False)), ctx


def conv2d_backward(dy, ctx):
    """Reference conv2d backward: (dx, dw, db); db is None when the forward had no bias."""
    B, M, OH, OW = dy.shape
    dY = dy.transpose(0, 2, 3, 1).reshape(-1, M)
    kh, kw, stride, padding, dilation = ctx["geom"]
    if ctx["state"] is None:
        dX, dWm, db = dY @ ctx["Wm"].T, ctx["X"].T @ dY, dY.sum(axis=0)
    else:
        dX, dWm, db = reuse_backward_rows(dY, ctx["state"], ctx["Wm"])
        if "dx" in ctx["exact"]:         # ReuseConfig.exact: this gradient ignores the clusters
            dX = dY @ ctx["Wm"].T
        if "dw" in ctx["exact"]:
            dWm = ctx["X"].T @ dY
    dx = col2im(dX, ctx["x_shape"], kh, kw, stride, padding, dilation, ctx["order"])
    dw = weight_from_matrix(dWm, ctx["w_shape"], ctx["order"])
    return dx, dw, (db if ctx["has_bias"] else None)


def linear_forward(x, w, b=None, reuse=None):
    """Reference linear layer: x (B, in), w (out, in) -> y (B, out); rows are samples."""
    y, ctx = conv2d_forward(x[:, :, None, None], w[:, :, None, None], b, reuse=reuse)
    return y[:, :, 0, 0], ctx


def linear_backward(dy, ctx):
    dx, dw, db = conv2d_backward(dy[:, :, None, None], ctx)
    return dx[:, :, 0, 0], dw[:, :, 0, 0], db


def naive_conv2d(x, w, b=None, stride=1, padding=0, dilation=1):
    """Direct 7-loop convolution in float64, independent of im2col (for testing the tests)."""
    B, C, H, W = x.shape
    M, _, kh, kw = w.shape
    sh, sw = _pair(stride, "stride")
    ph, pw = _pair(padding, "padding")
    dh, dw = _pair(dilation, "dilation")
    OH, OW = output_size(H, W, kh, kw, stride, padding, dilation)
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    y = np.zeros((B, M, OH, OW))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i * dh: i * dh + sh * (OH - 1) + 1: sh, j * dw: j * dw + sw * (OW - 1) + 1: sw]
            y += np.einsum("bchw,mc->bmhw", patch, w[:, :, i, j].astype(np.float64))
    if b is not None:
        y += np.asarray(b, np.float64)[None, :, None, None]
    return y


__all__ = [n for n in dir() if not n.startswith("_") and n not in ("annotations", "math", "np")]
