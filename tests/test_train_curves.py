"""Curves a run leaves behind: steps.csv (per-step loss), periodic test accuracy (about 10 points
per run by default), TensorBoard event files (when tensorboard is installed), YAML config files,
--print-config (writes nothing), and the progress bar under a pseudo-terminal."""
import csv
import dataclasses
import json
import os
import pty
import subprocess
import sys
import time

import pytest

from pyadr.cli import train as cli
from pyadr.train.config import EVAL_POINTS, TrainConfig
from pyadr.train.metrics import read_records, read_steps, step_columns
from pyadr.train.trainer import Trainer

SMALL = ["--model", "tiny", "--dataset", "synthetic", "--batch-size", "32", "--no-progress"]


def small_config(tmp_path, **changes):
    base = TrainConfig(model="tiny", dataset="synthetic", epochs=1, batch_size=32, lr=0.05, seed=3,
                       out=str(tmp_path / "run"), reuse="fixed", L=9, H=6, reuse_layers=["conv2"],
                       progress=False)
    return dataclasses.replace(base, **changes)


def quiet(*_):
    pass


def test_default_evaluates_about_ten_times_per_run_and_config_records_it(tmp_path):
    cfg = small_config(tmp_path, epochs=2)
    trainer = Trainer(cfg, log=quiet)
    trainer.run()
    records = read_records(cfg.out)
    evals = [r for r in records if r["kind"] == "eval"]
    epochs = [r for r in records if r["kind"] == "epoch"]
    every = -(-trainer.total_steps // EVAL_POINTS)
    assert trainer.eval_every == every >= 1
    ends = {r["step"] for r in epochs}
    assert [r["step"] for r in evals] == [s for s in range(every, trainer.total_steps + 1, every) if s not in ends]
    assert EVAL_POINTS - 2 <= len(evals) + len(epochs) <= EVAL_POINTS + len(epochs)
    for r in evals:     # periodic evaluation is timed apart from training
        assert r["test_acc"] is not None and r["eval_time"] > 0
        assert r["train_time"] + r["eval_time"] <= r["wall_time"] + 1e-6
    with open(os.path.join(cfg.out, "config.json")) as f:
        saved = json.load(f)
    assert saved["eval_every"] is None and saved["resolved"]["eval_every_steps"] == every


def test_eval_every_zero_evaluates_at_epoch_ends_only(tmp_path):
    cfg = small_config(tmp_path, eval_every=0)
    Trainer(cfg, log=quiet).run()
    assert [r["kind"] for r in read_records(cfg.out) if r["kind"] in ("eval", "epoch")] == ["epoch"]


def test_steps_csv_has_one_row_per_step(tmp_path):
    cfg = small_config(tmp_path, eval_every=0)
    trainer = Trainer(cfg, log=quiet)
    trainer.run()
    with open(os.path.join(cfg.out, "steps.csv"), newline="") as f:
        header = next(csv.reader(f))
    assert header == step_columns(["conv2"])
    steps = read_steps(cfg.out)
    assert [s["step"] for s in steps] == list(range(1, trainer.total_steps + 1))
    times = [s["train_time"] for s in steps]
    assert times == sorted(times) and all(s["step_time"] > 0 for s in steps)
    assert all(0 < s["rc_conv2"] <= 1 and s["loss"] > 0 and 0 <= s["acc"] <= 1 for s in steps)
    epoch = [r for r in read_records(cfg.out) if r["kind"] == "epoch"][-1]
    mean = sum(s["loss"] for s in steps) / len(steps)     # equal batches: the epoch mean of the steps
    assert epoch["train_loss"] == pytest.approx(mean, rel=1e-9)


def test_resume_keeps_steps_csv_in_step_order(tmp_path):
    cfg = small_config(tmp_path, stop_after_steps=5, eval_every=0)
    Trainer(cfg, log=quiet).run()
    assert [s["step"] for s in read_steps(cfg.out)] == [1, 2, 3, 4, 5]
    with open(os.path.join(cfg.out, "steps.csv"), "a") as f:       # a crash left a later row
        f.write("9,0.5,1,1,0.1,1.0,0.5,0.05,0.5\n")
    resumed = small_config(tmp_path, eval_every=0, resume=os.path.join(cfg.out, "last.npz"))
    trainer = Trainer(resumed, log=quiet)
    trainer.run()
    assert [s["step"] for s in read_steps(cfg.out)] == list(range(1, trainer.total_steps + 1))


def test_tensorboard_event_files_are_readable(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    cfg = small_config(tmp_path, tensorboard=True, eval_every=4)
    trainer = Trainer(cfg, log=quiet)
    trainer.run()
    acc = EventAccumulator(os.path.join(cfg.out, "tensorboard"), size_guidance={"tensors": 0, "scalars": 0})  # all
    acc.Reload()
    tags = set(acc.Tags()["tensors"]) | set(acc.Tags()["scalars"])
    assert {"train/loss", "train/lr", "time/step_s", "rc/conv2", "test/acc", "test/loss"} <= tags

    def values(tag):
        if tag in acc.Tags()["scalars"]:
            return [(e.step, e.value) for e in acc.Scalars(tag)]
        from tensorboard.util import tensor_util
        return [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)]

    losses = values("train/loss")
    steps = read_steps(cfg.out)
    assert [s for s, _ in losses] == [int(s["step"]) for s in steps]
    assert [v for _, v in losses] == pytest.approx([s["loss"] for s in steps], rel=1e-6)
    evals = [r for r in read_records(cfg.out) if r["kind"] in ("eval", "epoch")]
    assert [s for s, _ in values("test/acc")] == [r["step"] for r in evals]


def test_tensorboard_missing_is_a_clear_error_before_any_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)        # as if not installed
    monkeypatch.setitem(sys.modules, "tensorboard.summary", None)
    out = tmp_path / "run"
    assert cli.main(["train", *SMALL, "--epochs", "0.2", "--tensorboard", "--out", str(out)]) == 1
    assert "pip install tensorboard (or pyadr[tb])" in capsys.readouterr().err
    assert not out.exists()


