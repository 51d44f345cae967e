"""PNG plots of runs (matplotlib is optional: a clear error says how to get it).

Test accuracy is drawn against training time (train_time: evaluation and checkpoint writes
excluded, as for time to target) and against steps, one point per periodic evaluation
(--eval-every-steps) and per epoch end; the training loss is the per-step curve of steps.csv.
"""
from __future__ import annotations

import os

from .metrics import read_records, read_steps

SMOOTH_STEPS = 10       # moving average of the per-step loss curve


class PlottingUnavailable(RuntimeError):
    pass


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise PlottingUnavailable("matplotlib is not installed, so no plots were written "
                                  "(pip install matplotlib)") from exc
    return plt


def _evals(records):
    return sorted((r for r in records if r["kind"] in ("eval", "epoch") and r.get("test_acc") is not None),
                  key=lambda r: r["wall_time"])


def _train_s(r):
    return r.get("train_time", r["wall_time"])


def _smooth(values, n=SMOOTH_STEPS):
    """Trailing moving average over up to n values (the curve starts at the first step)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= n:
            total -= values[i - n]
        out.append(total / min(i + 1, n))
    return out


def _loss_curve(ax, steps, label, x_key="step"):
    pts = [(s[x_key], s["loss"]) for s in steps if s.get("loss") is not None]
    if pts:
        ax.plot([p[0] for p in pts], _smooth([p[1] for p in pts]), label=label)


def rung_timeline(records):
    """{layer: [(wall_time, label)]} from the rung events of a run."""
    out = {}
    for r in records:
        if r["kind"] == "rung":
            out.setdefault(r["layer"], []).append((r["wall_time"], r["to"]))
    return out


def _plot_reuse(ax_rc, ax_rung, records, title_suffix=""):
    evals = _evals(records)
    layers = sorted({k for r in evals for k, v in (r.get("rc") or {}).items() if v is not None})
    for layer in layers:
        pts = [(r["wall_time"], r["rc"][layer]) for r in evals if r["rc"].get(layer) is not None]
        ax_rc.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=layer)
    ax_rc.set_ylabel("remaining ratio rc")
    ax_rc.set_title("rc per layer" + title_suffix)
    if layers:
        ax_rc.legend()
    timeline = rung_timeline(records)
    end = max((r["wall_time"] for r in records), default=0.0)
    labels = []
    for layer, changes in sorted(timeline.items()):
        for _, lab in changes:
            if lab not in labels:
                labels.append(lab)
    for layer, changes in sorted(timeline.items()):
        xs = [t for t, _ in changes] + [end]
        ys = [labels.index(lab) for _, lab in changes]
        ax_rung.step(xs, ys + ys[-1:], where="post", label=layer)
    ax_rung.set_yticks(range(len(labels)))
    ax_rung.set_yticklabels(labels)
    ax_rung.set_xlabel("wall-clock time (s)")
    ax_rung.set_title("rung per layer" + title_suffix)
    if timeline:
        ax_rung.legend()


def plot_run(run_dir, out_path=None):
    """Test accuracy vs training time, per-step training loss and test loss vs step, and rc/rung
    per layer for one run."""
    records = read_records(run_dir)
    steps = read_steps(run_dir)
    plt = _pyplot()
    evals = _evals(records)
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    axes[0, 0].plot([_train_s(r) for r in evals], [100 * r["test_acc"] for r in evals], marker="o")
    axes[0, 0].set_xlabel("training time (s, evaluation excluded)")
    axes[0, 0].set_ylabel("test accuracy (%)")
    axes[0, 0].set_title(os.path.basename(os.path.abspath(run_dir)))
    _loss_curve(axes[0, 1], steps, f"train loss (per step, mean of {SMOOTH_STEPS})")
    if not steps:           # runs logged before steps.csv existed
        pts = [(r["step"], r["train_loss"]) for r in evals if r.get("train_loss") is not None]
        axes[0, 1].plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label="train_loss")
    pts = [(r["step"], r["test_loss"]) for r in evals if r.get("test_loss") is not None]
    axes[0, 1].plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label="test loss")
    axes[0, 1].set_xlabel("step")
    axes[0, 1].set_ylabel("loss")
    axes[0, 1].legend()
    _plot_reuse(axes[1, 0], axes[1, 1], records)
    fig.tight_layout()
    out_path = out_path or os.path.join(run_dir, "run.png")
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return [out_path]


def _saved_share(runs):
    """1 - reuse training time / exact training time, from the last epoch records (or None)."""
    last = {k: [r for r in v if r["kind"] == "epoch"] for k, v in runs.items()}
    if not (last["exact"] and last["reuse"]) or not _train_s(last["exact"][-1]):
        return None
    return 1 - _train_s(last["reuse"][-1]) / _train_s(last["exact"][-1])


def plot_compare(exact_dir, reuse_dir, out_dir, target_acc=None):
    """compare_accuracy.png (both runs: test accuracy vs training time and vs step, per-step
    training loss) and compare_reuse.png (rc and rung per layer of the reuse run)."""
    dirs = {"exact": exact_dir, "reuse": reuse_dir}
    runs = {k: read_records(d) for k, d in dirs.items()}
    plt = _pyplot()
    fig, (ax_t, ax_s, ax_l) = plt.subplots(1, 3, figsize=(16, 5))
    for name, records in runs.items():
        evals = _evals(records)
        label = f"{name} ({os.path.basename(os.path.abspath(dirs[name]))})"
        ax_t.plot([_train_s(r) for r in evals], [100 * r["test_acc"] for r in evals], marker="o", label=label)
        ax_s.plot([r["step"] for r in evals], [100 * r["test_acc"] for r in evals], marker="o", label=label)
        _loss_curve(ax_l, read_steps(dirs[name]), label)
    if target_acc is not None:
        for ax in (ax_t, ax_s):
            ax.axhline(100 * target_acc, color="gray", linestyle="--", label="target (exact final - 0.3)")
    saved = _saved_share(runs)
    if saved is None:
        ax_t.set_title("test accuracy")
    elif saved >= 0:
        ax_t.set_title(f"test accuracy: reuse saves {100 * saved:.1f} % of training time")
    else:
        ax_t.set_title(f"test accuracy: reuse took {-100 * saved:.1f} % more training time")
    ax_t.set_xlabel("training time (s, evaluation excluded)")
    ax_s.set_title("test accuracy per step")
    ax_s.set_xlabel("step")
    for ax in (ax_t, ax_s):
        ax.set_ylabel("test accuracy (%)")
        ax.legend()
    ax_l.set_title(f"training loss (per step, mean of {SMOOTH_STEPS})")
    ax_l.set_xlabel("step")
    ax_l.set_ylabel("loss")
    ax_l.legend()
    fig.tight_layout()
    acc_path = os.path.join(out_dir, "compare_accuracy.png")
    fig.savefig(acc_path, dpi=100)
    plt.close(fig)
    fig, (ax_rc, ax_rung) = plt.subplots(2, 1, figsize=(8, 8), sharex=True)
    _plot_reuse(ax_rc, ax_rung, runs["reuse"], " (reuse run)")
    fig.tight_layout()
    reuse_path = os.path.join(out_dir, "compare_reuse.png")
    fig.savefig(reuse_path, dpi=100)
    plt.close(fig)
    return [acc_path, reuse_path]
