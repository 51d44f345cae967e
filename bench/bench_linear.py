"""Fully connected layer (CifarNet fc1 on real features, 3136 -> 384, batch 128): exact, reuse, torch."""
import numpy as np
import pytest

from conftest import pedantic
from workloads import fc_layer, rel_err

import pyadr

POINTS = [
    ("exact", None),
    ("sign_L64_H12", dict(L=64, H=12)),
    ("sign_L25_H20", dict(L=25, H=20)),
    ("l2_L25_H8", dict(L=25, H=8, hash="l2")),
]


@pytest.fixture(scope="module")
def fc(fashion, bench_threads):
    x, w, b = fc_layer()
    y, ctx = pyadr.linear_forward(x, w, b)
    dy = np.random.default_rng(8).standard_normal(y.shape).astype(np.float32)
    dx, dw, db = pyadr.linear_backward(dy, ctx)
    return dict(x=x, w=w, b=b, y=y, dy=dy, dw=dw)


@pytest.mark.parametrize("name,kw", POINTS, ids=[p[0] for p in POINTS])
def test_linear_forward(benchmark, fc, name, kw):
    cfg = None if kw is None else pyadr.ReuseConfig(**kw)
    y, ctx = pedantic(benchmark, lambda: pyadr.linear_forward(fc["x"], fc["w"], fc["b"], reuse=cfg))
    benchmark.extra_info.update(rc=1.0 if cfg is None else float(ctx.stats.rc), rel_err=rel_err(y, fc["y"]))


@pytest.mark.parametrize("name,kw", POINTS, ids=[p[0] for p in POINTS])
def test_linear_fwd_bwd(benchmark, fc, name, kw):
    cfg = None if kw is None else pyadr.ReuseConfig(**kw)

    def step():
        y, ctx = pyadr.linear_forward(fc["x"], fc["w"], fc["b"], reuse=cfg)
        return y, ctx, pyadr.linear_backward(fc["dy"], ctx)

    y, ctx, (dx, dw, db) = pedantic(benchmark, step)
    benchmark.extra_info.update(rc=1.0 if cfg is None else float(ctx.stats.rc), rel_err=rel_err(y, fc["y"]),
                                rel_err_dw=rel_err(dw, fc["dw"]))


def test_torch_linear_fwd_bwd(benchmark, fc, torch_mod):
    F = torch_mod.nn.functional
    x = torch_mod.from_numpy(np.array(fc["x"])).requires_grad_(True)
    w = torch_mod.from_numpy(np.array(fc["w"])).requires_grad_(True)
    b = torch_mod.from_numpy(np.array(fc["b"])).requires_grad_(True)
    dy = torch_mod.from_numpy(fc["dy"])

    def step():
        y = F.linear(x, w, b)
        return torch_mod.autograd.grad(y, (x, w, b), dy)

    pedantic(benchmark, step)
    benchmark.extra_info.update(torch=torch_mod.__version__)
