"""Behaviour of the native CPU engine alone (no GPU counterpart): the GEMM providers, the thread
count, and the engine's cache budget. Every other behaviour is tested per backend
(tests/_backends.py) in the behaviour files."""
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pyadr

from _strategies import geometry, layers, make_layer, n_examples
from _util import assert_close, check_conv_vs_reference, exact_cfg, int_data


@pytest.mark.parametrize("provider", ["builtin", "blas"])
def test_gemm_providers_agree(rng, provider, restore_gemm):
    with open(os.devnull, "w") as devnull:
        cfg = pyadr.show_config(file=devnull)
    if provider == "blas" and str(cfg["blas"]).startswith("unavailable"):
        pytest.skip("SciPy BLAS not available")
    pyadr.set_gemm_provider(provider)
    with open(os.devnull, "w") as devnull:
        assert pyadr.show_config(file=devnull)["gemm"] == provider
    x = int_data(rng, (2, 8, 9, 9), np.float64)
    w = rng.standard_normal((6, 8, 3, 3))
    b = rng.standard_normal(6)
    for reuse in (None, exact_cfg(rng, 8, 10), exact_cfg(rng, 7, 5, order="chw", hash="l2")):
        check_conv_vs_reference(rng, x, w, b, reuse, padding=1)


@pytest.mark.parametrize("L", [64, 24])   # 64: the hashed-once-per-pixel path; 24: rows hashed
def test_rc_one_is_exact_when_products_exceed_the_cache_budget(rng, L):
    """8192 rows, all distinct, M = 64: the products of all blocks (Yc and D, 9-24 blocks of
    8192 x 64 values) outgrow the engine's cache budget (12 MB), so the reconstruction and dX run
    in several block groups; the result must still be the exact convolution."""
    x = rng.standard_normal((32, 64, 16, 16))
    w = rng.standard_normal((64, 64, 3, 3)) * 0.05
    b = rng.standard_normal(64)
    y, ctx = pyadr.conv2d_forward(x, w, b, padding=1, reuse=pyadr.ReuseConfig(L=L, H=64, seed=1))
    # only the all-padding sub-vectors (exact zeros) share clusters: the rest are distinct
    assert ctx.stats.rc > 0.9
    assert ctx.stats.clusters.sum() * 64 * 8 > 2 * (12 << 20)   # the products Yc: > 2 groups
    ye, ctxe = pyadr.conv2d_forward(x, w, b, padding=1)
    np.testing.assert_allclose(y, ye, rtol=1e-9, atol=1e-9)
    dy = rng.standard_normal(y.shape)
    for a, e in zip(pyadr.conv2d_backward(dy, ctx), pyadr.conv2d_backward(dy, ctxe)):
        np.testing.assert_allclose(a, e, rtol=1e-9, atol=1e-8)


@settings(max_examples=n_examples(25))
@given(layers(), st.sampled_from([False, True]))
def test_thread_count_keeps_results(p, use_float_data):
    """1 thread twice: bit-identical; 1 and 2 threads: the same partition, results within rounding
    (test_properties.test_determinism checks repeated calls at the default thread count)."""
    rng, x, w, b, cfg = make_layer(p)
    if use_float_data:
        x = rng.standard_normal(x.shape).astype(p["dtype"])
        cfg = pyadr.ReuseConfig(L=p["L"], H=p["nh"], order=p["order"], hash=p["hash"], scope=p["scope"])
    before = pyadr.get_num_threads()
    try:
        results = {}
        for nt in (1, 2, 1):
            pyadr.set_num_threads(nt)
            y, ctx = pyadr.conv2d_forward(x, w, b, **geometry(p), reuse=cfg)
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
