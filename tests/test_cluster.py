"""Clustering: ids, counts and centroids checked from their definitions, on every backend
(tests/_backends.py). Ids are compared as partitions in first-occurrence numbering
(_util.block_ids), which is also the CPU engine's own numbering (checked there)."""
import numpy as np
import pytest

import pyadr
from pyadr import reference as ref

from _util import DTYPES, assert_close, block_ids, block_state, exact_cfg, int_data, subvectors


def _linear(be, x, w, reuse):
    y, ctx = pyadr.linear_forward(*be.put(x, w), reuse=reuse)
    return be.to_numpy(y), ctx


def check_partition(ctx, S_blocks, scope, group_rows, dtype, be):
    """ids are cluster numbers in [0, clusters_j) (raw) forming a partition; counts and centroids
    follow from the ids; scope 'input' clusters never span two images."""
    raw = be.to_numpy(ctx.cluster_ids())
    ids = block_ids(ctx, be)
    N = ids.shape[1]
    for j, S in enumerate(S_blocks):
        nc = ctx.stats.clusters[j]
        assert raw[j].min() == 0 and raw[j].max() == nc - 1 and len(np.unique(raw[j])) == nc
        idj, counts, cent = block_state(ctx, j, be)
        np.testing.assert_array_equal(counts, np.bincount(idj, minlength=nc))
        assert np.all(counts > 0)
        assert cent.shape == (nc, S.shape[1])
        sums = np.zeros((nc, S.shape[1]))
        np.add.at(sums, idj, S.astype(np.float64))
        assert_close(cent, sums / counts[:, None], dtype, be=be)
        if scope == "input":
            groups = np.arange(N) // group_rows
            # each cluster belongs to one image
            owner = np.full(nc, -1)
            owner[idj] = groups
            np.testing.assert_array_equal(owner[idj], groups)
            for g in range(N // group_rows):
                assert counts[np.unique(idj[groups == g])].sum() == group_rows


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scope", ["batch", "input"])
@pytest.mark.parametrize("hash_", ["sign", "l2"])
@pytest.mark.parametrize("order", ["hwc", "chw"])
def test_partition_definitions(backend, rng, order, hash_, scope, dtype):
    B, C, H, W = 3, 4, 7, 6
    x = int_data(rng, (B, C, H, W), dtype, -1, 1)
    w = rng.standard_normal((2, C, 2, 3)).astype(dtype)
    L = 4 if order == "hwc" else 5
    cfg = pyadr.ReuseConfig(L=L, H=6, order=order, hash=hash_, scope=scope, seed=4,
                            width=1.5 if hash_ == "l2" else None)
    _, ctx = pyadr.conv2d_forward(*backend.put(x, w), stride=(1, 2), padding=1, reuse=cfg)
    OH, OW = ref.output_size(H, W, 2, 3, (1, 2), 1, 1)
    check_partition(ctx, subvectors(x, 2, 3, (1, 2), 1, 1, order, L), scope, OH * OW, dtype, backend)
    nb = ctx.stats.blocks
    rc = np.mean(ctx.stats.clusters) / ctx.stats.rows
    assert ctx.stats.rc == pytest.approx(rc, rel=1e-12)
    assert ctx.stats.clusters.sum() == sum(len(ctx.cluster_counts(j)) for j in range(nb))


@pytest.mark.parametrize("scope", ["batch", "input"])
def test_scope_input_is_per_image_batch(backend, rng, scope):
    """With scope 'input' the clustering of image b equals a batch-scope clustering of image b alone."""
    x = int_data(rng, (3, 2, 6, 6), np.float64, -1, 1)
    x[2] = x[0]                               # images 0 and 2 identical
    w = rng.standard_normal((3, 2, 3, 3))
    cfg = exact_cfg(rng, 6, 9, scope=scope)
    y, ctx = pyadr.conv2d_forward(*backend.put(x, w), padding=1, reuse=cfg)
    y = backend.to_numpy(y)
    ids = block_ids(ctx, backend)
    P = 36
    if scope == "input":
        for b in range(3):
            yb, cb = pyadr.conv2d_forward(*backend.put(x[b:b + 1], w), padding=1, reuse=cfg.replace(scope="batch"))
            idb = block_ids(cb, backend)
            # same partition, ids shifted by the clusters of previous images
            own = ids[:, b * P:(b + 1) * P]
            np.testing.assert_array_equal(own - own.min(axis=1, keepdims=True), idb)
            assert_close(y[b:b + 1], backend.to_numpy(yb), np.float64, be=backend)
        np.testing.assert_array_equal(y[0], y[2])
    else:
        # identical images share their clusters
        np.testing.assert_array_equal(ids[:, :P], ids[:, 2 * P:])


def test_many_unique_rows_hashed_table(backend, rng):
    """Thousands of distinct keys (H=64 and H=40, i.e. not a dense 2^H table) stay distinct."""
    x = rng.standard_normal((4000, 6))
    for H in (40, 64):
        cfg = pyadr.ReuseConfig(L=6, H=H, hash="l2", width=1e-6, seed=H)
        _, ctx = _linear(backend, x, np.ones((1, 6)), cfg)
        np.testing.assert_array_equal(block_ids(ctx, backend), [np.arange(4000)])
        assert ctx.stats.rc == 1.0
        x2 = np.concatenate([x, x[::-1]])        # each row twice
        _, ctx2 = _linear(backend, x2, np.ones((1, 6)), cfg)
        ids = block_ids(ctx2, backend)[0]
        np.testing.assert_array_equal(ids[:4000], np.arange(4000))
        np.testing.assert_array_equal(ids[4000:], np.arange(4000)[::-1])
        np.testing.assert_array_equal(backend.to_numpy(ctx2.cluster_counts(0)), np.full(4000, 2))


@pytest.mark.parametrize("H", [4, 12, 16, 17, 24])
def test_sign_all_codes(backend, H):
    """Rows realising every sign code of H planes (the identity planes on +-1 vectors):
    2^H clusters for small H, in first-occurrence order."""
    Hs = min(H, 12)
    codes = np.arange(2 ** Hs)
    x = np.where((codes[:, None] >> np.arange(H)[None, :Hs]) & 1, 1.0, -1.0)
    x = np.concatenate([x, -np.ones((len(x), H - Hs))], axis=1) if H > Hs else x
    x = np.concatenate([x, x[::3]])
    planes = np.eye(H)
    _, ctx = _linear(backend, x, np.ones((1, H)), pyadr.ReuseConfig(planes=planes))
    ids = block_ids(ctx, backend)[0]
    np.testing.assert_array_equal(ids[: 2 ** Hs], codes)
    np.testing.assert_array_equal(ids[2 ** Hs:], codes[::3])


@pytest.mark.parametrize("dtype", DTYPES)
def test_centroids_are_means_float_data(backend, rng, dtype):
    """Float data, few clusters: centroids equal the member means within rounding."""
    x = rng.standard_normal((2, 3, 8, 8)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
    cfg = pyadr.ReuseConfig(L=9, H=3)
    _, ctx = pyadr.conv2d_forward(*backend.put(x, w), padding=1, reuse=cfg)
    check_partition(ctx, subvectors(x, 3, 3, 1, 1, 1, "hwc", 9), "batch", 64, dtype, backend)
    assert ctx.stats.rc < 0.2
    assert ctx.nbytes > 0
