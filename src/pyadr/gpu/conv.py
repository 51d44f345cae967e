"""GPU convolution and linear layers, exact and deep-reuse (DESIGN.md "Semantics"), on CuPy arrays.

Shapes: x (B, C, H, W), w (M, C, kh, kw), rows n = (b, oh, ow), N = B*OH*OW, P = OH*OW,
K = C*kh*kw, nb = ceil(K / L) sub-matrices ("blocks"). Blocks are processed in groups of nbg so
that the sub-vector workspace S (nbg, N, L) stays under WORKSPACE_BYTES.

Exact path: im2col_kp (nimg, K, P) per chunk of images + one strided-batched cuBLAS GEMM
(cupy.matmul); backward: GEMMs + col2im in gather form. No host-device synchronisation.

Reuse forward, per block group:  im2col_blocks -> S (nbg, N, L)  ->  proj = S . planes (cuBLAS)
  -> keys (sign_keys / l2_keys)  ->  grouping: dense table + scan (sign, small H) or stable
  segmented argsort + boundaries + scan (otherwise)  ->  cluster ids, sorted member list `perm`,
  cluster starts `cstart`  ->  centroids = segment_sum(S) (members summed in row order)
  ->  Yc_j = centroids_j . Wm_j (cuBLAS, one call per block)  ->  gather_add into Y (N, M) = bias.
Reuse backward, per group: Gamma = segment_sum(dY); dWm_j = centroids_j^T Gamma_j;
  D_j = (Gamma_j / counts) Wm_j^T; col2im_clusters gathers dx from D. db = sum of dY rows.
ReuseConfig.exact: a product named there skips its reuse steps and is computed by the exact
  path's pieces (_exact_forward; _exact_grads: GEMM + col2im_kp for dx, im2col_kp of a kept copy
  of x + GEMM for dw), with the weights recovered from Wm.
No float atomics anywhere: same inputs, same device => bit-identical outputs.

Host-device synchronisations (all others are avoided):
  1. reuse forward, once per block group: the per-block cluster counts (and the l2 error flags,
     fetched in the same transfer) are needed on the host to size the centroid and Yc arrays, to
     slice the per-block GEMMs, and for ctx.stats. Unavoidable: array sizes depend on the data.
  2. hash="l2" with width=None: ReuseConfig.resolve reads mean(x**2) to set the bucket width.
  3. hash="l2", only if two different key tuples share a 64-bit digest (never seen in practice):
     a second read after re-sorting by the full tuples.
  Small host->device uploads at the start of a forward (planes, l2 offsets, the column
  permutation of the weights) are issued before any kernel of the call, so they wait for nothing.
The backward and the exact path never synchronise.
"""
from __future__ import annotations

import numpy as np

from .._checks import ORDER_CODES, check_backward, column_permutation, conv_geometry, float_array
from .._context import ReuseStats
from . import _kernels as _k
from ._context import GpuConv2dContext, GpuForwardState, GpuGroup

WORKSPACE_BYTES = 256 << 20   # bound of the largest temporary (im2col chunk, S of a block group)
DENSE_MAX_H = 16              # sign keys with H <= 16 may use a dense 2^H table per scope group


def _cp():
    import cupy
    return cupy


def _targ(dtype):
    return "float" if np.dtype(dtype) == np.float32 else "double"


def _array(a, name, ndim):
    cp = _cp()
    if not isinstance(a, cp.ndarray):
        raise TypeError(f"{name} must be a cupy.ndarray, got {type(a).__name__}")
    return cp.ascontiguousarray(float_array(a, name, ndim))


def _geometry(x, w, b, stride, padding, dilation, reuse):
    """Checked (b, geom, OH, OW) of a call: types here, values (and the output size) by the native
    core's params unit, as on the CPU path, so both raise the same errors."""
    b, geom = conv_geometry(x, w, b, stride, padding, dilation, reuse, _array)
    from .. import _native     # on first use, as in pyadr._api: importing pyadr.gpu stays light
    OH, OW = _native.output_shape(geom)
    return b, geom, OH, OW


# ---------------------------------------------------------------------------------------------
# Exact path
# ---------------------------------------------------------------------------------------------

