"""The command line: train / evaluate / plot / compare, and clear errors."""
import json
import os
import sys

import pytest

from pyadr.cli import train as cli

SMALL = ["--model", "tiny", "--dataset", "synthetic", "--batch-size", "32", "--no-progress"]


def test_train_then_resume_then_evaluate(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert cli.main(["train", *SMALL, "--epochs", "1", "--out", out, "--stop-after-steps", "5"]) == 0
    assert "stopped at global step 5" in capsys.readouterr().out
    assert cli.main(["train", "--resume", os.path.join(out, "last.npz")]) == 0
    text = capsys.readouterr().out
    assert "resumed from" in text and "final test accuracy" in text
    assert json.load(open(os.path.join(out, "config.json")))["model"] == "tiny"
    assert cli.main(["evaluate", os.path.join(out, "best.npz")]) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert cli.main(["evaluate", os.path.join(out, "last.npz"), "--reuse", "fixed", "--L", "4", "--H", "6"]) == 0
    assert "mean rc: conv2" in capsys.readouterr().out


def test_config_file_and_flag_precedence(tmp_path, capsys):
    conf = tmp_path / "c.json"
    conf.write_text(json.dumps({"model": "tiny", "dataset": "synthetic", "epochs": 3, "lr": 0.02}))
    out = str(tmp_path / "run")
    assert cli.main(["train", "--config", str(conf), "--epochs", "0.5", "--out", out, "--no-progress"]) == 0
    saved = json.load(open(os.path.join(out, "config.json")))
    assert saved["epochs"] == 0.5 and saved["lr"] == 0.02


@pytest.mark.parametrize("argv,message", [
    (["train", "--model", "resnet"], "invalid choice"),
    (["train", "--batch-size", "many"], "invalid int value"),
    (["train", *SMALL, "--lr", "-1"], "lr must be"),
    (["train", *SMALL, "--H", "99"], "H must be"),
    (["train", "--dataset", "fashion-mnist", "--data-dir", "/nonexistent/fm"], "/nonexistent/fm"),
    (["train", "--dataset", "cifar10"], "data_dir is required"),
    (["train", *SMALL, "--reuse", "fixed", "--reuse-layers", "conv7"], "conv7"),
    (["train", "--resume", "/nonexistent/last.npz"], "does not exist"),
    (["evaluate", "/nonexistent/best.npz"], "does not exist"),
    (["plot", "/nonexistent/run"], "metrics.jsonl"),
    (["frobnicate"], "invalid choice"),
])
def test_errors_exit_nonzero_with_a_clear_message(tmp_path, capsys, argv, message):
    argv = [a.replace("OUT", str(tmp_path)) for a in argv]
    if argv[0] == "train" and "--out" not in argv:
        argv += ["--out", str(tmp_path / "run")]
    assert cli.main(argv) != 0
    assert message in capsys.readouterr().err


def test_compare_writes_table_and_plots_or_says_why_not(tmp_path, capsys):
    out = str(tmp_path / "cmp")
    argv = ["compare", *SMALL, "--epochs", "1", "--reuse", "fixed", "--L", "4", "--H", "6",
            "--reuse-layers", "conv2", "--eval-every", "4", "--out", out]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "time saved by reuse" in text and "to target" in text
    assert os.path.exists(os.path.join(out, "exact", "metrics.jsonl"))
    assert os.path.exists(os.path.join(out, "fixed", "metrics.jsonl"))
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "matplotlib is not installed" in text
        assert cli.main(["plot", os.path.join(out, "fixed")]) != 0
        assert "pip install matplotlib" in capsys.readouterr().err
    else:
        assert os.path.exists(os.path.join(out, "compare_accuracy.png"))
        assert os.path.exists(os.path.join(out, "compare_reuse.png"))
        assert cli.main(["plot", os.path.join(out, "fixed")]) == 0
        assert os.path.exists(os.path.join(out, "fixed", "run.png"))


def test_profile_breakdown(capsys):
    """pyadr profile: every part of a step for exact and reuse training, shares summing to 100 %."""
    from pyadr.__main__ import main
    assert main(["profile", "--dataset", "synthetic", "--batch-size", "8", "--steps", "2", "--threads", "1",
                 "--L", "8", "--H", "6", "--hash", "sign"]) == 0
    out = capsys.readouterr().out
    for part in ("data", "conv", "pooling", "lrn", "linear", "loss", "optimizer", "step"):
        assert part in out
    assert "reuse sign L=8 H=6 on conv2" in out and "reuse step / exact step" in out
    if sys.platform.startswith("linux"):      # peak RSS of one step, from /proc/self/status
        peaks = [float(v) for v in next(l for l in out.splitlines() if l.startswith("peak memory")).split()[2:6:2]]
        assert len(peaks) == 2 and all(p > 0 for p in peaks)
    rows = [l for l in out.splitlines() if l.split() and l.split()[0] in ("data", "conv", "pooling", "lrn", "linear",
                                                                            "relu", "batchnorm", "loss", "optimizer")
            or l.startswith("other layers")]
    exact_shares = [float(l.split("%")[0].split()[-1]) for l in rows]
    assert abs(sum(exact_shares) - 100) < 6   # rounded shares of the exact column
    try:
        import torch  # noqa: F401
        assert "PyTorch step (same model and weights" in out
    except ImportError:
        assert "torch is not installed" in out


def test_profile_no_torch(capsys):
    from pyadr.__main__ import main
    assert main(["profile", "--dataset", "synthetic", "--batch-size", "4", "--steps", "1", "--threads", "1",
                 "--no-torch"]) == 0
    assert "PyTorch" not in capsys.readouterr().out


def test_profile_bad_layer(capsys):
    from pyadr.__main__ import main
    assert main(["profile", "--dataset", "synthetic", "--steps", "1", "--reuse-layers", "conv9"]) == 2
    assert "conv9" in capsys.readouterr().err


def test_profile_a_checkpoint(tmp_path, capsys):
    """--checkpoint times the checkpoint's model (here 'tiny') with its weights, and reports rc."""
    from pyadr.__main__ import main
    out = str(tmp_path / "run")
    assert cli.main(["train", *SMALL, "--epochs", "1", "--out", out, "--stop-after-steps", "3"]) == 0
    capsys.readouterr()
    assert main(["profile", "--checkpoint", os.path.join(out, "last.npz"), "--batch-size", "8", "--steps", "1",
                 "--threads", "1", "--L", "4", "--H", "6", "--hash", "sign", "--no-torch"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("tiny on synthetic (weights of ") and "reuse column's mean rc: conv2 " in text
    rc = float(text.split("mean rc: conv2 ")[1].split()[0])
    assert 0 < rc <= 1


def test_profile_missing_checkpoint(capsys):
    from pyadr.__main__ import main
    assert main(["profile", "--checkpoint", "/nonexistent/last.npz", "--steps", "1"]) == 2
    assert "/nonexistent/last.npz" in capsys.readouterr().err


def test_summary_time_to_the_exact_runs_mean_accuracy(tmp_path, capsys):
    """pyadr summary: target = mean final accuracy of the exact runs - 0.3 points; each run's first
    time at or above it (written here by hand, so the expected times are known)."""
    def run(name, reuse, seed, accs):
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text(json.dumps({"reuse": reuse, "seed": seed, "threads": 2}))
        with open(d / "metrics.jsonl", "w") as f:
            for i, acc in enumerate(accs, start=1):
                f.write(json.dumps({"kind": "epoch", "epoch": float(i), "wall_time": 10.0 * i,
                                    "test_acc": acc}) + "\n")
        return str(d)
    dirs = [run("ex0", "exact", 0, [0.80, 0.90, 0.92]), run("ex1", "exact", 1, [0.85, 0.91, 0.918]),
            run("ad0", "adaptive", 0, [0.70, 0.917, 0.919]), run("ad1", "adaptive", 1, [0.80, 0.85, 0.90])]
    assert cli.main(["summary", *dirs]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "target accuracy 91.60 %"            # (92.0 + 91.8) / 2 - 0.3
    to_target = {l.split()[0].rsplit("/", 1)[-1]: l.split()[6] for l in lines[3:]}
    assert to_target == {"ex0": "30.0", "ex1": "30.0", "ad0": "20.0", "ad1": "-"}
    assert cli.main(["summary", dirs[2], "--target", "0.95"]) == 0
    assert capsys.readouterr().out.splitlines()[3].split()[6] == "-"
    assert cli.main(["summary", dirs[2]]) == 2
    assert "no exact run" in capsys.readouterr().err
    assert cli.main(["summary", dirs[2], "--target", "92"]) == 2
    assert "--target must be" in capsys.readouterr().err
