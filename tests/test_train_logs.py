"""What a run writes: flat metrics.csv columns (pandas and csv read numbers), no file before every
setting is checked, config.json records what ran, training time apart from evaluation time."""
import csv
import dataclasses
import json
import os

import pytest

from pyadr.cli import train as cli
from pyadr.train.compare import summarize_runs
from pyadr.train.config import TrainConfig, resolve_config
from pyadr.train.metrics import csv_columns, read_records
from pyadr.train.trainer import Trainer

SMALL = ["--model", "tiny", "--dataset", "synthetic", "--batch-size", "32", "--no-progress"]


def small_config(tmp_path, **changes):
    base = TrainConfig(model="tiny", dataset="synthetic", epochs=2, batch_size=32, lr=0.05, seed=3,
                       out=str(tmp_path / "run"), reuse="adaptive", reuse_layers=["conv2"],
                       plateau_window=3, check_every=6, eval_every=5, progress=False)
    return dataclasses.replace(base, **changes)


def quiet(*_):
    pass


def csv_rows(out):
    with open(os.path.join(out, "metrics.csv"), newline="") as f:
        return list(csv.DictReader(f))


def logged(out):
    return [r for r in read_records(out) if r["kind"] in ("epoch", "eval")]


# -- metrics.csv ----------------------------------------------------------------------------------
def test_csv_has_flat_numeric_rc_and_rung_columns(tmp_path):
    cfg = small_config(tmp_path)
    Trainer(cfg, log=quiet).run()
    records, rows = logged(cfg.out), csv_rows(cfg.out)
    assert list(rows[0]) == csv_columns(["conv2"])        # only the reusing layer gets columns
    assert "rc_conv1" not in rows[0] and len(rows) == len(records) == 8   # 32 steps: 6 evals, 2 epochs
    for row, rec in zip(rows, records):
        assert row["rung_conv2"] == rec["rung"]["conv2"]
        if rec["rc"]["conv2"] is None:
            assert row["rc_conv2"] == ""
        else:
            assert float(row["rc_conv2"]) == pytest.approx(rec["rc"]["conv2"]) and 0 < float(row["rc_conv2"]) <= 1
        assert float(row["train_time"]) == pytest.approx(rec["train_time"])
    assert {r["rung_conv2"] for r in rows} - {"exact"}, "the adaptive run reused conv2 on some rung"
    assert rows[-1]["rung_conv2"] == "exact"                  # the exact tail


def test_pandas_reads_numbers(tmp_path):
    pd = pytest.importorskip("pandas")
    cfg = small_config(tmp_path)
    Trainer(cfg, log=quiet).run()
    df = pd.read_csv(os.path.join(cfg.out, "metrics.csv"))
    for column in ("rc_conv2", "train_time", "eval_time", "wall_time", "test_acc"):
        assert pd.api.types.is_float_dtype(df[column]), column
    assert df["rc_conv2"].notna().any() and (df["rc_conv2"].dropna() <= 1).all()
    assert pd.api.types.is_string_dtype(df["rung_conv2"]) and "exact" in set(df["rung_conv2"])
    assert len(df) == len(logged(cfg.out))


def test_resumed_run_keeps_the_header_and_the_rows(tmp_path):
    full = small_config(tmp_path, out=str(tmp_path / "full"))
    Trainer(full, log=quiet).run()
    part = small_config(tmp_path, out=str(tmp_path / "part"), stop_after_steps=11)
    Trainer(part, log=quiet).run()
    header = list(csv_rows(part.out)[0])
    Trainer(dataclasses.replace(part, stop_after_steps=None, resume=os.path.join(part.out, "last.npz")),
            log=quiet).run()
    rows_full, rows_part = csv_rows(full.out), csv_rows(part.out)
    assert list(rows_part[0]) == header == list(rows_full[0])
    timeless = ("wall_time", "train_time", "eval_time", "conv_time", "conv_time_total")
    strip = [{k: v for k, v in r.items() if k not in timeless} for r in rows_full]
    assert strip == [{k: v for k, v in r.items() if k not in timeless} for r in rows_part]


def test_exact_run_csv_has_no_layer_columns(tmp_path):
    cfg = small_config(tmp_path, reuse="exact", reuse_layers=None, epochs=1, eval_every=0)
    Trainer(cfg, log=quiet).run()
    rows = csv_rows(cfg.out)
    assert list(rows[0]) == csv_columns([]) and len(rows) == 1


