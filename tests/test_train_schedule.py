"""The reuse schedule: cost model, layer choice, plateau and gap triggers, ladder, exact tail."""
import numpy as np
import pytest

from pyadr import ReuseConfig
from pyadr.train.data import make_synthetic
from pyadr.train.loader import BatchLoader
from pyadr.train.models import build_model, engine_layers
from pyadr.train.reuse_schedule import (ReuseSchedule, Rung, default_ladder, default_rungs,
                                        parse_ladder, predicted_speedup)


@pytest.fixture
def model_and_probes():
    data = make_synthetic(n_train=64, n_test=16)
    model = build_model("tiny", data.image_shape, data.num_classes, width=2.0, seed=0)
    loader = BatchLoader(data.train_images, data.train_labels, 16, data.mean, data.std, shuffle=False, prefetch=0)
    probes = [(x, y) for _, x, y in loader.epoch(0)][:2]
    return model, probes


def test_cost_model_and_default_rungs():
    assert predicted_speedup(64, 25, 20, 0.1) == pytest.approx(64 / (20 + 6.4 + 2.56))
    assert [r.H for r in default_rungs(1600, 64)] == [20, 24]
    assert [r.H for r in default_rungs(1600, 256)] == [20, 24, 28, 32]
    assert default_rungs(9, 64)[0].L == 9
    # L = C ("l2", hashed once per input pixel) when the layer has C >= 16 input channels
    assert [(r.L, r.H, r.hash) for r in default_rungs(1600, 64, 64)] == [(64, 12, "l2"), (64, 16, "l2")]
    assert [r.H for r in default_rungs(576, 128, 64)] == [12, 16, 20]
    assert default_rungs(25, 64, 1)[0].hash == "sign"
    assert Rung(25, 8, "l2").label() == "l2 L25 H8 w1"
    with pytest.raises(ValueError, match="H"):
        Rung(25, 65)


def test_default_layers_skip_the_first_conv_and_layers_without_gain(model_and_probes):
    model, probes = model_and_probes
    sched = ReuseSchedule("fixed", rungs=[Rung(4, 4)], min_speedup=0.0)
    events = sched.setup(model, probes, steps_per_epoch=10, total_steps=20)
    assert list(sched.plans) == ["conv2"] and model[0].reuse is None
    assert isinstance(model[3].reuse, ReuseConfig) and model[3].reuse.L == 4
    assert events[0]["layer"] == "conv2" and "rc" in events[0]["reason"]
    picky = ReuseSchedule("fixed", rungs=[Rung(4, 4)], min_speedup=100.0)
    picky.setup(model, probes, 10, 20)
    assert picky.plans == {} and all(l.reuse is None for _, l in engine_layers(model))
    with pytest.raises(ValueError, match="conv9"):
        ReuseSchedule("fixed", rungs=[Rung(4, 4)], layers=["conv9"]).setup(model, probes, 10, 20)


def test_adaptive_advances_on_a_plateau_then_goes_exact(model_and_probes):
    model, probes = model_and_probes
    sched = ReuseSchedule("adaptive", rungs=[Rung(4, 2), Rung(4, 6)], layers=["conv2"],
                          plateau_window=3, plateau_eps=0.05, check_every=0, exact_tail=0.0, min_dwell=0.0)
    sched.setup(model, probes, 10, 100)
    assert sched.label("conv2") == "sign L4 H2"
    events = []
    for step, loss in enumerate([2.0, 1.8, 1.6, 1.4, 1.2, 1.0]):    # improving: no change
        events += sched.after_step(step, loss, model, probes)
    assert events == []
    for step, loss in enumerate([1.0] * 6, start=6):                 # flat: plateau
        events += sched.after_step(step, loss, model, probes)
    assert len(events) == 1 and events[0]["to"] == "sign L4 H6" and "plateau" in events[0]["reason"]
    assert model[3].reuse.H == 6
    for step in range(12, 18):
        events += sched.after_step(step, 1.0, model, probes)
    assert events[-1]["to"] == "exact" and model[3].reuse is None
    assert sched.active() == []