def test_yaml_config_file_and_print_config_write_nothing(tmp_path, capsys):
    pytest.importorskip("yaml")
    path = tmp_path / "run.yaml"
    path.write_text("# settings\nmodel: tiny\ndataset: synthetic\nlr: 0.02\nreuse_layers: [conv2]\n"
                    "reuse: fixed\nL: 9\n")
    out = tmp_path / "never"
    assert cli.main(["train", "--config", str(path), "--epochs", "3", "--out", str(out), "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["model"] == "tiny" and printed["lr"] == 0.02 and printed["reuse_layers"] == ["conv2"]
    assert printed["epochs"] == 3 and printed["L"] == 9 and printed["batch_size"] == 128   # flag, file, default
    assert not out.exists()
    again = tmp_path / "printed.json"                      # the printed settings read back as --config
    again.write_text(json.dumps(printed))
    assert cli.main(["train", "--config", str(again), "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out) == printed


def test_compare_print_config_shows_the_reuse_it_would_compare(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert cli.main(["compare", *SMALL, "--out", str(out), "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["reuse"] == "adaptive" and printed["out"] == str(out)
    assert not out.exists()


def test_bad_yaml_files_are_clear_errors(tmp_path, capsys, monkeypatch):
    pytest.importorskip("yaml")
    bad = tmp_path / "bad.yml"
    bad.write_text("model: [tiny\n")
    assert cli.main(["train", "--config", str(bad), "--print-config"]) == 2
    assert "is not valid YAML" in capsys.readouterr().err
    listed = tmp_path / "list.yaml"
    listed.write_text("- model\n- tiny\n")
    assert cli.main(["train", "--config", str(listed), "--print-config"]) == 2
    assert "must hold a YAML mapping of settings, got list" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "yaml", None)
    assert cli.main(["train", "--config", str(listed), "--print-config"]) == 1
    assert "needs PyYAML: pip install pyyaml" in capsys.readouterr().err


def test_progress_bar_appears_under_a_pseudo_terminal(tmp_path):
    """No --progress flag: the bar is on because the streams are a (fresh, 0-column) terminal."""
    pytest.importorskip("tqdm")
    primary, secondary = pty.openpty()
    argv = [sys.executable, "-m", "pyadr", "train", "--model", "tiny", "--dataset", "synthetic",
            "--batch-size", "32", "--epochs", "0.5", "--eval-every-steps", "0", "--out", str(tmp_path / "r")]
    proc = subprocess.Popen(argv, stdin=secondary, stdout=secondary, stderr=secondary, close_fds=True)
    os.close(secondary)
    chunks, deadline = [], time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            data = os.read(primary, 4096)
        except OSError:             # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(primary)
    assert proc.wait(timeout=60) == 0
    text = b"".join(chunks).decode(errors="replace")
    assert "8/8" in text and ("step/s" in text or "s/step" in text), text[-2000:]
    assert "\u2588" in text or "#" in text, text[-2000:]          # the bar itself, not only counts
