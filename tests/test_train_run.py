"""End-to-end training on the synthetic dataset: every strategy learns, resume is bit-exact,
metrics and checkpoints hold what they document."""
import csv
import dataclasses
import json
import os

import numpy as np
import pytest

from pyadr.train.checkpoint import load_checkpoint
from pyadr.train.config import TrainConfig
from pyadr.train.metrics import csv_columns, read_records
from pyadr.train.trainer import Trainer

EPOCH_KEYS = {"kind", "epoch", "step", "wall_time", "train_time", "eval_time", "train_loss", "train_acc", "test_loss", "test_acc", "test_images",
              "lr", "conv_time", "conv_time_total", "rc", "rung"}


def small_config(tmp_path, **changes):
    base = TrainConfig(model="tiny", dataset="synthetic", epochs=2, batch_size=32, lr=0.05,
                       seed=3, out=str(tmp_path / "run"), L=6, H=8, plateau_window=3,
                       check_every=6, progress=False)
    return dataclasses.replace(base, **changes)


def quiet(*_):
    pass


@pytest.mark.parametrize("strategy", ["exact", "fixed", "ladder", "adaptive"])
def test_every_strategy_decreases_the_loss(tmp_path, strategy):
    layers = None if strategy == "exact" else ["conv2"]
    cfg = small_config(tmp_path, reuse=strategy, reuse_layers=layers, epochs=1.5)
    summary = Trainer(cfg, log=quiet).run()
    records = read_records(cfg.out)
    evals = [r for r in records if r["kind"] == "epoch"]
    assert [r["epoch"] for r in evals] == [1.0, 1.5]
    assert evals[-1]["train_loss"] < evals[0]["train_loss"]
    assert summary["test_acc"] > 0.5 and not summary["interrupted"]
    if strategy != "exact":
        assert evals[0]["rc"]["conv2"] is not None and 0 < evals[0]["rc"]["conv2"] <= 1
        assert any(r["kind"] == "rung" and r["layer"] == "conv2" for r in records)
    assert evals[0]["rc"]["conv1"] is None


def test_metrics_files_have_documented_keys(tmp_path):
    cfg = small_config(tmp_path, epochs=1, eval_every=5, reuse="fixed", reuse_layers=["conv2"])
    Trainer(cfg, log=quiet).run()
    records = read_records(cfg.out)
    kinds = [r["kind"] for r in records]
    assert kinds.count("epoch") == 1 and kinds.count("eval") == 3   # 16 steps: 5, 10, 15
    for r in records:
        if r["kind"] in ("epoch", "eval"):
            assert set(r) == EPOCH_KEYS
            assert 0.0 <= r["test_acc"] <= 1.0 and r["wall_time"] > 0
            assert set(r["rc"]) == {"conv1", "conv2", "fc1"}
    walls = [r["wall_time"] for r in records if r["kind"] != "rung"]
    assert walls == sorted(walls)
    with open(os.path.join(cfg.out, "metrics.csv")) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == csv_columns(["conv2"]) and len(rows) == 4
    assert float(rows[-1]["rc_conv2"]) == pytest.approx(records[-1]["rc"]["conv2"])
    saved = json.load(open(os.path.join(cfg.out, "config.json")))
    assert saved["reuse"] == "fixed" and saved["model"] == "tiny"
    meta, weights, optim = load_checkpoint(os.path.join(cfg.out, "last.npz"))
    assert meta["model_spec"]["name"] == "tiny" and meta["pyadr_version"]
    assert meta["position"] == {"epoch": 1, "step_in_epoch": 0, "global_step": 16}
    assert "conv2" in meta["schedule"]["plans"] and optim["buffers"]
    assert os.path.exists(os.path.join(cfg.out, "best.npz"))


def final_weights(out):
    return load_checkpoint(os.path.join(out, "last.npz"))[1]


def test_periodic_evaluations_use_the_subset_and_epoch_ends_all_test_images(tmp_path):
    from pyadr.train.compare import first_at_target
    cfg = small_config(tmp_path, epochs=1, eval_every=5, eval_subset=40)
    Trainer(cfg, log=quiet).run()
    records = read_records(cfg.out)
    evals = [r for r in records if r["kind"] == "eval"]
    epoch = [r for r in records if r["kind"] == "epoch"][0]
    full = epoch["test_images"]
    assert len(evals) == 3 and full > 40
    assert {r["test_images"] for r in evals} == {40}
    # time to target counts whole-test-set evaluations only: a lucky subset cannot hit it early
    lucky = [dict(evals[0], test_acc=1.0)] + evals[1:] + [epoch]
    assert first_at_target(lucky, epoch["test_acc"]) is epoch
    with pytest.raises(ValueError, match="eval_subset"):
        dataclasses.replace(cfg, eval_subset=0).validate()



@pytest.mark.parametrize("strategy,stop_at", [("adaptive", 11), ("exact", 16)])
def test_resume_reproduces_uninterrupted_run_bit_for_bit(tmp_path, strategy, stop_at):
    model = "alexnet" if strategy == "exact" else "tiny"     # alexnet: dropout RNG must resume too
    common = dict(reuse=strategy, reuse_layers=["conv2"] if strategy != "exact" else None,
                  model=model, width=0.05, eval_every=4, augment=True)
    full = small_config(tmp_path, out=str(tmp_path / "full"), **common)
    Trainer(full, log=quiet).run()
    part = small_config(tmp_path, out=str(tmp_path / "part"), stop_after_steps=stop_at, **common)
    summary = Trainer(part, log=quiet).run()
    assert summary["interrupted"] and summary["steps"] == stop_at
    meta = load_checkpoint(os.path.join(part.out, "last.npz"))[0]
    assert meta["position"]["global_step"] == stop_at
    resumed = dataclasses.replace(part, stop_after_steps=None, resume=os.path.join(part.out, "last.npz"))
    Trainer(resumed, log=quiet).run()
    a, b = final_weights(full.out), final_weights(part.out)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    strip = ("wall_time", "train_time", "eval_time", "conv_time", "conv_time_total")
    ra = [{k: v for k, v in r.items() if k not in strip} for r in read_records(full.out)]
    rb = [{k: v for k, v in r.items() if k not in strip} for r in read_records(part.out)]
    assert ra == rb


def test_resume_rejects_another_architecture(tmp_path):
    cfg = small_config(tmp_path, epochs=1)
    Trainer(cfg, log=quiet).run()
    other = small_config(tmp_path, out=str(tmp_path / "other"), width=2.0,
                         resume=os.path.join(cfg.out, "last.npz"))
    with pytest.raises(ValueError, match="checkpoint"):
        Trainer(other, log=quiet).run()
