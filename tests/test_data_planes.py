"""Data-aware hash planes in the schedules (pyadr.train.data_planes): which planes every strategy
runs, the refit cadence, the schedule state, the trainer's option and its resume."""
import dataclasses
import json
import os

import numpy as np
import pytest

from pyadr import planes as pp
from pyadr.train.checkpoint import load_checkpoint
from pyadr.train.config import TrainConfig
from pyadr.train.data_planes import PlaneBank
from pyadr.train.layer_io import capture_layer_io
from pyadr.train.layer_tuner import Candidate, TunedSchedule
from pyadr.train.metrics import read_records
from pyadr.train.models import build_model, engine_layers
from pyadr.train.reuse_schedule import ReuseSchedule, Rung
from pyadr.train.trainer import Trainer


def _expected_planes(model, probes, name, L, H):
    layer = dict(engine_layers(model))[name]
    x = capture_layer_io(model, {name: layer}, probes[0])[name][0]
    return pp.principal_planes(x, L, H, kernel_size=layer.kernel_size, stride=layer.stride,
                               padding=layer.padding, dilation=layer.dilation,
                               seed=PlaneBank()._sample_seed(name, L))


def _sgd_nudge(model, scale=0.05):
    for p in model.parameters():
        p.data += scale * np.sign(p.data + 1e-3).astype(p.data.dtype)


def test_random_is_the_default_and_unchanged(model_and_probes):
    model, probes = model_and_probes
    sched = ReuseSchedule("fixed", rungs=[Rung(6, 4, "l2")], layers=["conv2"], min_speedup=0.0)
    events = sched.setup(model, probes, 10, 20)
    cfg = model[3].reuse
    assert cfg.planes is None and cfg == Rung(6, 4, "l2").config(cfg.L if cfg.L < 6 else 6, sched.plans["conv2"]["seed"])
    assert sched.label("conv2") == "l2 L6 H4 w1" and not [e for e in events if e["kind"] == "planes"]
    assert sched.resolved()["planes"] == {"kind": "random", "every": 0}


@pytest.mark.parametrize("kind", ["pca", "pca-centred"])
def test_fixed_runs_the_principal_directions_of_its_probe(model_and_probes, kind):
    model, probes = model_and_probes
    sched = ReuseSchedule("fixed", rungs=[Rung(6, 4, "sign")], layers=["conv2"], min_speedup=0.0, planes=kind)
    events = sched.setup(model, probes, 10, 20)
    cfg = model[3].reuse
    assert cfg.planes is not None and cfg.planes.shape == (6, 4)
    np.testing.assert_allclose(cfg.planes.T @ cfg.planes, np.eye(4), atol=1e-10)
    if kind == "pca":
        np.testing.assert_array_equal(cfg.planes, _expected_planes(model, probes, "conv2", 6, 4))
    assert sched.label("conv2").endswith(" pca" if kind == "pca" else " pca-c")
    fits = [e for e in events if e["kind"] == "planes"]
    assert len(fits) == 1 and fits[0]["layer"] == "conv2" and "fitted at step 0" in fits[0]["reason"]
    assert sched.resolved()["planes"] == {"kind": kind, "every": 0}


def test_l2_width_scale_carries_the_fit_width_factor(model_and_probes):
    model, probes = model_and_probes
    sched = ReuseSchedule("fixed", rungs=[Rung(6, 3, "l2", 2.0)], layers=["conv2"], min_speedup=0.0, planes="pca")
    sched.setup(model, probes, 10, 20)
    planes, factor = sched.plane_bank.planes("conv2", 6, 3)
    assert factor > 1.0                                  # principal directions spread more than random
    assert model[3].reuse.width_scale == pytest.approx(2.0 * factor)


def test_refit_cadence(model_and_probes):
    model, probes = model_and_probes
    sched = ReuseSchedule("fixed", rungs=[Rung(6, 4)], layers=["conv2"], min_speedup=0.0, planes="pca",
                          planes_every=3)
    sched.setup(model, probes, 10, 20)
    first = model[3].reuse.planes.copy()
    assert sched.before_step(0, 10) == []
    _sgd_nudge(model)
    assert sched.before_step(1, 10) == [] and sched.before_step(2, 10) == []
    np.testing.assert_array_equal(model[3].reuse.planes, first)          # not due yet
    events = sched.before_step(3, 10)
    assert [e["kind"] for e in events] == ["planes"] and "at step 3" in events[0]["reason"]
    assert not np.array_equal(model[3].reuse.planes, first)              # refitted on the new weights
    np.testing.assert_array_equal(model[3].reuse.planes, _expected_planes(model, probes, "conv2", 6, 4))
    assert sched.before_step(3, 10) == []                                # once per cadence step
    never = ReuseSchedule("fixed", rungs=[Rung(6, 4)], layers=["conv2"], min_speedup=0.0, planes="pca")
    never.setup(model, probes, 10, 20)
    assert never.before_step(3, 10) == [] and never.before_step(18, 10) == []


