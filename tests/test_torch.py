"""pyadr.torch: drop-in Conv2d/Linear modules, autograd, convert() and set_reuse()."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import pyadr  # noqa: E402
import pyadr.torch as pt  # noqa: E402

F = torch.nn.functional


def test_import_pyadr_does_not_import_torch(tmp_path):
    import subprocess
    import sys
    code = "import sys, pyadr; pyadr.ReuseConfig(); print('torch' in sys.modules)"
    # run outside the checkout: `-c` puts the working directory first on sys.path, and the
    # checkout's pyadr/ has no compiled _native (ReuseConfig reads its limits from it)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=tmp_path)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("stride,padding,dilation", [(1, 0, 1), (2, 1, 1), (1, 2, 2), ((2, 1), (1, 0), 1)])
def test_conv2d_matches_torch(stride, padding, dilation):
    torch.manual_seed(0)
    ref = torch.nn.Conv2d(3, 5, 3, stride=stride, padding=padding, dilation=dilation)
    layer = pt.Conv2d(3, 5, 3, stride=stride, padding=padding, dilation=dilation)
    layer.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 9, 8, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    y, y_ref = layer(x), ref(x2)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(y)
    y.backward(g)
    y_ref.backward(g)
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(layer.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(layer.bias.grad, ref.bias.grad, rtol=1e-4, atol=1e-4)


def test_conv2d_gradcheck_float64():
    torch.manual_seed(1)
    layer = pt.Conv2d(2, 3, 3, stride=2, padding=1, dtype=torch.float64)
    x = torch.randn(2, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: pt.conv2d(x, w, b, stride=2, padding=1),
                                    (x, layer.weight, layer.bias))
    assert torch.autograd.gradcheck(lambda x, w: pt.conv2d(x, w, None, padding=(0, 1), dilation=2),
                                    (x, torch.randn(3, 2, 2, 2, dtype=torch.float64, requires_grad=True)))


def test_linear_matches_torch_and_gradcheck():
    torch.manual_seed(2)
    ref = torch.nn.Linear(7, 4)
    layer = pt.Linear(7, 4)
    layer.load_state_dict(ref.state_dict())
    x = torch.randn(3, 2, 7)  # extra leading dims
    torch.testing.assert_close(layer(x), ref(x), rtol=1e-5, atol=1e-5)
    xd = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 7, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(pt.linear, (xd, w, b))
    assert torch.autograd.gradcheck(lambda x, w: pt.linear(x, w), (xd, w))


def test_no_bias_and_unbatched_input():
    layer = pt.Conv2d(2, 3, 3, bias=False, padding=1)
    assert layer.bias is None
    x = torch.randn(2, 6, 6)
    y = layer(x)
    assert y.shape == (3, 6, 6)
    torch.testing.assert_close(y, F.conv2d(x[None], layer.weight, None, padding=1)[0], rtol=1e-5, atol=1e-5)


def test_padding_same_and_valid():
    for pad in ("same", "valid"):
        torch.manual_seed(0)
        layer = pt.Conv2d(2, 3, 5, padding=pad)
        x = torch.randn(1, 2, 8, 8)
        torch.testing.assert_close(layer(x), F.conv2d(x, layer.weight, layer.bias, padding=pad),
                                   rtol=1e-5, atol=1e-5)


def test_reuse_forward_backward_equal_numpy_api():
    torch.manual_seed(3)
    cfg = pyadr.ReuseConfig(L=6, H=8, seed=2)
    layer = pt.Conv2d(3, 4, 3, padding=1, reuse=cfg)
    x = torch.rand(2, 3, 8, 8, requires_grad=True)
    y = layer(x)
    assert layer.last_stats is not None and 0 < layer.last_stats.rc <= 1
    y_np, ctx = pyadr.conv2d_forward(x.detach().numpy(), layer.weight.detach().numpy(),
                                     layer.bias.detach().numpy(), padding=1, reuse=cfg)
    np.testing.assert_array_equal(y.detach().numpy(), y_np)
    g = torch.randn_like(y)
    y.backward(g)
    dx, dw, db = pyadr.conv2d_backward(g.numpy(), ctx)
    np.testing.assert_array_equal(x.grad.numpy(), dx)
    np.testing.assert_array_equal(layer.weight.grad.numpy(), dw)
    np.testing.assert_array_equal(layer.bias.grad.numpy(), db)
    layer.reuse = None  # settable between steps
    torch.testing.assert_close(layer(x), F.conv2d(x, layer.weight, layer.bias, padding=1), rtol=1e-5, atol=1e-5)
    assert layer.last_stats is None
    with pytest.raises(TypeError, match="ReuseConfig"):
        layer.reuse = {"L": 3}


def test_reuse_rc1_limit_equals_exact():
    torch.manual_seed(4)
    cfg = pyadr.ReuseConfig(L=27, H=64, seed=0)  # K = 3*3*3: every row its own cluster
    layer = pt.Conv2d(3, 4, 3, padding=1, reuse=cfg, dtype=torch.float64)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    y = layer(x)
    assert layer.last_stats.rc == 1.0
    torch.testing.assert_close(y, F.conv2d(x, layer.weight, layer.bias, padding=1))


def test_linear_reuse_identical_rows():
    layer = pt.Linear(6, 3, reuse=pyadr.ReuseConfig(L=3, H=4))
    x = torch.ones(8, 6) * torch.arange(1, 7, dtype=torch.float32)
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-5)
    assert layer.last_stats.rc == pytest.approx(1 / 8)


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.dw = torch.nn.Conv2d(4, 4, 3, padding=1, groups=4)  # not convertible: left to torch
        self.conv2 = torch.nn.Conv2d(4, 6, 3)
        self.head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6 * 4 * 4, 5))

    def forward(self, x):
        return self.head(F.relu(self.conv2(F.relu(self.dw(F.relu(self.conv1(x)))))))


def test_convert_shares_parameters_and_matches():
    torch.manual_seed(5)
    net = _Net()
    x = torch.randn(3, 1, 6, 6)
    y_ref = net(x)
    params_before = [id(p) for p in net.parameters()]
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    cfg = pyadr.ReuseConfig(L=4, H=6)
    pt.convert(net, lambda name, m: cfg if name == "conv2" else (False if name == "conv1" else None),
               linear=True)
    assert type(net.conv1) is torch.nn.Conv2d
    assert type(net.dw) is torch.nn.Conv2d
    assert isinstance(net.conv2, pt.Conv2d) and net.conv2.reuse is cfg
    assert isinstance(net.head[1], pt.Linear) and net.head[1].reuse is None
    assert [id(p) for p in net.parameters()] == params_before
    pt.set_reuse(net, None)
    torch.testing.assert_close(net(x), y_ref, rtol=1e-5, atol=1e-5)
    names = [n for n, _ in pt.reuse_layers(net)]
    assert names == ["conv2", "head.1"]
    # a training step through the optimizer built before the swap
    w0 = net.conv2.weight.detach().clone()
    pt.set_reuse(net, lambda n, m: cfg if n == "conv2" else False)
    net(x).sum().backward()
    opt.step()
    assert not torch.equal(w0, net.conv2.weight)
    assert net.conv2.last_stats is not None
    # state_dict compatibility with the torch model
    fresh = _Net()
    fresh.load_state_dict(net.state_dict())


def test_convert_single_layer_and_policy_config():
    lin = torch.nn.Linear(4, 2)
    new = pt.convert(lin, pyadr.ReuseConfig(L=2, H=3))
    assert isinstance(new, pt.Linear) and new.reuse.L == 2
    assert new.weight is lin.weight


def test_errors():
    layer = pt.Conv2d(2, 3, 3)
    with pytest.raises(TypeError, match="float16, bfloat16, float32 or float64"):
        layer(torch.randint(0, 3, (1, 2, 5, 5)))
    with pytest.raises(TypeError, match="weight must have the input's dtype"):
        layer(torch.randn(1, 2, 5, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="L must be <= K"):
        pt.Conv2d(2, 3, 3, reuse=pyadr.ReuseConfig(L=100))(torch.randn(1, 2, 5, 5))


def test_reuse_contexts_live_only_as_long_as_the_autograd_graph():
    import copy
    from pyadr.torch import _runtime
    layer = pt.Conv2d(3, 4, 3, reuse=pyadr.ReuseConfig(L=9, H=4))
    x = torch.rand(2, 3, 6, 6, requires_grad=True)
    base = _runtime.live_contexts()
    with torch.no_grad():
        layer(x)
    assert _runtime.live_contexts() == base
    y = layer(x)
    assert _runtime.live_contexts() == base + 1
    y.sum().backward()
    assert _runtime.live_contexts() == base               # freed by the backward
    y = layer(x)
    del y                                                 # or with the graph
    assert _runtime.live_contexts() == base
    y = layer(x)
    y.sum().backward(retain_graph=True)
    y.sum().backward()                                    # a retained graph backpropagates twice
    del y
    assert _runtime.live_contexts() == base
    twin = copy.deepcopy(layer)                           # a copy has its own statistics
    twin.reuse = None
    twin(x)
    assert twin.last_stats is None and layer.last_stats is not None
