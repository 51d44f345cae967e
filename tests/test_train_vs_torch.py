"""pyadr.nn training against PyTorch, step for step, in float64 (skipped without torch).

Both frameworks start from the same weights and see the same batches; in float64 the losses and
weights must agree to rounding after several SGD steps. (In float32 they drift apart within a
few steps — max-pool near-ties resolve differently under different GEMM rounding — so only
float64 can pin down that the layers, the loss and the optimizer compute the same thing.)
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import pyadr.nn as nn  # noqa: E402
from pyadr.train.models import build_model  # noqa: E402
from pyadr.train.torch_twin import torch_twin  # noqa: E402

tnn = torch.nn
F = torch.nn.functional


def torch_cifarnet(c, fc1, fc2, classes):
    return tnn.Sequential(
        tnn.Conv2d(1, c, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(3, 2, 1), tnn.LocalResponseNorm(9, 0.001, 0.75, 1.0),
        tnn.Conv2d(c, c, 5, padding=2), tnn.ReLU(), tnn.LocalResponseNorm(9, 0.001, 0.75, 1.0), tnn.MaxPool2d(3, 2, 1),
        tnn.Flatten(), tnn.Linear(c * 7 * 7, fc1), tnn.ReLU(), tnn.Linear(fc1, fc2), tnn.ReLU(), tnn.Linear(fc2, classes))


def images_with_background(rng, n):
    """28x28 images on a flat background (as in Fashion-MNIST: many exact ties in the poolings)."""
    x = np.full((n, 1, 28, 28), -0.8)
    for i in range(n):
        h0, w0 = rng.integers(2, 10, size=2)
        x[i, 0, h0:h0 + 14, w0:w0 + 12] = rng.standard_normal((14, 12)) + 1.0
    return x


def copy_weights(ours, ref):
    params = [p for _, p in ours.named_parameters()]
    ref_params = list(ref.parameters())
    for _, mod, name in ours.named_buffers():
        setattr(mod, name, getattr(mod, name).astype(np.float64))
    assert len(params) == len(ref_params)
    with torch.no_grad():
        for p, t in zip(params, ref_params):
            p.data = p.data.astype(np.float64)
            assert t.shape == p.data.shape
            t.copy_(torch.from_numpy(p.data))
    return params, ref_params


def run_twins(ours, ref, batches, **sgd):
    params, ref_params = copy_weights(ours, ref)
    opt = nn.SGD(params, **sgd)
    ref_opt = torch.optim.SGD(ref_params, **sgd)
    ours.train()
    ref.train()
    for x, y in batches:
        loss, dlogits, _ = nn.softmax_cross_entropy(ours.forward(x), y)
        ours.backward(dlogits)
        opt.step()
        ref_loss = F.cross_entropy(ref(torch.from_numpy(x)), torch.from_numpy(y))
        ref_opt.zero_grad()
        ref_loss.backward()
        ref_opt.step()
        assert loss == pytest.approx(ref_loss.item(), rel=1e-12)
    for p, t in zip(params, ref_params):
        np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-9, atol=1e-12)


def test_cifarnet_training_matches_torch_float64():
    rng = np.random.default_rng(0)
    ours = build_model("cifarnet", (1, 28, 28), 10, width=0.25, seed=3)
    ref = torch_cifarnet(16, 96, 48, 10).double()
    batches = [(images_with_background(rng, 16), rng.integers(0, 10, 16)) for _ in range(6)]
    run_twins(ours, ref, batches, lr=0.05, momentum=0.9)


@pytest.mark.parametrize("name", ["cifarnet", "alexnet", "vgg11"])
def test_torch_twin_computes_the_same_forward(name):
    """torch_twin (used by `pyadr profile` for PyTorch's side-by-side step time) builds the same
    network with the same weights: equal eval-mode outputs in float64."""
    model = build_model(name, (1, 28, 28), 10, width=0.125, seed=1)
    for _, p in model.named_parameters():
        p.data = p.data.astype(np.float64)
    twin = torch_twin(model)
    assert next(twin.parameters()).dtype == torch.float64
    x = images_with_background(np.random.default_rng(2), 4)
    model.eval()
    twin.eval()
    np.testing.assert_allclose(model.forward(x), twin(torch.from_numpy(x)).detach().numpy(), rtol=1e-10, atol=1e-12)


def test_torch_twin_rejects_unknown_layers():
    class Odd(nn.Module):
        def forward(self, x):
            return x
    with pytest.raises(ValueError, match="Odd"):
        torch_twin(nn.Sequential(nn.ReLU(), Odd()))


def test_batchnorm_avgpool_nesterov_weight_decay_match_torch_float64():
    rng = np.random.default_rng(1)
    r = np.random.default_rng(2)
    ours = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1, rng=r), nn.BatchNorm2d(6), nn.ReLU(), nn.AvgPool2d(2),
                         nn.Conv2d(6, 8, 3, stride=2, padding=1, rng=r), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 2 * 2, 5, rng=r))
    ref = tnn.Sequential(tnn.Conv2d(3, 6, 3, padding=1), tnn.BatchNorm2d(6), tnn.ReLU(), tnn.AvgPool2d(2),
                         tnn.Conv2d(6, 8, 3, stride=2, padding=1), tnn.BatchNorm2d(8), tnn.ReLU(),
                         tnn.MaxPool2d(2), tnn.Flatten(), tnn.Linear(8 * 2 * 2, 5)).double()
    batches = [(rng.standard_normal((8, 3, 16, 16)), rng.integers(0, 5, 8)) for _ in range(5)]
    run_twins(ours, ref, batches, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    bn_ours = [m for _, m in ours.named_modules() if isinstance(m, nn.BatchNorm2d)]
    bn_ref = [m for m in ref.modules() if isinstance(m, tnn.BatchNorm2d)]
    for a, b in zip(bn_ours, bn_ref):
        np.testing.assert_allclose(a.running_mean, b.running_mean.numpy(), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(a.running_var, b.running_var.numpy(), rtol=1e-9, atol=1e-12)
