"""Deep-reuse convolution against the NumPy reference, and its exact limits, on every backend
(tests/_backends.py: cpu, cuda, emulated).

Partitions are compared bit for bit, so the data are exactly representable (see _util.py);
cluster ids are compared as partitions (first-occurrence numbering, _util.block_ids).
"""
import numpy as np
import pytest

import pyadr
from pyadr import reference as ref

from _util import (DTYPES, assert_close, block_ids, check_conv_vs_reference, exact_cfg, int_data, subvectors)

ORDERS = ("hwc", "chw")
HASHES = ("sign", "l2")
SCOPES = ("batch", "input")

# (B, C, H, W, M, kh, kw, stride, padding, dilation, L, nhash)
CASES = {
    "L_not_dividing_K": (2, 3, 6, 6, 4, 3, 3, 1, 1, 1, 5, 8),            # K=27, last block 2 long
    "hwc_L_divides_C": (2, 8, 7, 7, 5, 3, 3, 2, 1, 1, 4, 12),           # hwc fast path (L | C)
    "L_equals_C_dilated": (2, 8, 8, 7, 3, 2, 3, (1, 2), (0, 1), (2, 1), 8, 64),
    "L1_H1": (2, 2, 5, 5, 3, 2, 2, 1, 0, 1, 1, 1),
    "L_equals_K": (3, 2, 5, 6, 4, 3, 2, 1, 1, 1, 12, 16),
    "batch1_H17": (1, 4, 5, 5, 2, 3, 1, 1, 2, 1, 2, 17),
    "strided_generic": (2, 3, 9, 8, 6, 3, 3, (2, 3), (2, 1), (1, 2), 4, 33),
    "one_by_one": (3, 6, 4, 4, 5, 1, 1, 1, 0, 1, 3, 10),
    "long_rows_many_tiles": (2, 16, 12, 12, 8, 3, 3, 1, 1, 1, 16, 20),  # N=288 > tile, hwc fast path
    "small_H_many_rows": (2, 3, 8, 8, 4, 3, 3, 1, 1, 1, 9, 4),         # 2^H <= 2 rows: GPU dense table
    # stride 1, hwc, L | C, scope batch: centroid sums by sliding windows (centroid_windows.cpp)
    "windows_two_slices_dilated": (3, 8, 9, 7, 4, 3, 5, 1, 2, (2, 1), 4, 12),
    "windows_disjoint": (2, 4, 5, 6, 3, 3, 3, 1, 1, 3, 4, 10),          # dilation 3 >= OH, OW: no overlap
    "windows_wide_L": (2, 48, 5, 4, 3, 2, 3, 1, 1, 1, 48, 9),           # L = 48: columns split over threads
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hash_", HASHES)
def test_window_centroid_sums_do_not_depend_on_threads(rng, hash_, dtype):
    """The sliding-window sums (CPU, stride 1, hwc, L | C, scope batch) split slices or columns
    over the threads so that every sum is taken in one order: 1 and 2 threads, same bits."""
    x = np.maximum(rng.standard_normal((4, 32, 9, 9)), 0).astype(dtype)   # real-valued, ReLU-like
    w = rng.standard_normal((6, 32, 3, 3)).astype(dtype)
    cfg = pyadr.ReuseConfig(L=32, H=6, hash=hash_, seed=3)
    dy = rng.standard_normal((4, 6, 9, 9)).astype(dtype)
    outs, before = [], pyadr.get_num_threads()
    try:
        for nt in (1, 2):
            pyadr.set_num_threads(nt)
            y, ctx = pyadr.conv2d_forward(x, w, None, padding=1, reuse=cfg)
            outs.append([y, *[ctx.centroids(j) for j in range(ctx.stats.blocks)],
                         *pyadr.conv2d_backward(dy, ctx)[:2]])
    finally:
        pyadr.set_num_threads(before)
    assert 0.05 < ctx.stats.rc < 0.95          # clusters with several members: sums are exercised
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)


def _conv(be, x, w, b=None, reuse=None, **geom):
    """pyadr.conv2d_forward on backend be from NumPy inputs: (y NumPy, ctx)."""
    y, ctx = pyadr.conv2d_forward(*be.put(x, w, b), reuse=reuse, **geom)
    return be.to_numpy(y), ctx


