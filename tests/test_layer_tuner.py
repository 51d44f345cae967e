"""The per-layer tuner (strategy "tuned"): frontier, measurements against direct calls, the pick
under a budget with injected timings, re-tune cadence, fallback to exact, events, end to end."""
import dataclasses

import numpy as np
import pytest

import pyadr
from pyadr import nn
from pyadr.train.config import TrainConfig
from pyadr.train.layer_tuner import (Candidate, TunedSchedule, capture_layer_io, frontier, measure,
                                     neighbours, pick, schedule_class)
from pyadr.train.metrics import read_records
from pyadr.train.models import engine_layers
from pyadr.train.reuse_schedule import ReuseSchedule, Rung
from pyadr.train.trainer import Trainer


def fake_timer(log=None):
    """Deterministic 'seconds': exact 1.0; a candidate costs 0.02 * H, half again with exact dX."""
    def timer(name, label, run):
        if log is not None:
            log.append((name, label))
        if label == "exact":
            return 1.0
        H = int(label.split(" H")[1].split()[0])
        return 0.02 * H * (1.5 if "exact-dx" in label else 1.0)
    return timer


def test_frontier_shapes():
    conv = nn.Conv2d(64, 64, 5, padding=2)
    cands = frontier(conv)
    shapes = {(c.rung.hash, c.rung.L, c.rung.H) for c in cands}
    assert ("l2", 64, 12) in shapes and ("l2", 32, 8) in shapes and ("sign", 64, 12) not in shapes
    assert {c.exact for c in cands} == {(), ("dx",)}
    wide = frontier(nn.Conv2d(256, 256, 3, padding=1))
    assert {c.rung.L for c in wide if c.rung.hash == "l2"} == {256, 128, 64}
    small = frontier(nn.Conv2d(8, 8, 3))                 # K = 72: sign at divisors 24, 18, 12
    assert sorted({c.rung.L for c in small}) == [12, 18, 24] and {c.rung.hash for c in small} == {"sign"}
    first = nn.Conv2d(1, 8, 3)
    first.input_grad = False
    assert {c.exact for c in frontier(first)} == {()}    # no dX to keep exact
    nb = neighbours(cands, 0)                            # l2 L64 H8: H12, L32, exact-dx, itself
    labels = sorted(cands[j].label(1600) for j in nb)
    assert labels == sorted(["l2 L64 H8 w1", "l2 L64 H12 w1", "l2 L32 H8 w1", "l2 L64 H8 w1 exact-dx"])


def test_capture_gets_the_layer_io_and_restores_the_model(model_and_probes):
    model, probes = model_and_probes
    layers = dict(engine_layers(model))
    layers["conv2"].reuse = pyadr.ReuseConfig(L=4, H=3)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    model.eval()
    io = capture_layer_io(model, {"conv2": layers["conv2"]}, probes[0])
    x, dy = io["conv2"]
    h = model[2].forward(model[1].forward(model[0].forward(probes[0][0])))   # conv1 - relu - pool
    np.testing.assert_allclose(x, h, rtol=1e-6)
    assert dy.shape == (16, layers["conv2"].out_channels) + x.shape[2:]
    assert not model.training and layers["conv2"].reuse.L == 4 and layers["conv2"].engine_seconds == 0
    assert "forward" not in vars(layers["conv2"])
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_measurements_match_direct_calls(model_and_probes):
    model, probes = model_and_probes
    layer = dict(engine_layers(model))["conv2"]
    x, dy = capture_layer_io(model, {"conv2": layer}, probes[0])["conv2"]
    cands = [Candidate(Rung(12, 6)), Candidate(Rung(12, 6), ("dx",))]
    meas = measure("conv2", layer, cands, x, dy, seed=5, timer=fake_timer())
    w, kw = layer.weight.data, dict(stride=layer.stride, padding=layer.padding)
    y0, c0 = pyadr.conv2d_forward(x, w, None, **kw)
    dx0, dw0, _ = pyadr.conv2d_backward(dy, c0)
    y, c = pyadr.conv2d_forward(x, w, None, reuse=pyadr.ReuseConfig(L=12, H=6, seed=5), **kw)
    dx, dw, _ = pyadr.conv2d_backward(dy, c)
    rel = lambda a, b: np.linalg.norm(a - b) / np.linalg.norm(b)
    m = meas[0]
    assert m["rc"] == pytest.approx(c.stats.rc)
    assert m["err_y"] == pytest.approx(rel(y, y0), rel=1e-5)
    assert m["err_dw"] == pytest.approx(rel(dw, dw0), rel=1e-5)
    assert m["err_dx"] == pytest.approx(rel(dx, dx0), rel=1e-5)
    assert m["error"] == max(m["err_y"], m["err_dw"], m["err_dx"]) and m["err_dx"] > 0
    assert meas[1]["err_dx"] == pytest.approx(0, abs=1e-6) and meas[1]["error"] == max(meas[1]["err_y"], meas[1]["err_dw"])
    assert m["speedup"] == pytest.approx(1.0 / 0.12) and meas[1]["speedup"] == pytest.approx(1.0 / 0.18)
    none_timed = measure("conv2", layer, cands, x, dy, seed=5, timer=fake_timer(), budget=-1.0)
    assert all(n["speedup"] is None for n in none_timed)


