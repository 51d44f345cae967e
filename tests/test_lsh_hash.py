"""Hash keys: reference.lsh_keys against hand-computed values, and the partitions of every backend
(tests/_backends.py) against it. Ids are compared in first-occurrence numbering (_util.block_ids)."""
import numpy as np
import pytest

import pyadr
from pyadr import reference as ref

from _util import DTYPES, block_ids, block_state, exact_cfg, int_data


def _linear_ids(be, x, w, cfg):
    """Cluster ids (first-occurrence numbering) of linear_forward on backend be, and its ctx."""
    _, ctx = pyadr.linear_forward(*be.put(x, w), reuse=cfg)
    return block_ids(ctx, be), ctx

S = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0], [0.0, 0.0], [2.0, -1.0]])
P = np.array([[1.0, -1.0, 0.5], [1.0, 1.0, 0.0]])      # (L=2, H=3)
# projections: [1,-1,.5], [1,1,0], [-2,0,-.5], [0,0,0], [1,-3,1]


@pytest.mark.parametrize("dtype", DTYPES)
def test_sign_keys_by_hand(dtype):
    keys = ref.lsh_keys(S.astype(dtype), P, "sign")
    assert keys.dtype == np.uint64
    # bit h = [proj_h > 0], strictly: a zero projection gives 0
    np.testing.assert_array_equal(keys, np.array([0b101, 0b011, 0b000, 0b000, 0b101], dtype=np.uint64))


@pytest.mark.parametrize("dtype", DTYPES)
def test_l2_keys_by_hand(dtype):
    off = np.array([0.5, 0.0, 0.25])
    q = ref.lsh_keys(S.astype(dtype), P, "l2", offsets=off, width=1.0)
    assert q.dtype == np.int64
    np.testing.assert_array_equal(q, [[1, -1, 0], [1, 1, 0], [-2, 0, -1], [0, 0, 0], [1, -3, 1]])
    q2 = ref.lsh_keys(S.astype(dtype), P, "l2", offsets=off, width=2.0)
    np.testing.assert_array_equal(q2, [[0, -1, 0], [0, 0, 0], [-1, 0, -1], [0, 0, 0], [0, -2, 0]])


def test_shorter_block_uses_first_plane_rows():
    planes = np.array([[1.0, -1.0], [5.0, 5.0], [-7.0, 7.0]])
    S1 = np.array([[1.0], [-1.0], [0.0]])
    np.testing.assert_array_equal(ref.lsh_keys(S1, planes, "sign"), np.array([1, 2, 0], dtype=np.uint64))
    np.testing.assert_array_equal(ref.lsh_keys(S1, planes, "l2", offsets=[0.0, 0.0], width=1.0),
                                  [[1, -1], [-1, 1], [0, 0]])


def test_sign_key_uses_all_64_bits():
    planes = np.zeros((1, 64))
    planes[0, 63] = 1.0
    planes[0, 0] = -1.0
    keys = ref.lsh_keys(np.array([[1.0], [-1.0]]), planes, "sign")
    np.testing.assert_array_equal(keys, np.array([1 << 63, 1], dtype=np.uint64))


def test_reference_cluster_ids_first_occurrence():
    ids, counts = ref.cluster_ids(np.array([7, 3, 7, 9, 3, 3], dtype=np.uint64))
    np.testing.assert_array_equal(ids, [0, 1, 0, 2, 1, 1])
    np.testing.assert_array_equal(counts, [2, 3, 1])
    ids, counts = ref.cluster_ids(np.array([[1, 2], [1, 3], [1, 2]], dtype=np.int64))
    np.testing.assert_array_equal(ids, [0, 1, 0])
    np.testing.assert_array_equal(counts, [2, 1])


