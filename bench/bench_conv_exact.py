"""Exact convolution: pyadr vs torch F.conv2d (forward, backward, forward+backward)."""
import numpy as np
import pytest

from conftest import pedantic

import pyadr

LAYERS = ("conv2", "conv1", "vgg")


@pytest.mark.parametrize("layer", LAYERS)
def test_pyadr_exact_forward(benchmark, get_workload, layer):
    wl = get_workload(layer)
    y, ctx = pedantic(benchmark, lambda: pyadr.conv2d_forward(*wl.args))
    benchmark.extra_info.update(layer=layer, rc=1.0, rel_err=0.0, ctx_nbytes=ctx.nbytes)
    assert y.shape == wl.y.shape


@pytest.mark.parametrize("layer", LAYERS)
def test_pyadr_exact_backward(benchmark, get_workload, layer):
    wl = get_workload(layer)

    def setup():
        return (wl.dy, pyadr.conv2d_forward(*wl.args)[1]), {}

    dx, dw, db = pedantic(benchmark, pyadr.conv2d_backward, setup=setup)
    benchmark.extra_info.update(layer=layer, rc=1.0, rel_err=0.0)
    assert dx.shape == wl.x.shape and dw.shape == wl.w.shape


@pytest.mark.parametrize("layer", LAYERS)
def test_pyadr_exact_fwd_bwd(benchmark, get_workload, layer):
    wl = get_workload(layer)

    def step():
        y, ctx = pyadr.conv2d_forward(*wl.args)
        return pyadr.conv2d_backward(wl.dy, ctx)

    pedantic(benchmark, step)
    benchmark.extra_info.update(layer=layer, rc=1.0, rel_err=0.0)


def _torch_args(torch, wl):
    x = torch.from_numpy(np.array(wl.x)).requires_grad_(True)
    w = torch.from_numpy(np.array(wl.w)).requires_grad_(True)
    b = torch.from_numpy(np.array(wl.b)).requires_grad_(True)
    return x, w, b


@pytest.mark.parametrize("layer", LAYERS)
def test_torch_forward(benchmark, get_workload, torch_mod, layer):
    wl = get_workload(layer)
    F = torch_mod.nn.functional
    x, w, b = _torch_args(torch_mod, wl)
    y = pedantic(benchmark, lambda: F.conv2d(x, w, b, wl.stride, wl.padding))
    err = float(np.linalg.norm(y.detach().numpy() - wl.y) / np.linalg.norm(wl.y))
    benchmark.extra_info.update(layer=layer, torch=torch_mod.__version__, rel_err_vs_pyadr=err)
    assert err < 1e-4


@pytest.mark.parametrize("layer", LAYERS)
def test_torch_backward(benchmark, get_workload, torch_mod, layer):
    wl = get_workload(layer)
    F = torch_mod.nn.functional
    x, w, b = _torch_args(torch_mod, wl)
    dy = torch_mod.from_numpy(wl.dy)

    def setup():
        return (F.conv2d(x, w, b, wl.stride, wl.padding), (x, w, b), dy), {}

    dx, dw, db = pedantic(benchmark, torch_mod.autograd.grad, setup=setup)
    err = float(np.linalg.norm(dw.numpy() - wl.dw) / np.linalg.norm(wl.dw))
    benchmark.extra_info.update(layer=layer, torch=torch_mod.__version__, rel_err_dw_vs_pyadr=err)
    assert err < 1e-3


@pytest.mark.parametrize("layer", LAYERS)
def test_torch_fwd_bwd(benchmark, get_workload, torch_mod, layer):
    wl = get_workload(layer)
    F = torch_mod.nn.functional
    x, w, b = _torch_args(torch_mod, wl)
    dy = torch_mod.from_numpy(wl.dy)

    def step():
        y = F.conv2d(x, w, b, wl.stride, wl.padding)
        return torch_mod.autograd.grad(y, (x, w, b), dy)

    pedantic(benchmark, step)
    benchmark.extra_info.update(layer=layer, torch=torch_mod.__version__)
