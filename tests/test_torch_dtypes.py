"""pyadr.torch beyond float32 NCHW on the CPU: float16/bfloat16 in and out, torch.autocast,
channels_last, CUDA routing (through the device seam, on the host emulator of the kernels), the
reuse config in the state_dict (torch.load(weights_only=True)), pickled layers, convert()'s default."""
import io
import pickle
import sys

import pytest

torch = pytest.importorskip("torch")
import pyadr  # noqa: E402
import pyadr.torch as pt  # noqa: E402
from pyadr.torch import _runtime  # noqa: E402

F = torch.nn.functional


def _pair(dtype=torch.float32, reuse=None, seed=0):
    torch.manual_seed(seed)
    ref = torch.nn.Conv2d(3, 5, 3, padding=1)
    layer = pt.Conv2d(3, 5, 3, padding=1, reuse=reuse)
    layer.load_state_dict(ref.state_dict())
    return ref.to(dtype), layer.to(dtype)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_in_and_out_computed_in_float32(dtype):
    ref, layer = _pair(dtype)
    x = torch.randn(2, 3, 8, 8).to(dtype).requires_grad_(True)
    y = layer(x)
    assert y.dtype == dtype
    # computed in float32 from the half inputs, rounded once at the end
    expected = F.conv2d(x.float(), layer.weight.float(), layer.bias.float(), padding=1).to(dtype)
    torch.testing.assert_close(y, expected, rtol=0, atol=0)
    y.float().square().sum().backward()
    assert x.grad.dtype == dtype and layer.weight.grad.dtype == dtype and layer.bias.grad.dtype == dtype
    x32 = x.detach().float().requires_grad_(True)
    w32 = layer.weight.detach().float().requires_grad_(True)
    F.conv2d(x32, w32, layer.bias.detach().float(), padding=1).to(dtype).float().square().sum().backward()
    tol = {"rtol": 2e-2, "atol": 2e-2}
    torch.testing.assert_close(x.grad.float(), x32.grad, **tol)
    torch.testing.assert_close(layer.weight.grad.float(), w32.grad, **tol)


def test_bfloat16_with_reuse_keeps_the_dtype():
    _, layer = _pair(torch.bfloat16, reuse=pyadr.ReuseConfig(L=9, H=6))
    x = torch.rand(2, 3, 8, 8).round().bfloat16().requires_grad_(True)
    y = layer(x)
    assert y.dtype == torch.bfloat16 and 0 < layer.last_stats.rc <= 1
    y.float().sum().backward()
    assert x.grad.dtype == torch.bfloat16 and torch.isfinite(x.grad.float()).all()


def test_autocast_bfloat16_runs_the_layer_in_bfloat16_like_torch():
    ref, layer = _pair()
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, y_ref = layer(x), ref(x)
        lin = pt.Linear(5 * 8 * 8, 4)
        z = lin(y.flatten(1))
    assert y.dtype == y_ref.dtype == torch.bfloat16 and z.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), y_ref.float(), rtol=2e-2, atol=2e-2)
    z.float().sum().backward()          # gradients reach the float32 parameters in float32
    assert layer.weight.grad.dtype == torch.float32 and x.grad.dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=False):
        assert layer(x).dtype == torch.float32


def test_channels_last_in_channels_last_out():
    ref, layer = _pair()
    x = torch.randn(2, 3, 8, 8).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    y = layer(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, ref(x), rtol=1e-5, atol=1e-5)
    y.sum().backward()
    assert x.grad.is_contiguous(memory_format=torch.channels_last)
    layer.reuse = pyadr.ReuseConfig(L=9, H=6)
    assert layer(x).is_contiguous(memory_format=torch.channels_last)
    assert layer(x.contiguous()).is_contiguous()


def test_cuda_tensor_without_cupy_is_a_clear_error(monkeypatch):
    from pyadr import gpu
    monkeypatch.setattr(gpu, "why_unavailable", lambda: "CuPy is not installed (test)")
    assert _runtime.route("cpu") == "cpu"
    with pytest.raises(RuntimeError, match="CUDA tensor needs pyadr's GPU backend.*CuPy is not installed"):
        _runtime.route("cuda")
    with pytest.raises(TypeError, match="CPU or CUDA tensors, got a tensor on 'xpu'"):
        _runtime.route("xpu")
    monkeypatch.setattr(_runtime, "device_type", lambda t: "cuda")   # the layer's input "is" on CUDA
    with pytest.raises(RuntimeError, match="CUDA tensor needs pyadr's GPU backend"):
        pt.Conv2d(3, 4, 3)(torch.randn(1, 3, 5, 5))


