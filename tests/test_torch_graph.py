"""pyadr.torch under PyTorch's graph tools: torch.compile(fullgraph=True), torch.export, ONNX
export of the exact path, torch.func.grad / vmap, and the clear errors for what is not supported
(double backward, vmap with reuse). The model is a small CifarNet of pyadr layers."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import pyadr  # noqa: E402
import pyadr.torch as pt  # noqa: E402
from pyadr.torch import _runtime  # noqa: E402

F = torch.nn.functional
REUSE = pyadr.ReuseConfig(L=20, H=8, seed=1)


class CifarNet(torch.nn.Module):
    """CifarNet's shape (conv 5x5, pool, conv 5x5, pool, fc, fc) at Fashion-MNIST size, narrow."""

    def __init__(self, reuse=None):
        super().__init__()
        self.conv1 = pt.Conv2d(1, 6, 5, padding=2)
        self.conv2 = pt.Conv2d(6, 8, 5, padding=2, reuse=reuse)
        self.fc1 = pt.Linear(8 * 7 * 7, 24)
        self.fc2 = pt.Linear(24, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def _batch(seed=0, n=4):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g).round(), torch.randint(0, 10, (n,), generator=g)


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("reuse", [None, REUSE], ids=["exact", "reuse"])
def test_compile_fullgraph_matches_eager_forward_backward_and_stats(reuse):
    torch.manual_seed(0)
    model = CifarNet(reuse)
    x, y = _batch()
    F.cross_entropy(model(x), y).backward()
    eager_out, eager_grads = model(x).detach(), _grads(model)
    eager_rc = model.conv2.last_stats.rc if reuse else None
    model.zero_grad()
    model.conv2.last_stats = None
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True)     # a graph break would raise here
    out = compiled(x)
    F.cross_entropy(out, y).backward()
    torch.testing.assert_close(out.detach(), eager_out, rtol=1e-5, atol=1e-5)
    for n, g in _grads(model).items():
        torch.testing.assert_close(g, eager_grads[n], rtol=1e-4, atol=1e-5, msg=n)
    if reuse is None:
        assert model.conv2.last_stats is None
    else:   # the stats of the compiled forward reach the layer
        assert model.conv2.last_stats is not None and model.conv2.last_stats.rc == eager_rc
        assert 0 < eager_rc < 1
    del out
    assert _runtime.live_contexts() == 0          # the reuse context went with the backward


def test_export_exact_and_reuse():
    torch.manual_seed(1)
    x, _ = _batch(1)
    for reuse in (None, REUSE):
        model = CifarNet(reuse)
        with torch.no_grad():
            expected = model(x)
        ep = torch.export.export(model, (x,))
        ops = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
        assert "pyadr.conv2d.default" in ops
        assert ("pyadr.conv2d_reuse.default" in ops) == (reuse is not None)
        with torch.no_grad():
            torch.testing.assert_close(ep.module()(x), expected, rtol=1e-6, atol=1e-6)
    assert _runtime.live_contexts() == 0          # forward-only calls keep no context


def test_export_dynamic_batch():
    model = CifarNet()
    x, _ = _batch(2, n=4)
    batch = torch.export.Dim("batch", min=2, max=64)
    ep = torch.export.export(model, (x,), dynamic_shapes={"x": {0: batch}})
    x8, _ = _batch(3, n=8)
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(x8), model(x8), rtol=1e-6, atol=1e-6)


def test_onnx_export_of_the_exact_path_is_a_standard_conv(tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    model = CifarNet().eval()
    x, _ = _batch(4)
    path = str(tmp_path / "cifarnet.onnx")
    torch.onnx.export(model, (x,), path, dynamo=True)
    ops = [n.op_type for n in onnx.load(path).graph.node]
    assert ops.count("Conv") == 2 and ops.count("Gemm") == 2, ops
    sess = ort.InferenceSession(path)
    out = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(out, model(x).numpy(), rtol=1e-4, atol=1e-5)
    model.conv2.reuse = REUSE          # reuse has no ONNX form: the export fails, it never drops reuse
    with pytest.raises(Exception):
        torch.onnx.export(model, (x,), str(tmp_path / "reuse.onnx"), dynamo=True)
    with pytest.raises(NotImplementedError, match="cannot be exported to ONNX"):   # TorchScript exporter
        torch.onnx.export(model, (x,), str(tmp_path / "reuse.onnx"), dynamo=False)


def test_func_grad_and_vmap_per_sample_gradients():
    from torch.func import functional_call, grad, vmap
    torch.manual_seed(2)
    model = CifarNet()
    x, y = _batch(5)
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss(p, xb, yb):
        return F.cross_entropy(functional_call(model, p, (xb,)), yb, reduction="sum")

    g = grad(loss)(params, x, y)
    loss(dict(model.named_parameters()), x, y).backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(g[n], p.grad, rtol=1e-5, atol=1e-6, msg=n)
    per_sample = vmap(grad(lambda p, xi, yi: loss(p, xi[None], yi[None])), in_dims=(None, 0, 0))(params, x, y)
    for n in g:
        assert per_sample[n].shape == (4,) + g[n].shape
        torch.testing.assert_close(per_sample[n].sum(0), g[n], rtol=1e-4, atol=1e-5, msg=n)


def test_vmap_of_the_exact_layer_matches_a_loop():
    from torch.func import vmap
    layer = pt.Conv2d(2, 3, 3, padding=1)
    xs = torch.randn(5, 2, 2, 6, 6)      # 5 mapped batches of 2 images
    torch.testing.assert_close(vmap(layer)(xs), torch.stack([layer(x) for x in xs]), rtol=1e-6, atol=1e-6)


def test_vmap_with_reuse_and_double_backward_raise_clear_errors():
    from torch.func import vmap
    layer = pt.Conv2d(2, 3, 3, padding=1, reuse=pyadr.ReuseConfig(L=9, H=4))
    with pytest.raises(NotImplementedError, match="vmap over a layer with reuse"):
        vmap(layer)(torch.randn(3, 2, 2, 6, 6))
    for reuse in (None, pyadr.ReuseConfig(L=9, H=4)):
        layer.reuse = reuse
        x = torch.randn(2, 2, 6, 6, requires_grad=True)
        (gx,) = torch.autograd.grad(layer(x).square().sum(), x, create_graph=True)
        with pytest.raises(NotImplementedError, match="double backward"):
            gx.sum().backward()


def test_traced_bad_geometry_is_a_clear_error():
    layer = pt.Conv2d(1, 2, 5)
    with pytest.raises(Exception, match="output size 0x0 is empty"):
        torch.export.export(layer, (torch.randn(1, 1, 4, 4),))
    with pytest.raises(ValueError, match="larger than the padded input"):   # eager: the native core
        layer(torch.randn(1, 1, 4, 4))


def test_custom_ops_pass_torch_library_opcheck():
    x = torch.randn(2, 3, 7, 6, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    b = torch.randn(4, requires_grad=True)
    from pyadr.torch import _ops
    torch.library.opcheck(_ops.conv2d, (x, w, b, [1, 2], [1, 0], [1, 1], -1))
    torch.library.opcheck(_ops.conv2d, (x.contiguous(memory_format=torch.channels_last), w, None,
                                        [1, 1], [0, 0], [1, 1], -1))
    dy = torch.randn(2, 4, 7, 6)
    torch.library.opcheck(_ops.conv2d_grad, (dy, x.detach(), w.detach(), [1, 1], [1, 1], [1, 1], True, True))