# -- every check before the first file --------------------------------------------------------------
@pytest.mark.parametrize("command", ["train", "compare"])
def test_unknown_reuse_layer_writes_nothing(tmp_path, capsys, command):
    out = tmp_path / "run"
    argv = [command, *SMALL, "--epochs", "1", "--reuse", "fixed", "--reuse-layers", "conv9", "--out", str(out)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "conv9" in err and "not in the model" in err and "conv2" in err
    assert not out.exists()


def test_unknown_reuse_layer_leaves_an_existing_run_unchanged(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", *SMALL, "--epochs", "0.5", "--out", str(out)]) == 0
    before = {p: (out / p).read_bytes() for p in sorted(os.listdir(out))}
    assert cli.main(["train", *SMALL, "--epochs", "0.5", "--reuse", "adaptive", "--reuse-layers",
                     "conv2,conv9", "--out", str(out)]) == 2
    assert "conv9" in capsys.readouterr().err
    assert {p: (out / p).read_bytes() for p in sorted(os.listdir(out))} == before


def test_resume_with_another_architecture_leaves_the_run_unchanged(tmp_path):
    cfg = small_config(tmp_path, epochs=1)
    Trainer(cfg, log=quiet).run()
    out = tmp_path / "run"
    before = {p: (out / p).read_bytes() for p in sorted(os.listdir(out))}
    other = dataclasses.replace(cfg, width=2.0, resume=os.path.join(cfg.out, "last.npz"))
    with pytest.raises(ValueError, match="checkpoint"):
        Trainer(other, log=quiet).run()
    assert {p: (out / p).read_bytes() for p in sorted(os.listdir(out))} == before


# -- config.json records what ran -----------------------------------------------------------------
def test_adaptive_config_records_the_rungs_that_ran(tmp_path):
    cfg = small_config(tmp_path, L=6, H=8)          # fixed-rung settings that the defaults do not use
    Trainer(cfg, log=quiet).run()
    saved = json.load(open(os.path.join(cfg.out, "config.json")))
    ran = saved["resolved"]
    assert ran["strategy"] == "adaptive" and ran["reuse_layers"] == ["conv2"]
    assert ran["exact_tail"] == 0.25                              # adaptive's default for exact_tail None
    assert set(ran["unused_settings"]) == {"L", "H", "hash", "width_scale"}
    labels = ran["rung_labels"]["conv2"]
    used = {r["to"] for r in read_records(cfg.out) if r["kind"] == "rung" and r["layer"] == "conv2"}
    assert used - {"exact"} and used - {"exact"} <= set(labels)
    assert f"{cfg.hash} L{cfg.L} H{cfg.H}" not in labels          # the unused fixed-rung settings
    assert len(ran["rungs"]["conv2"]) == len(labels)
    # the file reads back as --config: the record of what ran is no setting
    assert resolve_config({}, config_file=os.path.join(cfg.out, "config.json")) == cfg


def test_fixed_config_records_the_rung_with_its_effective_L(tmp_path):
    cfg = small_config(tmp_path, reuse="fixed", L=1000, H=8, epochs=0.5, eval_every=0)
    Trainer(cfg, log=quiet).run()
    ran = json.load(open(os.path.join(cfg.out, "config.json")))["resolved"]
    (rung,) = ran["rungs"]["conv2"]
    assert rung["H"] == 8 and rung["hash"] == "sign" and 1 <= rung["L"] < 1000   # L clipped to K
    assert ran["unused_settings"] == [] and ran["exact_tail"] == 0.0


# -- training time apart from evaluation time -------------------------------------------------------
def test_train_and_eval_time_add_up_to_at_most_wall_time(tmp_path):
    lines = []
    cfg = small_config(tmp_path, epochs=1)
    summary = Trainer(cfg, log=lines.append).run()
    records = logged(cfg.out)
    for r in records:
        assert 0 < r["train_time"] and 0 < r["eval_time"]
        assert r["train_time"] + r["eval_time"] <= r["wall_time"] + 1e-9
    assert [r["eval_time"] for r in records] == sorted(r["eval_time"] for r in records)
    assert summary["train_time"] + summary["eval_time"] <= summary["wall_time"] + 1e-9
    epoch_line = next(l for l in lines if l.startswith("epoch 1:"))
    assert " s (train " in epoch_line and " s, eval " in epoch_line
    assert "(train " in lines[-1] and ", eval " in lines[-1]


def test_summary_time_to_target_is_training_time(tmp_path, capsys):
    def run(name, reuse, accs):
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text(json.dumps({"reuse": reuse, "seed": 0, "threads": 1}))
        with open(d / "metrics.jsonl", "w") as f:
            for i, acc in enumerate(accs, start=1):       # 10 s per epoch, 4 of them evaluating
                f.write(json.dumps({"kind": "epoch", "epoch": float(i), "wall_time": 10.0 * i,
                                    "train_time": 6.0 * i, "eval_time": 4.0 * i, "test_acc": acc}) + "\n")
        return str(d)
    dirs = [run("ex", "exact", [0.8, 0.9]), run("ad", "adaptive", [0.9, 0.91])]
    rows, target = summarize_runs(dirs)
    assert target == pytest.approx(0.897)
    assert [r["time_to_target"] for r in rows] == [12.0, 6.0]
    assert [r["train_time"] for r in rows] == [12.0, 12.0] and [r["wall_time"] for r in rows] == [20.0, 20.0]
    assert cli.main(["summary", *dirs]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "to target (train s)" in lines[1]
    assert [l.split()[6] for l in lines[3:]] == ["12.0", "6.0"]
    assert [l.split()[-2:] for l in lines[3:]] == [["12.0", "8.0"], ["12.0", "8.0"]]
