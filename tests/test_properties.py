"""Property tests (hypothesis) over shapes, strides, paddings, dilations, L, H, orders, hashes, scopes,
on every backend (tests/_backends.py). Strategies: tests/_strategies.py."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pyadr
from pyadr import reference as ref

from _strategies import geometry, layers, make_layer, n_examples
from _util import assert_close, block_ids, block_state, check_conv_vs_reference, exact_cfg, int_data, subvectors

# The backend fixture is function-scoped and the same for every example of a test, by design.
_FIXTURE_OK = [HealthCheck.function_scoped_fixture]


@settings(max_examples=n_examples(60), suppress_health_check=_FIXTURE_OK)
@given(layers())
def test_backend_equals_reference(backend, p):
    """Exact data: identical partitions, rc, and y/dx/dw/db within tolerance of the reference."""
    rng, x, w, b, cfg = make_layer(p)
    check_conv_vs_reference(rng, x, w, b, cfg, **geometry(p), be=backend)


@settings(max_examples=n_examples(40), suppress_health_check=_FIXTURE_OK)
@given(layers())
def test_partition_properties(backend, p):
    """Binary data (many duplicate sub-vectors), seeded Gaussian planes: ids form a partition,
    counts add up per scope group, and equal sub-vectors in one group share a cluster."""
    rng = np.random.default_rng(p["seed"])
    x = int_data(rng, (p["B"], p["C"], p["H"], p["W"]), p["dtype"], 0, 1)
    w = rng.standard_normal((p["M"], p["C"], p["kh"], p["kw"])).astype(p["dtype"])
    cfg = pyadr.ReuseConfig(L=p["L"], H=p["nh"], order=p["order"], hash=p["hash"], scope=p["scope"],
                            seed=p["seed"] % 1000)
    y, ctx = pyadr.conv2d_forward(*backend.put(x, w), **geometry(p), reuse=cfg)
    OH, OW = y.shape[2:]
    N = p["B"] * OH * OW
    group = OH * OW if p["scope"] == "input" else N
    ids = block_ids(ctx, backend)
    blocks = subvectors(x, p["kh"], p["kw"], p["stride"], p["padding"], p["dilation"], p["order"], p["L"])
    assert ids.shape == (len(blocks), N)
    assert ctx.stats.rows == N
    rcs = []
    for j, S in enumerate(blocks):
        nc = int(ctx.stats.clusters[j])
        idj, counts, cent = block_state(ctx, j, backend)
        assert counts.shape == (nc,)
        assert np.all((idj >= 0) & (idj < nc))
        np.testing.assert_array_equal(np.bincount(idj, minlength=nc), counts)
        assert np.all(counts >= 1)
        assert counts.sum() == N
        for g0 in range(0, N, group):
            gids = idj[g0:g0 + group]
            assert counts[np.unique(gids)].sum() == group            # clusters do not cross groups
            # equal sub-vectors -> equal ids (within the group)
            _, first = np.unique(S[g0:g0 + group], axis=0, return_inverse=True)
            first = first.ravel()
            for u in np.unique(first):
                assert len(np.unique(gids[first == u])) == 1
        sums = np.zeros(cent.shape)
        np.add.at(sums, idj, S.astype(np.float64))
        assert_close(cent, sums / counts[:, None], p["dtype"], be=backend)
        rcs.append(nc / N)
    assert ctx.stats.rc == pytest.approx(np.mean(rcs), rel=1e-12)
    assert 0 < ctx.stats.rc <= 1


@settings(max_examples=n_examples(25), suppress_health_check=_FIXTURE_OK)
@given(layers(), st.sampled_from([False, True]))
def test_determinism(backend, p, use_float_data):
    """Repeated calls with the same inputs give bit-identical y, dx, dw, db and cluster ids."""
    rng, x, w, b, cfg = make_layer(p)
    if use_float_data:
        x = rng.standard_normal(x.shape).astype(p["dtype"])
        cfg = pyadr.ReuseConfig(L=p["L"], H=p["nh"], order=p["order"], hash=p["hash"], scope=p["scope"])
    results = []
    for _ in range(2):
        y, ctx = pyadr.conv2d_forward(*backend.put(x, w, b), **geometry(p), reuse=cfg)
        dy = np.random.default_rng(1).standard_normal(y.shape).astype(p["dtype"])
        grads = pyadr.conv2d_backward(backend.asarray(dy), ctx)
        results.append([backend.to_numpy(a) for a in (y, *grads, ctx.cluster_ids())])
    for a, e in zip(*results):
        np.testing.assert_array_equal(a, e)            # bit-identical


@settings(max_examples=n_examples(30), suppress_health_check=_FIXTURE_OK)
@given(layers())
def test_exact_path_property(backend, p):
    """reuse=None equals the direct convolution for any geometry; backward matches the reference."""
    rng = np.random.default_rng(p["seed"])
    x = rng.standard_normal((p["B"], p["C"], p["H"], p["W"])).astype(p["dtype"])
    w = rng.standard_normal((p["M"], p["C"], p["kh"], p["kw"])).astype(p["dtype"])
    b = rng.standard_normal(p["M"]).astype(p["dtype"]) if p["seed"] % 2 else None
    y, ctx = pyadr.conv2d_forward(*backend.put(x, w, b), **geometry(p))
    assert_close(backend.to_numpy(y), ref.naive_conv2d(x, w, b, **geometry(p)), p["dtype"], be=backend)
    check_conv_vs_reference(rng, x, w, b, None, **geometry(p), be=backend)


@settings(max_examples=n_examples(30), suppress_health_check=_FIXTURE_OK)
@given(st.integers(1, 70), st.integers(1, 40), st.integers(1, 6), st.data())
def test_linear_property(backend, B, n_in, n_out, data):
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
    y, ctx = pyadr.linear_forward(*backend.put(x, w, b), reuse=cfg)
    yr, rctx = ref.linear_forward(x, w, b, reuse=cfg)
    np.testing.assert_array_equal(block_ids(ctx, backend), np.array(rctx["state"]["ids"]))
    assert ctx.stats.rc == pytest.approx(rctx["rc"], rel=1e-12)
    assert_close(backend.to_numpy(y), yr, dtype, be=backend)
    dy = rng.standard_normal(yr.shape).astype(dtype)
    for a, e in zip(pyadr.linear_backward(backend.asarray(dy), ctx), ref.linear_backward(dy, rctx)):
        assert_close(backend.to_numpy(a), e, dtype, be=backend)
