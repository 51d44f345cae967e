"""Cost of hashing + grouping alone (the op of native/src/lsh_hash.cpp), through the public API.

A reuse forward of conv2's real input with a single output channel (M = 1) does the im2col tiling,
the LSH hashing, the bucketing and the centroid sums, while its reduced GEMM and gather-add are
negligible (rc*N*K and N*K/L multiply-adds). The exact forward with M = 1 is the baseline for one
pass over the im2col matrix. extra_info: rc, clusters, ns per hashed sub-vector.
"""
import numpy as np
import pytest

from conftest import pedantic

import pyadr

CONFIGS = [
    ("sign_L25_H8", dict(L=25, H=8, hash="sign")),
    ("sign_L25_H16", dict(L=25, H=16, hash="sign")),
    ("sign_L25_H24", dict(L=25, H=24, hash="sign")),
    ("sign_L64_H12", dict(L=64, H=12, hash="sign")),
    ("sign_L8_H12", dict(L=8, H=12, hash="sign")),
    ("l2_L25_H8", dict(L=25, H=8, hash="l2")),
    ("l2_L25_H16", dict(L=25, H=16, hash="l2")),
    ("sign_L25_H20_input", dict(L=25, H=20, hash="sign", scope="input")),
]


@pytest.fixture(scope="module")
def m1(get_workload):
    wl = get_workload("conv2")
    w1 = np.ascontiguousarray(wl.w[:1])
    b1 = np.ascontiguousarray(wl.b[:1])
    return wl, w1, b1


def test_im2col_pass_exact_m1(benchmark, m1):
    wl, w1, b1 = m1
    pedantic(benchmark, lambda: pyadr.conv2d_forward(wl.x, w1, b1, wl.stride, wl.padding))
    benchmark.extra_info.update(layer="conv2", M=1)


@pytest.mark.parametrize("name,kw", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_hash_group_m1(benchmark, m1, name, kw):
    wl, w1, b1 = m1
    cfg = pyadr.ReuseConfig(**kw)
    y, ctx = pedantic(benchmark, lambda: pyadr.conv2d_forward(wl.x, w1, b1, wl.stride, wl.padding, reuse=cfg))
    n_sub = ctx.stats.rows * ctx.stats.blocks
    info = dict(layer="conv2", M=1, config=repr(cfg), rc=float(ctx.stats.rc),
                clusters=int(np.sum(ctx.stats.clusters)), subvectors=n_sub)
    if benchmark.stats is not None and getattr(benchmark.stats, "stats", None) is not None:
        info["ns_per_subvector"] = benchmark.stats.stats.median * 1e9 / n_sub
    benchmark.extra_info.update(info)