def test_pick_is_the_fastest_within_budget():
    cands = [Candidate(Rung(8, h)) for h in (4, 8, 12)]
    meas = [{"error": 0.5, "speedup": 3.0}, {"error": 0.2, "speedup": 2.0}, {"error": 0.1, "speedup": 1.5}]
    assert pick(cands, meas, 0.3, 1.2) == (1, 1)
    assert pick(cands, meas, 0.15, 1.2) == (2, 2)
    assert pick(cands, meas, 0.15, 1.6) == (None, 2)        # within budget but not fast enough
    assert pick(cands, meas, 0.05, 1.0) == (None, None)


def test_setup_picks_deterministically_within_the_budget(model_and_probes):
    model, probes = model_and_probes
    picks = []
    for _ in range(2):
        sched = TunedSchedule(timer=fake_timer(), budget_start=0.6, budget_end=0.2, min_speedup=1.0, exact_tail=0.0)
        events = sched.setup(model, probes, 10, 100)
        assert list(sched.plans) == ["conv2"] and len(events) == 1
        t = sched.tuned["conv2"]
        best = t["meas"][t["best"]]
        within = [m for m in t["meas"] if m["error"] <= 0.6]
        assert best["error"] <= 0.6 and best["speedup"] == max(m["speedup"] for m in within)
        assert all(m["speedup"] is None for m in t["meas"] if m["error"] > 0.6)   # not timed
        assert events[0]["from"] == "exact" and events[0]["to"] == sched.label("conv2") != "exact"
        assert "fastest within error budget 0.600" in events[0]["reason"] and "ms vs exact" in events[0]["reason"]
        layer = dict(engine_layers(model))["conv2"]
        cand = t["cands"][t["best"]]
        assert layer.reuse.L == cand.rung.L and layer.reuse.H == cand.rung.H and layer.reuse.exact == cand.exact
        picks.append(sched.label("conv2"))
    assert picks[0] == picks[1]
    assert sched.budget(0) == pytest.approx(0.6) and sched.budget(100) == pytest.approx(0.2)
    assert 0.2 < sched.budget(50) < 0.6


def test_falls_back_to_exact(model_and_probes):
    model, probes = model_and_probes
    sched = TunedSchedule(timer=fake_timer(), min_speedup=100.0)
    events = sched.setup(model, probes, 10, 100)
    assert sched.label("conv2") == "exact" and dict(engine_layers(model))["conv2"].reuse is None
    assert events[0]["to"] == "exact" and "< min speed-up 100x" in events[0]["reason"]
    tight = TunedSchedule(timer=fake_timer(), budget_start=1e-6, budget_end=1e-6)
    assert "no candidate within error budget" in tight.setup(model, probes, 10, 100)[0]["reason"]


