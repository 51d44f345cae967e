"""pyadr.torch.ReuseScheduler: the pyadr.train schedules driving a plain PyTorch loop."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import pyadr  # noqa: E402
import pyadr.torch as pt  # noqa: E402
from pyadr.train.reuse_schedule import Rung  # noqa: E402
from pyadr.torch import ReuseScheduler  # noqa: E402

F = torch.nn.functional


def small_model(seed=0, bn=False):
    torch.manual_seed(seed)
    layers = [torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
              torch.nn.Conv2d(4, 8, 3, padding=1)]
    if bn:
        layers.append(torch.nn.BatchNorm2d(8))
    layers += [torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(8 * 3 * 3, 3)]
    return pt.convert(torch.nn.Sequential(*layers))


def batches(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        y = torch.randint(0, 3, (16,), generator=g)
        x = torch.randn(16, 1, 12, 12, generator=g) * 0.3
        x[:, 0, 2 + 3 * y, :] += 1.0                     # the class is a bright row
        out.append((x, y))
    return out


def train_steps(model, sched, opt, data):
    """One pass over data with sched.step after every optimizer step; the losses."""
    losses = []
    for x, y in data:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step(loss)
        losses.append(float(loss.detach()))
    return losses


def fake_timer(name, label, run):
    return 1.0 if label == "exact" else 0.02 * int(label.split(" H")[1].split()[0])


def test_fixed_schedule_sets_reuse_and_trains():
    model, data = small_model(), batches(8)
    sched = ReuseScheduler(model, "fixed", probes=data[:1], total_steps=16, rungs=[Rung(4, 4)], min_speedup=0.0)
    assert model[0].reuse is None and model[3].reuse.L == 4 and model[3].reuse.H == 4
    assert sched.labels()["conv2"] == "sign L4 H4" and sched.events[0]["layer"] == "conv2"
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = train_steps(model, sched, opt, data) + train_steps(model, sched, opt, data)
    assert np.mean(losses[-4:]) < np.mean(losses[:4]) and sched.step_count == 16
    assert model[3].last_stats is not None and 0 < model[3].last_stats.rc <= 1


def test_adaptive_advances_on_a_plateau_then_exact_tail():
    model, data = small_model(), batches(2)
    sched = ReuseScheduler(model, "adaptive", probes=data[:1], total_steps=40, layers=["conv2"],
                           rungs=[{"L": 4, "H": 2}, {"L": 4, "H": 6}], plateau_window=3, plateau_eps=0.05,
                           check_every=0, exact_tail=0.25, min_dwell=0.0)
    assert sched.labels()["conv2"] == "sign L4 H2"
    events = []
    for _ in range(6):
        events += sched.step(1.0)                        # flat loss: a plateau
    assert sched.labels()["conv2"] == "sign L4 H6" and "plateau" in events[0]["reason"]
    assert model[3].reuse.H == 6
    while sched.step_count < 30:
        sched.step(2.0 - sched.step_count * 0.05)        # improving
    assert sched.labels()["conv2"] == "exact" and model[3].reuse is None
    assert "exact tail" in sched.events[-1]["reason"]
    state = sched.state_dict()
    other = ReuseScheduler(small_model(), "adaptive", probes=data[:1], total_steps=40, layers=["conv2"],
                           rungs=[{"L": 4, "H": 2}, {"L": 4, "H": 6}])
    other.load_state_dict(state)
    assert other.step_count == 30 and other.labels() == sched.labels()


def test_ladder_from_config_dicts():
    model, data = small_model(), batches(1)
    sched = ReuseScheduler(model, "ladder", probes=data, total_steps=20, steps_per_epoch=10, layers=["conv2"],
                           ladder=[{"epoch": 0, "L": 4, "H": 3}, {"epoch": 1, "exact": True}])
    assert model[3].reuse.H == 3
    for _ in range(10):
        sched.step(1.0)
    assert model[3].reuse is None and "ladder milestone" in sched.events[-1]["reason"]


def test_tuned_picks_from_measured_frontier_and_restores_the_model():
    model, data = small_model(bn=True), batches(2)
    for p in model.parameters():
        p.grad = torch.full_like(p, 7.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    logs = []
    sched = ReuseScheduler(model, "tuned", probes=data[:1], total_steps=20, timer=fake_timer,
                           budget_start=0.9, budget_end=0.5, min_speedup=1.0, retune_every=4, log=logs.append)
    t = sched.schedule.tuned["conv2"]
    best = t["meas"][t["best"]]
    assert best["error"] <= 0.9 and sched.labels()["conv2"] != "exact" and model[3].reuse is not None
    assert model[0].reuse is None and logs and "fastest within error budget 0.900" in logs[0]
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k])              # BatchNorm buffers untouched
    assert all(torch.all(p.grad == 7.0) for p in model.parameters())
    for _ in range(4):
        sched.step(1.0)
    assert {m["step"] for m in t["meas"] if m is not None} >= {4}   # re-tuned at step 4


def test_tuned_measures_match_a_direct_call():
    model, data = small_model(), batches(1)
    sched = ReuseScheduler(model, "tuned", probes=data, total_steps=10, timer=fake_timer, min_speedup=1.0,
                           budget_start=0.9, budget_end=0.9)
    layer = dict(sched.model.engine_layers())["conv2"]
    x, dy = sched.model.capture_layer_io({"conv2": layer}, sched.probes[0])["conv2"]
    with torch.no_grad():
        h = model[2](model[1](model[0](data[0][0])))
    np.testing.assert_allclose(x, h.numpy(), rtol=1e-5, atol=1e-6)
    i = sched.schedule.tuned["conv2"]["best"]
    cand = sched.schedule.tuned["conv2"]["cands"][i]
    cfg = cand.config(layer.K, sched.schedule.plans["conv2"]["seed"])
    w = model[3].weight.detach().numpy()
    _, ctx = pyadr.conv2d_forward(x, w, None, padding=1, reuse=cfg)
    assert sched.schedule.tuned["conv2"]["meas"][i]["rc"] == pytest.approx(ctx.stats.rc)


def test_bad_input():
    with pytest.raises(ValueError, match="convert it first"):
        ReuseScheduler(torch.nn.Sequential(torch.nn.ReLU()), "fixed", probes=batches(1), total_steps=3)
    with pytest.raises(ValueError, match="total_steps"):
        ReuseScheduler(small_model(), "fixed", probes=batches(1), total_steps=0)
    with pytest.raises(ValueError, match="probes"):
        ReuseScheduler(small_model(), "fixed", probes=[], total_steps=3)
    with pytest.raises(ValueError, match="strategy"):
        ReuseScheduler(small_model(), "sometimes", probes=batches(1), total_steps=3)


def test_data_aware_planes_in_a_torch_loop():
    model, data = small_model(), batches(4)
    sched = ReuseScheduler(model, "fixed", probes=data[:1], total_steps=8, rungs=[Rung(4, 3, "l2")],
                           min_speedup=0.0, planes="pca", planes_every=2)
    planes = model[3].reuse.planes
    assert planes is not None and planes.shape == (4, 3) and sched.labels()["conv2"].endswith(" pca")
    np.testing.assert_allclose(planes.T @ planes, np.eye(3), atol=1e-10)
    kinds = [e["kind"] for e in sched.events]
    assert kinds.count("planes") == 1
    train_steps(model, sched, torch.optim.SGD(model.parameters(), lr=0.1), data)
    assert [e["step"] for e in sched.events if e["kind"] == "planes"] == [0, 2, 4]
    state = sched.state_dict()
    again = ReuseScheduler(small_model(seed=1), "fixed", probes=data[:1], total_steps=8, rungs=[Rung(4, 3, "l2")],
                           min_speedup=0.0, planes="pca", planes_every=2)
    again.load_state_dict(state)
    np.testing.assert_array_equal(again.model.layers[1][1].reuse.planes, model[3].reuse.planes)
