"""SGD (PyTorch semantics), LR schedules, Module state and a model overfitting a tiny batch."""
import numpy as np
import pytest

import pyadr.nn as nn


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def torch_sgd_reference(p0, grads, lr, momentum, wd, nesterov):
    p, buf = p0.copy(), None
    for g in grads:
        d = g + wd * p
        if momentum:
            buf = d.copy() if buf is None else momentum * buf + d
            d = d + momentum * buf if nesterov else buf
        p = p - lr * d
    return p


@pytest.mark.parametrize("momentum,wd,nesterov", [(0.0, 0.0, False), (0.9, 5e-4, False), (0.9, 1e-3, True)])
def test_sgd_matches_pytorch_update_rule(rng, momentum, wd, nesterov):
    p0 = rng.standard_normal(5)
    grads = [rng.standard_normal(5) for _ in range(4)]
    param = nn.Parameter(p0.copy())
    opt = nn.SGD([param], lr=0.1, momentum=momentum, weight_decay=wd, nesterov=nesterov)
    for g in grads:
        param.grad = g
        opt.step()
    np.testing.assert_allclose(param.data, torch_sgd_reference(p0, grads, 0.1, momentum, wd, nesterov))


def test_sgd_state_round_trip(rng):
    a, b = nn.Parameter(rng.standard_normal(3)), nn.Parameter(rng.standard_normal(3))
    opt = nn.SGD([a], lr=0.1, momentum=0.9)
    a.grad = np.ones(3)
    opt.step()
    opt2 = nn.SGD([b], lr=0.5)
    opt2.load_state_dict(opt.state_dict())
    assert opt2.momentum == 0.9 and opt2.lr == 0.1
    np.testing.assert_array_equal(opt2.buffers[0], opt.buffers[0])
    with pytest.raises(ValueError, match="lr"):
        nn.SGD([a], lr=-1)


def test_lr_schedules():
    step = nn.make_lr_schedule("step", 0.1, 100, 10, milestones_epochs=[2, 5], gamma=0.1)
    assert [step(s) for s in (0, 19, 20, 49, 50)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001])
    cos = nn.make_lr_schedule("cosine", 0.1, 100, 10, min_lr=0.0)
    assert cos(0) == pytest.approx(0.1) and cos(50) == pytest.approx(0.05) and cos(100) == pytest.approx(0.0)
    assert nn.make_lr_schedule("constant", 0.3, 10, 1)(7) == 0.3
    with pytest.raises(ValueError, match="lr schedule"):
        nn.make_lr_schedule("linear", 0.1, 10, 1)


def test_state_dict_round_trip_and_modes(rng):
    def make(seed):
        r = np.random.default_rng(seed)
        return nn.Sequential(nn.Conv2d(1, 2, 3, rng=r), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(),
                             nn.Linear(2 * 4 * 4, 3, rng=r))
    m1, m2 = make(0), make(1)
    m1.forward(rng.standard_normal((2, 1, 6, 6)).astype(np.float32))   # move running stats
    sd = m1.state_dict()
    assert list(sd) == ["0.weight", "0.bias", "1.weight", "1.bias", "4.weight", "4.bias",
                        "1.running_mean", "1.running_var"]
    m2.load_state_dict(sd)
    for k, v in m2.state_dict().items():
        np.testing.assert_array_equal(v, sd[k])
    m2.eval()
    assert all(not mod.training for _, mod in m2.named_modules())
    assert m2.output_shape((1, 6, 6)) == (3,)
    with pytest.raises(ValueError, match="missing"):
        m2.load_state_dict({k: v for k, v in sd.items() if k != "0.bias"})


def test_tiny_model_overfits_a_batch(rng):
    r = np.random.default_rng(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, rng=r), nn.ReLU(), nn.MaxPool2d(2),
                          nn.LocalResponseNorm(3, alpha=1e-3), nn.Flatten(), nn.Linear(4 * 3 * 3, 16, rng=r),
                          nn.ReLU(), nn.Linear(16, 3, rng=r))
    x = rng.standard_normal((6, 1, 6, 6)).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1, 2])
    opt = nn.SGD(model.parameters(), lr=0.1, momentum=0.9)
    first = None
    for _ in range(60):
        logits = model.forward(x)
        loss, dlogits, correct = nn.softmax_cross_entropy(logits, y)
        first = loss if first is None else first
        model.backward(dlogits)
        opt.step()
    assert loss < 0.05 * first and correct == 6