def test_adaptive_reuses_the_fit_of_its_L_and_state_round_trips(model_and_probes):
    model, probes = model_and_probes
    sched = ReuseSchedule("adaptive", rungs=[Rung(6, 2), Rung(6, 5)], layers=["conv2"], plateau_window=2,
                          plateau_eps=0.5, check_every=0, exact_tail=0.0, min_dwell=0.0, planes="pca")
    sched.setup(model, probes, 10, 100)
    coarse = model[3].reuse.planes.copy()
    events = []
    for step in range(4):
        events += sched.after_step(step, 1.0, model, probes)
    assert sched.label("conv2") == "sign L6 H5 pca"
    np.testing.assert_array_equal(model[3].reuse.planes[:, :2], coarse)   # same fit, more directions
    assert not [e for e in events if e["kind"] == "planes"]
    state = json.loads(json.dumps(sched.state_dict()))                     # as a checkpoint stores it
    other = build_model("tiny", (1, 8, 8), 4, width=2.0, seed=1)
    again = ReuseSchedule("adaptive", rungs=[Rung(6, 2), Rung(6, 5)], layers=["conv2"], planes="pca")
    again.load_state_dict(state, other, probes)
    np.testing.assert_array_equal(other[3].reuse.planes, model[3].reuse.planes)
    assert again.fingerprint() == sched.fingerprint()
    with pytest.raises(ValueError, match="'pca' planes, the run asks for 'random'"):
        ReuseSchedule("adaptive", layers=["conv2"]).load_state_dict(state, other, probes)


def test_fingerprint_sees_the_planes(model_and_probes):
    model, probes = model_and_probes
    a = ReuseSchedule("fixed", rungs=[Rung(6, 4)], layers=["conv2"], min_speedup=0.0, planes="pca")
    a.setup(model, probes, 10, 20)
    before = a.fingerprint()
    a.plane_bank.fits["conv2", 6]["vecs"] = a.plane_bank.fits["conv2", 6]["vecs"] * -1.0
    assert a.fingerprint() != before


def test_tuned_measures_and_runs_data_aware_candidates(model_and_probes):
    model, probes = model_and_probes

    def timer(name, label, run):
        run()
        return 1.0 if label == "exact" else 0.1

    def cands(layer):
        return [Candidate(Rung(6, 3, "l2")), Candidate(Rung(3, 3, "sign"), ("dx",))]
    sched = TunedSchedule(layers=["conv2"], timer=timer, candidates=cands, budget_start=10.0, budget_end=10.0,
                          min_speedup=1.0, planes="pca")
    events = sched.setup(model, probes, 10, 20)
    fits = sorted(e["reason"].split(":")[0] for e in events if e["kind"] == "planes")
    assert fits == ["L3", "L6"]                          # one fit per L of the frontier
    assert model[3].reuse.planes is not None and sched.label("conv2").endswith(" pca")
    assert "planes" in sched.state_dict()


def test_bad_options():
    with pytest.raises(ValueError, match="planes must be one of random, pca, pca-centred"):
        ReuseSchedule("fixed", rungs=[Rung(6, 4)], planes="svd")
    with pytest.raises(ValueError, match="planes_every must be an int >= 0"):
        ReuseSchedule("fixed", rungs=[Rung(6, 4)], planes="pca", planes_every=-1)
    with pytest.raises(ValueError, match="planes must be one of"):
        TrainConfig(planes="svd").validate()
    with pytest.raises(ValueError, match="planes_every must be an int >= 0"):
        TrainConfig(planes_every=1.5).validate()


def _cfg(tmp_path, name, **changes):
    base = TrainConfig(model="tiny", dataset="synthetic", epochs=2, batch_size=32, lr=0.05, seed=3,
                       out=str(tmp_path / name), L=6, H=6, hash="l2", reuse="fixed", reuse_layers=["conv2"],
                       planes="pca", planes_every=5, eval_every=4, progress=False, min_speedup=0.0)
    return dataclasses.replace(base, **changes)


def test_trainer_records_the_planes_and_resumes_bit_for_bit(tmp_path):
    quiet = lambda *_: None       # noqa: E731
    full = _cfg(tmp_path, "full")
    steps = Trainer(full, log=quiet).run()["steps"]
    config = json.load(open(os.path.join(full.out, "config.json")))
    assert config["planes"] == "pca" and config["planes_every"] == 5
    assert config["resolved"]["planes"] == {"kind": "pca", "every": 5}
    fits = [r for r in read_records(full.out) if r["kind"] == "planes"]
    assert steps > 10 and [r["step"] for r in fits] == list(range(0, steps, 5)) and all(r["layer"] == "conv2" for r in fits)
    part = _cfg(tmp_path, "part", stop_after_steps=7)
    Trainer(part, log=quiet).run()
    Trainer(dataclasses.replace(part, stop_after_steps=None, resume=os.path.join(part.out, "last.npz")),
            log=quiet).run()
    a, b = (load_checkpoint(os.path.join(r.out, "last.npz"))[1] for r in (full, part))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    strip = ("wall_time", "train_time", "eval_time", "conv_time", "conv_time_total")
    keep = lambda rs: [{k: v for k, v in r.items() if k not in strip and k != "reason"} for r in rs]  # noqa: E731
    assert keep(read_records(full.out)) == keep(read_records(part.out))
