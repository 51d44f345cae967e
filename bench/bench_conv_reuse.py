"""Deep-reuse convolution at the coarse and the accuracy-keeping points (forward, backward, both).

extra_info: rc, rel_err = ||y_reuse - y|| / ||y|| (and of dW for the same dy), ctx_nbytes and its
ratio to the exact context.
"""
import numpy as np
import pytest

from conftest import pedantic
from workloads import rel_err, reuse_config, reuse_points

import pyadr

LAYERS = ("conv2", "conv1", "vgg")
POINTS = reuse_points()


def _cfg(wl, kw):
    return reuse_config(wl.K, **dict(kw))[0]


def _info(benchmark, wl, layer, label, cfg, y, ctx, grads=None):
    benchmark.extra_info.update(layer=layer, config=repr(cfg), label=label, rc=float(ctx.stats.rc),
                                rel_err=rel_err(y, wl.y), ctx_nbytes=int(ctx.nbytes),
                                mem_vs_exact=ctx.nbytes / wl.exact_nbytes)
    if grads is not None:
        benchmark.extra_info.update(rel_err_dx=rel_err(grads[0], wl.dx), rel_err_dw=rel_err(grads[1], wl.dw))


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("pid,label,kw", POINTS, ids=[p[0] for p in POINTS])
def test_reuse_forward(benchmark, get_workload, layer, pid, label, kw):
    wl = get_workload(layer)
    cfg = _cfg(wl, kw)
    y, ctx = pedantic(benchmark, lambda: pyadr.conv2d_forward(*wl.args, reuse=cfg))
    _info(benchmark, wl, layer, label, cfg, y, ctx)


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("pid,label,kw", POINTS, ids=[p[0] for p in POINTS])
def test_reuse_backward(benchmark, get_workload, layer, pid, label, kw):
    wl = get_workload(layer)
    cfg = _cfg(wl, kw)
    held = {}

    def setup():
        held["y"], held["ctx"] = pyadr.conv2d_forward(*wl.args, reuse=cfg)
        return (wl.dy, held["ctx"]), {}

    grads = pedantic(benchmark, pyadr.conv2d_backward, setup=setup)
    _info(benchmark, wl, layer, label, cfg, held["y"], held["ctx"], grads)


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("pid,label,kw", POINTS, ids=[p[0] for p in POINTS])
def test_reuse_fwd_bwd(benchmark, get_workload, layer, pid, label, kw):
    wl = get_workload(layer)
    cfg = _cfg(wl, kw)

    def step():
        y, ctx = pyadr.conv2d_forward(*wl.args, reuse=cfg)
        return y, ctx, pyadr.conv2d_backward(wl.dy, ctx)

    y, ctx, grads = pedantic(benchmark, step)
    _info(benchmark, wl, layer, label, cfg, y, ctx, grads)
    assert np.isfinite(y).all()