def test_adaptive_min_dwell_holds_a_rung(model_and_probes):
    """A plateau advances a rung only after min_dwell of the steps on it (here 20 of 100)."""
    model, probes = model_and_probes
    sched = ReuseSchedule("adaptive", rungs=[Rung(4, 2), Rung(4, 6)], layers=["conv2"],
                          plateau_window=3, plateau_eps=0.05, check_every=0, exact_tail=0.0, min_dwell=0.2)
    sched.setup(model, probes, 10, 100)
    events = []
    for step in range(60):
        events += sched.after_step(step, 1.0, model, probes)
    assert [e["to"] for e in events] == ["sign L4 H6", "exact"]
    assert 20 <= events[0]["step"] <= 23 and "since step 0" in events[0]["reason"]
    assert events[1]["step"] - events[0]["step"] >= 20
    assert ReuseSchedule("adaptive").min_dwell == 0.25
    with pytest.raises(ValueError, match="min_dwell"):
        ReuseSchedule("adaptive", min_dwell=1.5)


def test_adaptive_loss_gap_check_and_exact_tail(model_and_probes):
    model, probes = model_and_probes
    sched = ReuseSchedule("adaptive", rungs=[Rung(4, 1), Rung(4, 3)], layers=["conv2"],
                          plateau_window=1000, check_every=2, gap_delta=-1.0, exact_tail=0.5)
    sched.setup(model, probes, 10, 20)
    assert sched.after_step(0, 1.0, model, probes) == []
    events = sched.after_step(1, 1.0, model, probes)     # any gap exceeds delta = -100 %
    assert events and "loss gap" in events[0]["reason"] and events[0]["step"] == 2
    gaps = sched.loss_gaps(model, probes)
    assert set(gaps) == {"conv2"} and model[3].reuse.H == 3          # restored after probing
    assert sched.before_step(9, 10) == []
    tail = sched.before_step(10, 10)
    assert tail[0]["to"] == "exact" and "exact tail" in tail[0]["reason"]


def test_ladder_milestones_and_state_round_trip(model_and_probes):
    model, probes = model_and_probes
    ladder = parse_ladder([{"epoch": 0.5, "L": 4, "H": 3}, {"epoch": 1, "L": 4, "H": 5},
                           {"epoch": 1.5, "exact": True}])
    sched = ReuseSchedule("ladder", ladder=ladder, layers=["conv2"])
    sched.setup(model, probes, steps_per_epoch=10, total_steps=20)
    assert sched.label("conv2") == "exact"                        # before the first milestone
    labels = []
    for step in range(20):
        sched.before_step(step, 10)
        labels.append(sched.label("conv2"))
    assert labels[4] == "exact" and labels[5] == "sign L4 H3" and labels[10] == "sign L4 H5"
    assert labels[15] == "exact"
    other = ReuseSchedule("ladder", ladder=ladder, layers=["conv2"])
    sched.before_step(12, 10)
    other.load_state_dict(sched.state_dict(), model)
    assert other.label("conv2") == "sign L4 H5" and model[3].reuse.H == 5
    assert [r for _, r in default_ladder(4)][2] is None
    with pytest.raises(ValueError, match="increasing"):
        parse_ladder([{"epoch": 1, "L": 4, "H": 3}, {"epoch": 0.5, "exact": True}])
    with pytest.raises(ValueError, match="strategy"):
        ReuseSchedule("sometimes")


def test_adaptive_skips_rungs_that_no_longer_pay(model_and_probes, monkeypatch):
    """rc measured when a layer advances decides whether the next rung still pays: here the setup
    probe sees rc 0.05 for both rungs and the later one 0.95, so the plateau goes straight to exact."""
    model, probes = model_and_probes
    measured = iter([0.05, 0.05, 0.95])
    monkeypatch.setattr(ReuseSchedule, "_measure_rc", staticmethod(lambda *a: next(measured)))
    sched = ReuseSchedule("adaptive", rungs=[Rung(4, 2), Rung(4, 6)], plateau_window=3, plateau_eps=0.05,
                          check_every=0, exact_tail=0.0, min_dwell=0.0, min_speedup=1.2)
    sched.setup(model, probes, 10, 100)
    assert sched.label("conv2") == "sign L4 H2"
    events = []
    for step in range(6):
        events += sched.after_step(step, 1.0, model, probes)
    assert [e["to"] for e in events] == ["exact"] and model[3].reuse is None
    assert "skipped" in events[0]["reason"] and "sign L4 H6: rc 0.950 now" in events[0]["reason"]
    with pytest.raises(StopIteration):      # nothing measured after the layer went exact
        next(measured)