def _grads(be, dy, ctx):
    """pyadr.conv2d_backward on backend be from a NumPy dy: (dx, dw, db) NumPy (db may be None)."""
    return tuple(be.to_numpy(a) for a in pyadr.conv2d_backward(be.asarray(dy), ctx))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("hash_", HASHES)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_reuse_matches_reference(backend, rng, case, order, hash_, scope, dtype):
    B, C, H, W, M, kh, kw, s, p, d, L, nh = CASES[case]
    x = int_data(rng, (B, C, H, W), dtype)
    w = rng.standard_normal((M, C, kh, kw)).astype(dtype)
    b = rng.standard_normal(M).astype(dtype)
    cfg = exact_cfg(rng, L, nh, hash=hash_, order=order, scope=scope)
    ctx, rctx = check_conv_vs_reference(rng, x, w, b, cfg, s, p, d, be=backend)
    K = C * kh * kw
    assert ctx.stats.blocks == -(-K // L)
    assert ctx.stats.L == L
    assert 0 < ctx.stats.rc <= 1


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("hash_", HASHES)
def test_reuse_without_bias(backend, rng, order, hash_):
    x = int_data(rng, (2, 4, 6, 5), np.float32)
    w = rng.standard_normal((3, 4, 3, 3)).astype(np.float32)
    cfg = exact_cfg(rng, 4, 9, hash=hash_, order=order)
    ctx, _ = check_conv_vs_reference(rng, x, w, None, cfg, 1, 1, 1, be=backend)
    y, ctx = _conv(backend, x, w, None, padding=1, reuse=cfg)
    assert _grads(backend, np.ones_like(y), ctx)[2] is None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("scope", SCOPES)
def test_seeded_planes_match_reference_on_integer_data(backend, rng, order, scope, dtype):
    """Default (seeded Gaussian) planes: same partition as the reference.

    Projections are then not exact, so only the float64 sums of integer data are compared, where
    the native kernels and the reference sum in the same order over k; a mismatch would show up as
    different ids here.
    """
    x = int_data(rng, (2, 4, 6, 6), dtype, 0, 1)
    w = rng.standard_normal((5, 4, 3, 3)).astype(dtype)
    cfg = pyadr.ReuseConfig(L=6, H=10, order=order, scope=scope, seed=3)
    y, ctx = _conv(backend, x, w, None, padding=1, reuse=cfg)
    yr, rctx = ref.conv2d_forward(x, w, None, 1, 1, 1, reuse=cfg)
    np.testing.assert_array_equal(ctx.planes, cfg.resolved_planes().astype(dtype))
    # Keys can legitimately differ where a projection is within rounding of 0; count those rows.
    X = subvectors(x, 3, 3, 1, 1, 1, order, 6)
    planes = cfg.resolved_planes()
    ids = block_ids(ctx, backend)
    checked = 0
    for j, S in enumerate(X):
        proj = S.astype(np.float64) @ planes[: S.shape[1]]
        if np.min(np.abs(proj[np.abs(proj) > 0])) > 1e-4 and np.all((proj == 0) | (np.abs(proj) > 1e-4)):
            np.testing.assert_array_equal(ids[j], rctx["state"]["ids"][j])
            checked += 1
    assert checked > 0, "no block free of near-zero projections: the test checks nothing"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hash_", HASHES)
@pytest.mark.parametrize("order", ORDERS)
def test_auto_l2_width(backend, rng, order, hash_, dtype):
    """hash='l2' with width=None: ctx.width follows the documented formula, ctx.offsets in [0, width)."""
    x = int_data(rng, (2, 3, 5, 5), dtype)
    w = rng.standard_normal((2, 3, 3, 3)).astype(dtype)
    cfg = pyadr.ReuseConfig(L=9, H=6, hash=hash_, order=order, seed=11, width_scale=2.0)
    y, ctx = _conv(backend, x, w, None, reuse=cfg)
    if hash_ == "sign":
        assert ctx.offsets is None and ctx.width is None
        return
    planes = cfg.resolved_planes()
    sigma = np.sqrt(np.mean(x.astype(np.float64) ** 2) * np.mean(np.sum(planes ** 2, axis=0)))
    assert ctx.width == pytest.approx(2.0 * sigma, rel=1e-6)
    assert ctx.offsets.shape == (6,)
    assert np.all(ctx.offsets >= 0) and np.all(ctx.offsets < ctx.width)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("hash_,L", [("sign", 3), ("sign", 6), ("sign", 18),
                                     ("l2", 3), ("l2", 4), ("l2", 18)])   # l2, L=4: last block of 2
def test_rc_one_is_exact(backend, rng, order, hash_, L, dtype):
    """When every row is its own cluster (rc == 1), reuse equals exact convolution."""
    x = rng.standard_normal((2, 2, 5, 4)).astype(dtype)     # distinct rows, no padding
    w = rng.standard_normal((3, 2, 3, 3)).astype(dtype)
    b = rng.standard_normal(3).astype(dtype)
    if hash_ == "sign":
        cfg = pyadr.ReuseConfig(L=L, H=64, order=order, seed=5)
    else:
        cfg = pyadr.ReuseConfig(L=L, H=64, order=order, hash="l2", width=1e-3, seed=5)
    y, ctx = _conv(backend, x, w, b, reuse=cfg)
    assert ctx.stats.rc == 1.0
    N = ctx.stats.rows
    assert np.all(ctx.stats.clusters == N)
    ye, ctxe = _conv(backend, x, w, b)
    assert_close(y, ye, dtype, be=backend)
    dy = rng.standard_normal(y.shape).astype(dtype)
    for a, e in zip(_grads(backend, dy, ctx), _grads(backend, dy, ctxe)):
        assert_close(a, e, dtype, be=backend)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("hash_", HASHES)
@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("L", [1, 3, 4, 12])
@pytest.mark.parametrize("nh", [3, 13])    # GPU: 3 takes the dense table, 13 the sorted grouping
def test_identical_rows_are_exact(backend, rng, order, hash_, scope, L, nh, dtype):
    """x constant over space and batch, no padding: every sub-matrix is one cluster, result exact."""
    C = 4
    v = rng.standard_normal(C).astype(dtype)
    x = np.broadcast_to(v[None, :, None, None], (3, C, 6, 5)).copy()
    w = rng.standard_normal((5, C, 3, 1)).astype(dtype)
    b = rng.standard_normal(5).astype(dtype)
    cfg = pyadr.ReuseConfig(L=L, H=nh, order=order, hash=hash_, scope=scope, seed=1)
    y, ctx = _conv(backend, x, w, b, stride=(1, 2), reuse=cfg)
    nb = -(-12 // L)
    groups = 3 if scope == "input" else 1
    N = ctx.stats.rows
    np.testing.assert_array_equal(ctx.stats.clusters, [groups] * nb)
    assert ctx.stats.rc == pytest.approx(groups / N, rel=1e-12)
    expect = np.repeat(np.arange(groups), N // groups)
    for j in range(nb):
        np.testing.assert_array_equal(block_ids(ctx, backend)[j], expect)
    ye, ctxe = _conv(backend, x, w, b, stride=(1, 2))
    assert_close(y, ye, dtype, be=backend)
    # Backward: dw and db are exact (centroids equal the rows); dx is by definition the cluster
    # average of the row gradients, so it is checked against the reference instead.
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx, dw, db = _grads(backend, dy, ctx)
    _, dwe, dbe = _grads(backend, dy, ctxe)
    assert_close(dw, dwe, dtype, be=backend)
    assert_close(db, dbe, dtype, be=backend)
    dxr = ref.conv2d_backward(dy, ref.conv2d_forward(x, w, b, (1, 2), 0, 1, reuse=cfg)[1])[0]
    assert_close(dx, dxr, dtype, be=backend)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("hash_", HASHES)
def test_duplicate_only_clusters_are_exact(backend, rng, order, hash_):
    """Binary data with padding and many H: if every cluster holds only identical sub-vectors
    (verified against the reference im2col), reuse equals exact convolution."""
    x = int_data(rng, (2, 2, 5, 5), np.float64, 0, 1)
    w = rng.standard_normal((3, 2, 2, 2))
    cfg = pyadr.ReuseConfig(L=2, H=64, order=order, hash=hash_, width=1e-3 if hash_ == "l2" else None, seed=2)
    y, ctx = _conv(backend, x, w, None, padding=1, reuse=cfg)
    ids = block_ids(ctx, backend)
    for j, S in enumerate(subvectors(x, 2, 2, 1, 1, 1, order, 2)):
        for c in np.unique(ids[j]):
            members = S[ids[j] == c]
            assert np.all(members == members[0]), f"block {j} cluster {c} mixes different sub-vectors"
    assert ctx.stats.rc < 1       # there is reuse
    ye, ctxe = _conv(backend, x, w, None, padding=1)
    assert_close(y, ye, np.float64, be=backend)
    dy = rng.standard_normal(y.shape)
    assert_close(_grads(backend, dy, ctx)[1], _grads(backend, dy, ctxe)[1], np.float64, be=backend)


def test_scope_input_single_pixel_output_is_exact(backend, rng):
    """scope='input' with OH*OW == 1: every group has one row, so rc == 1 and reuse is exact."""
    x = rng.standard_normal((4, 3, 3, 3))
    w = rng.standard_normal((5, 3, 3, 3))
    y, ctx = _conv(backend, x, w, reuse=pyadr.ReuseConfig(L=4, H=2, scope="input"))
    assert ctx.stats.rc == 1.0
    assert_close(y, _conv(backend, x, w)[0], np.float64, be=backend)


def _reuse_loss(be, x, w, b, dy, cfg, s, p, d):
    y, ctx = _conv(be, x, w, b, stride=s, padding=p, dilation=d, reuse=cfg)
    return float(np.sum(y * dy)), be.to_numpy(ctx.cluster_ids())


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("hash_,geom", [
    ("l2", (2, 3, 6, 5, 4, 3, 3, 1, 1, 1, 5)),
    ("l2", (2, 4, 7, 7, 3, 3, 2, 2, (1, 0), (1, 2), 4)),
    ("sign", (2, 3, 6, 6, 4, 3, 3, 1, 0, 1, 9)),       # odd x, odd planes, odd L: no zero projection
    ("sign", (1, 3, 7, 5, 2, 1, 3, (2, 1), 0, (1, 2), 3)),
])
def test_reuse_backward_finite_differences(backend, rng, order, scope, hash_, geom):
    """float64: the reuse backward is the derivative of the reuse forward with clusters fixed."""
    B, C, H, W, M, kh, kw, s, p, d, L = geom
    if hash_ == "l2":
        x = int_data(rng, (B, C, H, W), np.float64)
        cfg = exact_cfg(rng, L, 7, hash="l2", order=order, scope=scope, width=2.0, quarter=True)
    else:   # sums of an odd number of odd products are odd, never 0
        x = 2 * int_data(rng, (B, C, H, W), np.float64, -2, 1) + 1
        planes = 2 * rng.integers(-2, 2, size=(L, 7)).astype(np.float64) + 1
        cfg = pyadr.ReuseConfig(planes=planes, order=order, scope=scope)
        assert (C * kh * kw) % L == 0 and L % 2 == 1
    w = rng.standard_normal((M, C, kh, kw))
    b = rng.standard_normal(M)
    y, ctx = _conv(backend, x, w, b, stride=s, padding=p, dilation=d, reuse=cfg)
    ids0 = backend.to_numpy(ctx.cluster_ids())
    assert ctx.stats.rc < 1
    dy = rng.standard_normal(y.shape)
    dx, dw, db = _grads(backend, dy, ctx)
    eps = 1e-3
    for _ in range(2):
        vx, vw, vb = rng.uniform(-1, 1, x.shape), rng.standard_normal(w.shape), rng.standard_normal(M)
        lp, idp = _reuse_loss(backend, x + eps * vx, w, b, dy, cfg, s, p, d)
        lm, idm = _reuse_loss(backend, x - eps * vx, w, b, dy, cfg, s, p, d)
        np.testing.assert_array_equal(idp, ids0)     # the perturbation changed no hash
        np.testing.assert_array_equal(idm, ids0)
        assert (lp - lm) / (2 * eps) == pytest.approx(float(np.sum(dx * vx)), rel=1e-8, abs=1e-8)
        lp = _reuse_loss(backend, x, w + eps * vw, b, dy, cfg, s, p, d)[0]
        lm = _reuse_loss(backend, x, w - eps * vw, b, dy, cfg, s, p, d)[0]
        assert (lp - lm) / (2 * eps) == pytest.approx(float(np.sum(dw * vw)), rel=1e-8, abs=1e-8)
        lp = _reuse_loss(backend, x, w, b + eps * vb, dy, cfg, s, p, d)[0]
        lm = _reuse_loss(backend, x, w, b - eps * vb, dy, cfg, s, p, d)[0]
        assert (lp - lm) / (2 * eps) == pytest.approx(float(np.sum(db * vb)), rel=1e-8, abs=1e-8)


@pytest.mark.parametrize("dtype", DTYPES)
def test_order_changes_partition_not_exact_limit(backend, rng, dtype):
    """order only permutes columns: with L = K both orders see the same multiset of values per row,
    and with rc == 1 both give the exact result."""
    x = rng.standard_normal((1, 3, 4, 4)).astype(dtype)
    w = rng.standard_normal((2, 3, 2, 2)).astype(dtype)
    ye = _conv(backend, x, w)[0]
    for order in ORDERS:
        y, ctx = _conv(backend, x, w, reuse=pyadr.ReuseConfig(L=12, H=64, order=order))
        assert ctx.stats.rc == 1.0
        assert_close(y, ye, dtype, be=backend)


def test_large_layer_many_clusters(backend, rng):
    """N = 2*36*36 = 2592 rows, H = 64, integer data: more than 1024 clusters per sub-matrix, so the
    hashed cluster table grows (twice) while ids, counts and centroids still match the reference;
    L = 4 = C takes the per-pixel hashing path in hwc order."""
    x = int_data(rng, (2, 4, 36, 36), np.float32, -3, 3)
    w = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
    for L in (4, 6):
        for order in ORDERS:
            for hash_ in HASHES:
                cfg = exact_cfg(rng, L, 64, hash=hash_, order=order)
                ctx, _ = check_conv_vs_reference(rng, x, w, None, cfg, 1, 1, 1, be=backend)
                assert ctx.stats.clusters.max() > 1024