@pytest.mark.parametrize("reuse", [None, pyadr.ReuseConfig(L=9, H=6, seed=3)], ids=["exact", "reuse"])
def test_cuda_tensors_go_to_pyadr_gpu(gpu_backend, monkeypatch, reuse):
    """On the emulator, CPU tensors stand in for CUDA ones (device seam) and CuPy's from_dlpack
    is the emulated one: the layer's forward and backward must run pyadr.gpu's kernels."""
    if gpu_backend.name == "emulated":
        cupy = sys.modules["cupy"]
        monkeypatch.setattr(cupy, "from_dlpack", lambda t: t.numpy().view(cupy.ndarray), raising=False)
        monkeypatch.setattr(_runtime, "device_type", lambda t: "cuda")
        dev = "cpu"
    else:
        dev = "cuda"
    ref, layer = _pair(torch.float64, reuse=reuse)
    ref, layer = ref.to(dev), layer.to(dev)
    x = torch.rand(2, 3, 7, 6, dtype=torch.float64, device=dev).round().requires_grad_(True)
    x2 = x.detach().clone().requires_grad_(True)
    y = layer(x)
    y.square().sum().backward()
    if gpu_backend.name == "emulated":
        assert gpu_backend.launched, "no pyadr.gpu kernel ran"
    if reuse is None:
        y_ref = ref(x2)
        y_ref.square().sum().backward()
        torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(x.grad, x2.grad, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(layer.weight.grad, ref.weight.grad, rtol=1e-10, atol=1e-10)
    else:
        assert 0 < layer.last_stats.rc <= 1
        assert torch.isfinite(x.grad).all() and torch.isfinite(layer.weight.grad).all()


def test_reuse_travels_in_the_state_dict_and_loads_with_weights_only():
    cfg = pyadr.ReuseConfig(L=9, H=6, seed=4, hash="l2", width_scale=0.5, exact="dx")
    src = torch.nn.Sequential(pt.Conv2d(3, 4, 3, reuse=cfg), torch.nn.ReLU(), pt.Conv2d(4, 4, 3))
    buf = io.BytesIO()
    torch.save(src.state_dict(), buf)
    buf.seek(0)
    sd = torch.load(buf, weights_only=True)
    dst = torch.nn.Sequential(pt.Conv2d(3, 4, 3), torch.nn.ReLU(), pt.Conv2d(4, 4, 3, reuse=cfg))
    dst.load_state_dict(sd)
    assert dst[0].reuse == cfg and dst[2].reuse is None
    # plain torch modules load it strictly (the reuse entry is metadata, not a key) ...
    plain = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3))
    plain.load_state_dict(sd)
    # ... and a torch state_dict loads strictly into pyadr layers, which keep their reuse
    dst.load_state_dict(plain.state_dict())
    assert dst[0].reuse == cfg
    x = torch.rand(1, 3, 6, 6)
    torch.testing.assert_close(dst[2](dst[1](plain[0](x))), plain(x), rtol=1e-5, atol=1e-5)


def test_bad_reuse_entry_in_a_state_dict_is_reported():
    layer = pt.Conv2d(3, 4, 3)
    sd = layer.state_dict()
    sd._metadata[""]["pyadr_reuse"] = {"L": 0, "H": 4}
    with pytest.raises(RuntimeError, match="bad pyadr_reuse entry.*L must be >= 1"):
        layer.load_state_dict(sd)


def test_whole_layer_pickles_reuse_as_plain_data():
    cfg = pyadr.ReuseConfig(L=9, H=6, seed=5)
    model = torch.nn.Sequential(pt.Conv2d(3, 4, 3, reuse=cfg), pt.Linear(4, 2))
    x = torch.rand(2, 3, 5, 5).round()
    model[0](x)
    buf = io.BytesIO()
    torch.save(model, buf)
    assert b"ReuseConfig" not in buf.getvalue()
    buf.seek(0)
    with torch.serialization.safe_globals([pt.Conv2d, pt.Linear, torch.nn.Sequential]):
        loaded = torch.load(buf, weights_only=True)
    assert loaded[0].reuse == cfg and loaded[0].last_stats is None
    torch.testing.assert_close(loaded[0](x), model[0](x))
    assert loaded[0].last_stats.rc == model[0].last_stats.rc
    twin = pickle.loads(pickle.dumps(model[0]))       # a copy gets its own statistics slot
    twin.reuse = None
    twin(x)
    assert twin.last_stats is None and model[0].last_stats is not None


def test_convert_swaps_convolutions_only_by_default():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.Linear(2 * 4 * 4, 3))
    pt.convert(net)
    assert isinstance(net[0], pt.Conv2d) and type(net[2]) is torch.nn.Linear
    pt.convert(net, linear=True)
    assert isinstance(net[2], pt.Linear)
    assert net(torch.randn(2, 1, 6, 6)).shape == (2, 3)


def test_import_pyadr_torch_is_light(tmp_path):
    import subprocess
    code = ("import sys, pyadr.torch; print(sorted(m for m in ('cupy', 'onnx', 'onnxscript', 'torch._inductor') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout.strip() == "[]"