def test_retune_cadence_measures_the_neighbours_only(model_and_probes):
    model, probes = model_and_probes
    log = []
    sched = TunedSchedule(timer=fake_timer(log), retune_every=3, budget_start=0.6, budget_end=0.2,
                          min_speedup=1.0, exact_tail=0.5)
    sched.setup(model, probes, 10, 12)
    t = sched.tuned["conv2"]
    current = sched._current("conv2")
    near = neighbours(t["cands"], current)
    log.clear()
    assert sched.after_step(0, 1.0, model, probes) == [] and sched.after_step(1, 1.0, model, probes) == []
    assert log == []
    sched.after_step(2, 1.0, model, probes)                 # step 3: re-tune
    timed = [lab for _, lab in log if lab != "exact"]
    assert 0 < len(timed) <= len(near) < len(t["cands"])
    assert {m["step"] for i, m in enumerate(t["meas"]) if i in near} == {3}
    far = next(i for i in range(len(t["cands"])) if i not in near)
    t["meas"][far] = dict(t["meas"][far], error=0.0, speedup=1e6, step=-1)   # stale and too good
    sched.after_step(2, 1.0, model, probes)                 # the stale pick is measured again
    assert t["meas"][far]["step"] == 3 and t["meas"][far]["speedup"] != 1e6
    log.clear()
    sched.after_step(5, 1.0, model, probes)                 # step 6 = the exact tail: no re-tune
    assert log == []
    events = sched.before_step(6, 10)
    assert sched.label("conv2") == "exact" and "exact tail" in events[0]["reason"]


def test_state_round_trip(model_and_probes):
    model, probes = model_and_probes
    sched = TunedSchedule(timer=fake_timer(), budget_start=0.6, min_speedup=1.0)
    sched.setup(model, probes, 10, 100)
    state = sched.state_dict()
    other = schedule_class("tuned")()
    assert isinstance(other, TunedSchedule) and schedule_class("fixed") is ReuseSchedule
    dict(engine_layers(model))["conv2"].reuse = None
    other.load_state_dict(state, model)
    assert other.label("conv2") == sched.label("conv2")
    assert dict(engine_layers(model))["conv2"].reuse.exact == sched.plans["conv2"]["exact"]
    with pytest.raises(ValueError, match="budget"):
        TunedSchedule(budget_start=0.1, budget_end=0.3)
    with pytest.raises(ValueError, match="TunedSchedule"):
        ReuseSchedule("tuned").setup(model, probes, 10, 100)


def test_tuned_strategy_trains_end_to_end(tmp_path):
    cfg = TrainConfig(model="tiny", dataset="synthetic", epochs=1.5, batch_size=32, lr=0.05, seed=3,
                      out=str(tmp_path / "run"), progress=False, reuse="tuned", reuse_layers=["conv2"],
                      retune_every=5, tune_repeats=1, tune_budget_start=0.9, tune_budget_end=0.5,
                      min_speedup=0.0)
    summary = Trainer(cfg, log=lambda *_: None).run()
    records = read_records(cfg.out)
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"] and summary["test_acc"] > 0.5
    rungs = [r for r in records if r["kind"] == "rung" and r["layer"] == "conv2"]
    assert rungs and rungs[0]["step"] == 0 and "error budget 0.900" in rungs[0]["reason"]
    assert epochs[0]["rc"]["conv2"] is not None
    with pytest.raises(ValueError, match="tune_budget_end"):
        dataclasses.replace(cfg, tune_budget_end=2.0).validate()


def test_cli_tuned_train_stop_resume_and_evaluate(tmp_path, capsys):
    import json
    import os
    from pyadr.cli import train as cli
    out = str(tmp_path / "run")
    small = ["--model", "tiny", "--dataset", "synthetic", "--batch-size", "32", "--no-progress"]
    argv = ["train", *small, "--epochs", "1", "--out", out, "--reuse", "tuned", "--reuse-layers", "conv2",
            "--tune-budget", "0.9,0.5", "--retune-every", "4", "--tune-repeats", "1", "--min-speedup", "0"]
    assert cli.main(argv + ["--stop-after-steps", "5"]) == 0
    assert "conv2: exact -> " in capsys.readouterr().out
    config = json.load(open(os.path.join(out, "config.json")))
    assert (config["tune_budget_start"], config["tune_budget_end"], config["retune_every"]) == (0.9, 0.5, 4)
    assert "conv2" in config["resolved"]["frontier"]
    assert cli.main(["train", "--resume", os.path.join(out, "last.npz")]) == 0
    assert "final test accuracy" in capsys.readouterr().out
    assert cli.main(["evaluate", os.path.join(out, "last.npz"), "--reuse", "checkpoint"]) == 0
    assert cli.main(["train", *small, "--reuse", "tuned", "--tune-budget", "0.1,0.3"]) != 0
    assert "END <= START" in capsys.readouterr().err