@pytest.mark.parametrize("hash_", ["sign", "l2"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_hand_example(backend, hash_, dtype):
    """Linear layer with L = in_features: one block, ids = cluster_ids(lsh_keys(x))."""
    x = S.astype(dtype)
    w = np.ones((1, 2), dtype)
    if hash_ == "sign":
        cfg = pyadr.ReuseConfig(planes=P)
        expected = [0, 1, 2, 2, 0]                      # keys 5, 3, 0, 0, 5
    else:
        cfg = pyadr.ReuseConfig(planes=P, hash="l2", width=1.0, offsets=[0.5, 0.0, 0.25])
        expected = [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(_linear_ids(backend, x, w, cfg)[0], [expected])


@pytest.mark.parametrize("dtype", DTYPES)
def test_distinguishes_bit_63(backend, dtype):
    """Two sub-vectors whose sign keys differ only in the top bit are different clusters."""
    planes = np.zeros((2, 64))
    planes[0, :63] = 1.0
    planes[1, 63] = 1.0
    x = np.array([[1, 1], [1, -1], [1, 1], [1, -1]], dtype)
    ids, _ = _linear_ids(backend, x, np.ones((1, 2), dtype), pyadr.ReuseConfig(planes=planes))
    np.testing.assert_array_equal(ids, [[0, 1, 0, 1]])


@pytest.mark.parametrize("H", [1, 16, 17, 32, 33, 64])
@pytest.mark.parametrize("dtype", DTYPES)
def test_l2_distinguishes_last_component(backend, H, dtype):
    """l2 tuples differing only in component H-1 are different clusters (all H compared)."""
    planes = np.zeros((2, H))
    planes[0, :] = 1.0
    planes[1, H - 1] = 1.0
    planes[0, H - 1] = 0.0
    x = np.array([[1, 3], [1, -3], [1, 3], [1, 0]], dtype)
    cfg = pyadr.ReuseConfig(planes=planes, hash="l2", width=2.0, offsets=np.zeros(H))
    np.testing.assert_array_equal(_linear_ids(backend, x, np.ones((1, 2), dtype), cfg)[0], [[0, 1, 0, 2]])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("H", [1, 5, 8, 9, 16, 17, 31, 32, 33, 63, 64])
@pytest.mark.parametrize("hash_", ["sign", "l2"])
def test_ids_match_reference_keys(backend, rng, H, hash_, dtype):
    """Every H (padded hash widths 8/16/32/64 inside the CPU core), exact projections: the ids are
    exactly the first-occurrence numbering of the reference keys, block by block."""
    x = int_data(rng, (200, 13), dtype, -1, 1)
    cfg = exact_cfg(rng, 5, H, hash=hash_)
    ids, ctx = _linear_ids(backend, x, np.ones((2, 13), dtype), cfg)
    for j, (s, e) in enumerate(ref.blocks(13, 5)):
        keys = ref.lsh_keys(x[:, s:e], ctx.planes, hash_, ctx.offsets, ctx.width)
        expected, counts = ref.cluster_ids(keys)
        np.testing.assert_array_equal(ids[j], expected)
        np.testing.assert_array_equal(block_state(ctx, j, backend)[1], counts)


@pytest.mark.parametrize("order", ["hwc", "chw"])
@pytest.mark.parametrize("hash_", ["sign", "l2"])
@pytest.mark.parametrize("C,L", [(8, 4), (8, 8), (6, 3), (6, 4), (5, 5)])
def test_conv_ids_match_reference_keys(backend, rng, order, hash_, C, L):
    """Convolution with padding/stride/dilation, both hashing paths (hwc with L | C per pixel, and
    the generic one): ids from the reference keys of the reference im2col sub-vectors."""
    x = int_data(rng, (2, C, 7, 6), np.float32, -1, 1)
    w = np.ones((2, C, 3, 2), np.float32)
    cfg = exact_cfg(rng, L, 11, hash=hash_, order=order)
    _, ctx = pyadr.conv2d_forward(*backend.put(x, w), stride=(2, 1), padding=(1, 2), dilation=(1, 2), reuse=cfg)
    X = ref.im2col(x, 3, 2, (2, 1), (1, 2), (1, 2), order)
    ids = block_ids(ctx, backend)
    for j, (s, e) in enumerate(ref.blocks(X.shape[1], L)):
        keys = ref.lsh_keys(X[:, s:e], ctx.planes, hash_, ctx.offsets, ctx.width)
        np.testing.assert_array_equal(ids[j], ref.cluster_ids(keys)[0], err_msg=f"block {j}")


@pytest.mark.parametrize("hash_", ["sign", "l2"])
def test_zero_subvectors_share_a_cluster(backend, hash_):
    """Padding produces all-zero sub-vectors: one key (all-zero sign bits), hence one cluster."""
    x = np.ones((1, 1, 2, 2))
    w = np.ones((1, 1, 3, 3))
    planes = np.array([[1.0, -1.0, 0.5, 2.0]])
    if hash_ == "sign":
        cfg = pyadr.ReuseConfig(planes=planes)
    else:
        cfg = pyadr.ReuseConfig(planes=planes, hash="l2", width=1.0, offsets=np.zeros(4))
    _, ctx = pyadr.conv2d_forward(*backend.put(x, w), padding=2, reuse=cfg)     # 4x4 output, 16 rows
    X = ref.im2col(x, 3, 3, 1, 2, 1, "hwc")
    ids = block_ids(ctx, backend)
    for j in range(9):
        zero_rows = np.flatnonzero(X[:, j] == 0)
        assert len(zero_rows) > 1
        assert len(set(ids[j, zero_rows].tolist())) == 1
    if hash_ == "sign":
        # all-zero sub-vector -> key 0; a sub-vector (1,) -> key 0b1101
        np.testing.assert_array_equal(ctx.stats.clusters, np.where(X.any(axis=0) & ~X.all(axis=0), 2, 1))
