"""Property tests (hypothesis) over shapes, strides, paddings, dilations, L, H, orders, hashes, scopes."""
import os

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import pyadr
from pyadr import reference as ref

from _util import assert_close, check_conv_vs_reference, exact_cfg, int_data, subvectors


def _n(examples):
    """max_examples, scaled by PYADR_HYPOTHESIS_SCALE (default 1: the suite stays fast)."""
    return examples * int(os.environ.get("PYADR_HYPOTHESIS_SCALE", "1"))


@st.composite
def layers(draw, max_hw=8):
    B = draw(st.integers(1, 3))
    C = draw(st.integers(1, 6))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    H = draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), max_hw))
    W = draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), max_hw))
    assume(dh * (kh - 1) + 1 <= H + 2 * ph and dw * (kw - 1) + 1 <= W + 2 * pw)
    M = draw(st.integers(1, 5))
    K = C * kh * kw
    # L: any of 1..K, with extra weight on divisors of C (the hwc per-pixel path)
    L = draw(st.one_of(st.integers(1, K), st.sampled_from([d for d in range(1, C + 1) if C % d == 0])))
    nh = draw(st.one_of(st.integers(1, 64), st.sampled_from([1, 8, 16, 17, 64])))
    order = draw(st.sampled_from(["hwc", "chw"]))
    hash_ = draw(st.sampled_from(["sign", "l2"]))
    scope = draw(st.sampled_from(["batch", "input"]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    return dict(B=B, C=C, H=H, W=W, M=M, kh=kh, kw=kw, stride=(sh, sw), padding=(ph, pw),
                dilation=(dh, dw), L=L, nh=nh, order=order, hash=hash_, scope=scope, dtype=dtype, seed=seed)


def _make(p, lo=-2, hi=2):
    rng = np.random.default_rng(p["seed"])
    x = int_data(rng, (p["B"], p["C"], p["H"], p["W"]), p["dtype"], lo, hi)
    w = rng.standard_normal((p["M"], p["C"], p["kh"], p["kw"])).astype(p["dtype"])
    b = rng.standard_normal(p["M"]).astype(p["dtype"])
    cfg = exact_cfg(rng, p["L"], p["nh"], hash=p["hash"], order=p["order"], scope=p["scope"],
                    width=rng.choice([1.0, 2.0, 4.0]))
    return rng, x, w, b, cfg


def _geom(p):
    return dict(stride=p["stride"], padding=p["padding"], dilation=p["dilation"])


@settings(max_examples=_n(60))
@given(layers())
def test_native_equals_reference(p):
    """Exact data: identical partitions, rc, and y/dx/dw/db within tolerance of the reference."""
    rng, x, w, b, cfg = _make(p)
    check_conv_vs_reference(rng, x, w, b, cfg, **_geom(p))


@settings(max_examples=_n(40))
@given(layers())
def test_partition_properties(p):
    """Binary data (many duplicate sub-vectors), seeded Gaussian planes: ids form a partition,
    counts add up per scope group, and equal sub-vectors in one group share a cluster."""
    rng = np.random.default_rng(p["seed"])
    x = int_data(rng, (p["B"], p["C"], p["H"], p["W"]), p["dtype"], 0, 1)
    w = rng.standard_normal((p["M"], p["C"], p["kh"], p["kw"])).astype(p["dtype"])
    cfg = pyadr.ReuseConfig(L=p["L"], H=p["nh"], order=p["order"], hash=p["hash"], scope=p["scope"],
                            seed=p["seed"] % 1000)
    y, ctx = pyadr.conv2d_forward(x, w, **_geom(p), reuse=cfg)
    OH, OW = y.shape[2:]
    N = p["B"] * OH * OW
    group = OH * OW if p["scope"] == "input" else N
    ids = ctx.cluster_ids()
    blocks = subvectors(x, p["kh"], p["kw"], p["stride"], p["padding"], p["dilation"], p["order"], p["L"])
    assert ids.shape == (len(blocks), N)
    assert ctx.stats.rows == N
    rcs = []
    for j, S in enumerate(blocks):
        nc = int(ctx.stats.clusters[j])
        counts = ctx.cluster_counts(j)
        assert counts.shape == (nc,)
        assert np.all((ids[j] >= 0) & (ids[j] < nc))
        np.testing.assert_array_equal(np.bincount(ids[j], minlength=nc), counts)
        assert np.all(counts >= 1)
        assert counts.sum() == N
        for g0 in range(0, N, group):
            gids = ids[j, g0:g0 + group]
            assert counts[np.unique(gids)].sum() == group            # clusters do not cross groups
            # equal sub-vectors -> equal ids (within the group)
            _, first = np.unique(S[g0:g0 + group], axis=0, return_inverse=True)
            first = first.ravel()
            for u in np.unique(first):
                assert len(np.unique(gids[first == u])) == 1
        cent = ctx.centroids(j)
        sums = np.zeros(cent.shape)
        np.add.at(sums, ids[j], S.astype(np.float64))
        assert_close(cent, sums / counts[:, None], p["dtype"])
        rcs.append(nc / N)
    assert ctx.stats.rc == pytest.approx(np.mean(rcs), rel=1e-12)
    assert 0 < ctx.stats.rc <= 1


@settings(max_examples=_n(25))
@given(layers(), st.sampled_from([False, True]))
def test_determinism_and_thread_count(p, use_float_data):
    """Repeated calls give bit-identical y, dx, dw; 1 and 2 threads give the same partition."""
    rng, x, w, b, cfg = _make(p)
    if use_float_data:
        x = rng.standard_normal(x.shape).astype(p["dtype"])
        cfg = pyadr.ReuseConfig(L=p["L"], H=p["nh"], order=p["order"], hash=p["hash"], scope=p["scope"])
    before = pyadr.get_num_threads()
    try:
        results = {}
        for nt in (2, 1, 2):
            pyadr.set_num_threads(nt)
            y, ctx = pyadr.conv2d_forward(x, w, b, **_geom(p), reuse=cfg)
            dy = np.random.default_rng(1).standard_normal(y.shape).astype(p["dtype"])
            dx, dw, db = pyadr.conv2d_backward(dy, ctx)
            out = (y, dx, dw, db, ctx.cluster_ids())
            if nt in results:
                for a, e in zip(out, results[nt]):
                    np.testing.assert_array_equal(a, e)            # bit-identical
            results[nt] = out
        for a, e in zip(results[1][:4], results[2][:4]):
            assert_close(a, e, p["dtype"])
        np.testing.assert_array_equal(results[1][4], results[2][4])
    finally:
        pyadr.set_num_threads(before)


@settings(max_examples=_n(30))
@given(layers())
def test_exact_path_property(p):
    """reuse=None equals the direct convolution for any geometry; backward matches the reference."""
    rng = np.random.default_rng(p["seed"])
    x = rng.standard_normal((p["B"], p["C"], p["H"], p["W"])).astype(p["dtype"])
    w = rng.standard_normal((p["M"], p["C"], p["kh"], p["kw"])).astype(p["dtype"])
    b = rng.standard_normal(p["M"]).astype(p["dtype"]) if p["seed"] % 2 else None
    y, ctx = pyadr.conv2d_forward(x, w, b, **_geom(p))
    assert_close(y, ref.naive_conv2d(x, w, b, **_geom(p)), p["dtype"])
    check_conv_vs_reference(rng, x, w, b, None, **_geom(p))


@settings(max_examples=_n(30))
@given(st.integers(1, 70), st.integers(1, 40), st.integers(1, 6), st.data())
def test_linear_property(B, n_in, n_out, data):
    L = data.draw(st.integers(1, n_in))
    nh = data.draw(st.integers(1, 64))
    hash_ = data.draw(st.sampled_from(["sign", "l2"]))
    scope = data.draw(st.sampled_from(["batch", "input"]))
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(data.draw(st.integers(0, 10 ** 6)))
    x = int_data(rng, (B, n_in), dtype, -1, 1)
    w = rng.standard_normal((n_out, n_in)).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype)
    cfg = exact_cfg(rng, L, nh, hash=hash_, scope=scope)
    y, ctx = pyadr.linear_forward(x, w, b, reuse=cfg)
    yr, rctx = ref.linear_forward(x, w, b, reuse=cfg)
    np.testing.assert_array_equal(ctx.cluster_ids(), np.array(rctx["state"]["ids"]))
    assert ctx.stats.rc == pytest.approx(rctx["rc"], rel=1e-12)
    assert_close(y, yr, dtype)
    dy = rng.standard_normal(y.shape).astype(dtype)
    for a, e in zip(pyadr.linear_backward(dy, ctx), ref.linear_backward(dy, rctx)):
        assert_close(a, e, dtype)