def _col_chunks(geom, OH, OW, dtype, x=None):
    """Yields (b0, n, cols): cols (n, K, P) for images b0 .. b0+n-1 in one reused buffer of at most
    WORKSPACE_BYTES (a chunk's cols may be overwritten in place): the im2col of x ("chw" rows), or
    without x an uninitialised workspace (for the dcols of dx alone)."""
    cp = _cp()
    B, C, H, W, M, kh, kw = geom[:7]
    K, P, targ = C * kh * kw, OH * OW, _targ(dtype)
    g10 = (kh, kw, OH, OW) + geom[7:]
    nimg = max(1, min(B, WORKSPACE_BYTES // max(K * P * np.dtype(dtype).itemsize, 1)))
    cols = cp.empty((nimg, K, P), dtype=dtype)
    for b0 in range(0, B, nimg):
        n = min(nimg, B - b0)
        c = cols[:n]
        if x is not None:
            _k.launch("im2col_kp", targ, n * K * P, x[b0:b0 + n], c, n, C, H, W, *g10, C * H * W, H * W, W, 1)
        yield b0, n, c


def _exact_forward(x, w, b, geom, OH, OW):
    cp = _cp()
    B, C, H, W, M, kh, kw = geom[:7]
    K, P = C * kh * kw, OH * OW
    Wmat = w.reshape(M, K)                                  # (M, K), "chw" columns
    y = cp.empty((B, M, P), dtype=x.dtype)
    for b0, n, c in _col_chunks(geom, OH, OW, x.dtype, x):
        cp.matmul(Wmat, c, out=y[b0:b0 + n])                # (n, M, P)
    if b is not None:
        y += b[None, :, None]
    return y.reshape(B, M, OH, OW)


def _exact_grads(dy, x, w, geom, OH, OW, want_dx, want_dw):
    """Exact (dx (B, C, H, W), dw (M, C, kh, kw)) for dy (B, M, OH, OW), each None unless wanted;
    x is read for dw only. Shared by the exact backward and the exact products of a reuse one."""
    cp = _cp()
    B, C, H, W, M, kh, kw = geom[:7]
    K, P, dt, targ = C * kh * kw, OH * OW, dy.dtype, _targ(dy.dtype)
    g10 = (kh, kw, OH, OW) + geom[7:]
    dy3 = dy.reshape(B, M, P)
    WmatT = cp.ascontiguousarray(w.reshape(M, K).T) if want_dx else None   # (K, M)
    dWmat = cp.zeros((M, K), dtype=dt) if want_dw else None
    dx = cp.empty((B, C, H, W), dtype=dt) if want_dx else None
    for b0, n, c in _col_chunks(geom, OH, OW, dt, x if want_dw else None):
        if want_dw:
            dWmat += cp.matmul(dy3[b0:b0 + n], c.transpose(0, 2, 1)).sum(axis=0)   # (M, K)
        if want_dx:
            cp.matmul(WmatT, dy3[b0:b0 + n], out=c)                                 # dcols (n, K, P)
            _k.launch("col2im_kp", targ, n * C * H * W, c, dx[b0:b0 + n], n, C, H, W, *g10)
    return dx, (dWmat.reshape(M, C, kh, kw) if want_dw else None)


def _exact_backward(dy, ctx):
    B, M = ctx.geom[0], ctx.geom[4]
    OH, OW = ctx.y_shape[2:]
    db = dy.reshape(B, M, OH * OW).sum(axis=(0, 2)) if ctx.has_bias else None
    dx, dw = _exact_grads(dy, ctx._x, ctx._w, ctx.geom, OH, OW, True, True)
    return dx, dw, db


# ---------------------------------------------------------------------------------------------
# Reuse path
# ---------------------------------------------------------------------------------------------

def _segment_argsort(keys, g):
    """Flat positions sorted (stably) by key within each segment of g consecutive positions."""
    cp = _cp()
    local = cp.argsort(keys.reshape(-1, g), axis=-1)        # (nseg, g), stable
    return (local + (cp.arange(local.shape[0], dtype=np.int64) * g)[:, None]).ravel()


def _lexsort_tuples(q, g):
    """Fallback for l2 digest collisions: stable LSD sort by every tuple entry, then segment."""
    cp = _cp()
    total, H = q.shape
    perm = cp.arange(total, dtype=np.int64)
    for h in reversed(range(H)):
        perm = perm[cp.argsort(q[perm, h])]
    return perm[cp.argsort(perm // g)]


def _cluster_group(xs, strides, Pd, offs, width, cfg, geom, OH, OW, j0, nj, ids):
    """Hashes and clusters blocks j0 .. j0+nj-1; fills ids (nj, N); returns the group's state."""
    cp = _cp()
    B, C, H, W, M, kh, kw = geom[:7]
    L, Hh, targ, dt = cfg.L, cfg.H, _targ(xs.dtype), xs.dtype
    N = B * OH * OW
    g = OH * OW if cfg.scope == "input" else N
    G, total = N // g, nj * N
    S = cp.empty((nj, N, L), dtype=dt)
    _k.launch("im2col_blocks", targ, total * L, xs, S, j0, nj, L, B, C, H, W, kh, kw, OH, OW, *geom[7:],
              *strides, ORDER_CODES[cfg.order])
    proj = cp.matmul(S.reshape(total, L), Pd)               # (total, H)
    err = cp.zeros(1, dtype=np.int32)
    flag = None
    if cfg.hash == "sign":
        keys = cp.empty(total, dtype=np.uint64)
        _k.launch("sign_keys", targ, total, proj, keys, total, Hh)
        if Hh <= DENSE_MAX_H and (1 << Hh) <= 2 * g:
            table = cp.zeros((total // g) << Hh, dtype=np.int32)    # (segments, 2^H)
            _k.launch("dense_mark", "long long", total, keys, table, total, g, Hh)
            scan = cp.cumsum(table, dtype=np.int64)
            blk_end = scan[(G << Hh) - 1::G << Hh]                   # (nj,) clusters up to each block
        else:
            perm = _segment_argsort(keys, g)
            flag = cp.empty(total, dtype=np.int32)
            _k.launch("sign_boundaries", "long long", total, keys, perm, flag, total, g)
    else:
        q = cp.empty((total, Hh), dtype=np.int64)
        digest = cp.empty(total, dtype=np.uint64)
        _k.launch("l2_keys", targ, total, proj, offs, width, q, digest, err, total, Hh)
        perm = _segment_argsort(digest, g)
        flag = cp.empty(total, dtype=np.int32)
        _k.launch("l2_boundaries", "long long", total, q, digest, perm, flag, err, total, g, Hh, 1)
    if flag is not None:
        cid = cp.cumsum(flag, dtype=np.int64)
        blk_end = cid[N - 1::N]
    # --- synchronisation 1: cluster counts (and error flags) to the host -----------------------
    host = cp.concatenate([blk_end, err.astype(np.int64)]).get()
    if host[-1] & 1:
        raise ValueError("l2 hashing: a projection is not finite or too large for the bucket width (x contains "
                         "NaN/Inf, or width is too small)")
    if host[-1] & 2:   # digest collision: sort by the full tuples (synchronisation 3)
        perm = _lexsort_tuples(q, g)
        _k.launch("l2_boundaries", "long long", total, q, digest, perm, flag, err, total, g, Hh, 0)
        cid = cp.cumsum(flag, dtype=np.int64)
        blk_end = cid[N - 1::N]
        host = blk_end.get()
    ends = np.asarray(host[:nj], dtype=np.int64)
    nct = int(ends[-1])
    boff_host = np.concatenate([[0], ends[:-1]]).astype(np.int64)
    boff = cp.concatenate([cp.zeros(1, dtype=np.int64), blk_end[:-1]])
    if flag is None:    # dense path: ids from the scanned table, then the sorted member list
        gid = cp.empty(total, dtype=np.int64)
        counts = cp.zeros(nct, dtype=np.int32)
        _k.launch("dense_ids", "long long", total, keys, scan, boff, ids, gid, counts, total, N, g, Hh)
        perm = cp.argsort(gid)                                       # stable: members in row order
        cstart = cp.zeros(nct + 1, dtype=np.int64)
        cstart[1:] = cp.cumsum(counts, dtype=np.int64)
    else:
        cstart = cp.empty(nct + 1, dtype=np.int64)
        cstart[nct:] = total
        _k.launch("assign_ids", "long long", total, flag, cid, perm, boff, ids, cstart, total, N)
        counts = cp.diff(cstart).astype(np.int32)
    cent = cp.empty((nct, L), dtype=dt)
    _k.launch("segment_sum", targ, nct * L, S.reshape(total, L), perm, cstart, cent, nct, L, total, 1)
    return GpuGroup(j0=j0, nj=nj, perm=perm, cstart=cstart, counts=counts, cent=cent, boff=boff,
                    boff_host=boff_host, nc_host=np.diff(np.concatenate([[0], ends])))


def _reuse_forward(x, w, b, geom, OH, OW, cfg, ctx):
    cp = _cp()
    B, C, H, W, M, kh, kw = geom[:7]
    K, N, L, dt, targ = C * kh * kw, B * OH * OW, cfg.L, x.dtype, _targ(x.dtype)
    planes, offsets, width = cfg.resolve(K, x=x)            # l2 + width=None: synchronisation 2
    planes = np.ascontiguousarray(planes, dtype=dt)
    offsets = None if offsets is None else np.ascontiguousarray(offsets, dtype=dt)
    Pd = cp.asarray(planes)                                 # (L, H)
    offs = None if offsets is None else cp.asarray(offsets)
    colperm = cp.asarray(column_permutation(C, kh, kw, cfg.order))
    nb = -(-K // L)
    Wm = cp.zeros((nb * L, M), dtype=dt)                    # (nb*L, M), rows in `order`, zero-padded
    Wm[:K] = w.reshape(M, K)[:, colperm].T
    if cfg.order == "hwc" and C > 1 and H * W > 1:          # NHWC copy: coalesced sub-vector gathers
        xs, strides = cp.ascontiguousarray(x.transpose(0, 2, 3, 1)), (H * W * C, 1, W * C, C)
    else:
        xs, strides = x, (C * H * W, H * W, W, 1)
    nbg = max(1, min(nb, WORKSPACE_BYTES // (N * L * x.itemsize), (2 ** 31 - 1) // N))
    reuse_y = "forward" not in cfg.exact                    # else: clusters for dW / dX only
    if reuse_y:
        Y = cp.empty((N, M), dtype=dt)                      # rows (b, oh, ow)
        Y[...] = 0 if b is None else b
    ids = cp.empty((nb, N), dtype=np.int32)
    groups = []
    for j0 in range(0, nb, nbg):
        nj = min(nbg, nb - j0)
        grp = _cluster_group(xs, strides, Pd, offs, width, cfg, geom, OH, OW, j0, nj, ids[j0:j0 + nj])
        if reuse_y:
            Yc = cp.empty((grp.nclusters, M), dtype=dt)     # (nct, M)
            for jb in range(nj):
                (s, e), k0 = grp.cluster_range(jb), (j0 + jb) * L
                cp.matmul(grp.cent[s:e], Wm[k0:k0 + L], out=Yc[s:e])
            _k.launch("gather_add", targ, N * M, Yc, ids[j0:j0 + nj], grp.boff, Y, nj, N, M)
        groups.append(grp)
    if reuse_y:
        y = cp.ascontiguousarray(Y.reshape(B, OH * OW, M).transpose(0, 2, 1)).reshape(B, M, OH, OW)
    else:
        y = _exact_forward(x, w, b, geom, OH, OW)
    clusters = np.concatenate([grp.nc_host for grp in groups]).astype(np.int64)
    ctx._gpu = GpuForwardState(ids=ids, groups=groups, Wm=Wm, colperm=colperm, nblocks=nb, L=L, K=K,
                               order=ORDER_CODES[cfg.order], exact=cfg.exact,
                               x=x.copy() if "dw" in cfg.exact else None)
    ctx.planes, ctx.offsets, ctx.width = planes, offsets, width
    ctx.stats = ReuseStats(rc=float(np.mean(clusters / N)), clusters=clusters, rows=N, L=L,
                           nbytes=ctx._gpu.nbytes)
    return y


def _weights_of(rows, st, geom):
    """(K or more, M) rows in the forward's column order -> (M, C, kh, kw) (weights or dW)."""
    cp = _cp()
    M, C, kh, kw = geom[4], geom[1], geom[5], geom[6]
    out = cp.empty((M, st.K), dtype=rows.dtype)
    out[:, st.colperm] = rows[:st.K].T
    return out.reshape(M, C, kh, kw)


def _reuse_backward(dy, ctx):
    cp = _cp()
    st = ctx._gpu
    B, C, H, W, M, kh, kw = ctx.geom[:7]
    OH, OW = ctx.y_shape[2:]
    N, L, targ, dt = B * OH * OW, st.L, _targ(ctx.dtype), ctx.dtype
    dY = cp.ascontiguousarray(dy.reshape(B, M, OH * OW).transpose(0, 2, 1)).reshape(N, M)
    db = dY.sum(axis=0) if ctx.has_bias else None
    Wm = st.Wm
    reuse_dw, reuse_dx = "dw" not in st.exact, "dx" not in st.exact   # ReuseConfig.exact
    dWm = cp.zeros_like(Wm) if reuse_dw else None          # (nb*L, M)
    dx = cp.zeros((B, C, H, W), dtype=dt) if reuse_dx else None
    for grp in (st.groups if reuse_dw or reuse_dx else ()):
        nct, j0, nj = grp.nclusters, grp.j0, grp.nj
        gam = cp.empty((nct, M), dtype=dt)                  # Gamma: cluster sums of dY
        _k.launch("segment_sum", targ, nct * M, dY, grp.perm, grp.cstart, gam, nct, M, N, 0)
        if reuse_dx:
            gm = gam / grp.counts.astype(dt)[:, None]
            D = cp.empty((nct, L), dtype=dt)
        for jb in range(nj):
            (s, e), k0 = grp.cluster_range(jb), (j0 + jb) * L
            if reuse_dw:
                cp.matmul(grp.cent[s:e].T, gam[s:e], out=dWm[k0:k0 + L])
            if reuse_dx:
                cp.matmul(gm[s:e], Wm[k0:k0 + L].T, out=D[s:e])
        if reuse_dx:
            _k.launch("col2im_clusters", targ, dx.size, D, st.ids[j0:j0 + nj], grp.boff, dx, j0, nj, L,
                      B, C, H, W, kh, kw, OH, OW, *ctx.geom[7:], st.order)
    dw = _weights_of(dWm, st, ctx.geom) if reuse_dw else None
    if not (reuse_dw and reuse_dx):                         # the exact products, as the exact path
        dxe, dwe = _exact_grads(dy, st.x, _weights_of(Wm, st, ctx.geom), ctx.geom, OH, OW,
                                not reuse_dx, not reuse_dw)
        dx = dx if reuse_dx else dxe
        dw = dw if reuse_dw else dwe
    return dx, dw, db


# ---------------------------------------------------------------------------------------------
# Entry points (same contract as pyadr.conv2d_forward & co., CuPy in, CuPy out)
# ---------------------------------------------------------------------------------------------

def _forward(x, w, b, stride, padding, dilation, reuse, kind):
    b, geom, OH, OW = _geometry(x, w, b, stride, padding, dilation, reuse)
    ctx = GpuConv2dContext(kind, geom, x.dtype, (geom[0], geom[4], OH, OW), b is not None, reuse)
    with x.device:
        if reuse is None:
            ctx._x, ctx._w = x, w
            return _exact_forward(x, w, b, geom, OH, OW), ctx
        y = _reuse_forward(x, w, b, geom, OH, OW, reuse, ctx)
    return y, ctx


def _backward(dy, ctx, kind, fn_name):
    check_backward(dy, ctx, GpuConv2dContext, kind, f"gpu.{fn_name}")
    with dy.device:
        if ctx._gpu is None:
            return _exact_backward(dy, ctx)
        return _reuse_backward(dy, ctx)


def conv2d_forward(x, w, b=None, stride=1, padding=0, dilation=1, reuse=None):
    """pyadr.conv2d_forward on CuPy arrays: y (B, M, OH, OW) CuPy, ctx a GpuConv2dContext."""
    return _forward(_array(x, "x", 4), _array(w, "w", 4), b, stride, padding, dilation, reuse, "conv2d")


def conv2d_backward(dy, ctx):
    """(dx, dw, db) CuPy arrays; db is None when the forward had no bias."""
    return _backward(_array(dy, "dy", 4), ctx, "conv2d", "conv2d_forward")


def linear_forward(x, w, b=None, reuse=None):
    """y = x w^T + b on CuPy arrays; x (B, in), w (out, in); rows (samples) are clustered."""
    x, w = _array(x, "x", 2), _array(w, "w", 2)
    if w.shape[1] != x.shape[1]:
        raise ValueError(f"w must have shape (out_features, {x.shape[1]}) to match x, got {w.shape}")
    if reuse is None:                                       # plain GEMM, no im2col
        b, geom, _, _ = _geometry(x[:, :, None, None], w[:, :, None, None], b, 1, 0, 1, reuse)
        ctx = GpuConv2dContext("linear", geom, x.dtype, (x.shape[0], w.shape[0], 1, 1), b is not None, None)
        ctx._x, ctx._w = x, w
        with x.device:
            y = x @ w.T
            if b is not None:
                y += b
        return y, ctx
    y, ctx = _forward(x[:, :, None, None], w[:, :, None, None], b, 1, 0, 1, reuse, "linear")
    return y[:, :, 0, 0], ctx


def linear_backward(dy, ctx):
    """(dx (B, in), dw (out, in), db (out,) or None) as CuPy arrays."""
    dy = _array(dy, "dy", 2)
    if isinstance(ctx, GpuConv2dContext) and ctx.kind == "linear" and ctx._gpu is None:
        if dy.dtype != ctx.dtype or tuple(dy.shape) != tuple(ctx.y_shape[:2]):
            _backward(dy[:, :, None, None], ctx, "linear", "linear_forward")   # raises the right error
        with dy.device:
            return dy @ ctx._w, dy.T @ ctx._x, (dy.sum(axis=0) if ctx.has_bias else None)
    dx, dw, db = _backward(dy[:, :, None, None], ctx, "linear", "linear_forward")
    return dx[:, :, 0, 0], dw[:, :, 0, 0], db
