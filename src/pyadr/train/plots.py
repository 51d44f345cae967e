"""PNG plots of runs (matplotlib is optional: a clear error says how to get it)."""
from __future__ import annotations

import os

from .metrics import read_records


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
    """Test accuracy vs wall time, losses vs epoch, and rc/rung per layer for one run."""
    records = read_records(run_dir)
    plt = _pyplot()
    evals = _evals(records)
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    axes[0, 0].plot([r["wall_time"] for r in evals], [100 * r["test_acc"] for r in evals], marker="o")
    axes[0, 0].set_xlabel("wall-clock time (s)")
    axes[0, 0].set_ylabel("test accuracy (%)")
    axes[0, 0].set_title(os.path.basename(os.path.abspath(run_dir)))
    for key in ("train_loss", "test_loss"):
        pts = [(r["epoch"], r[key]) for r in evals if r.get(key) is not None]
        axes[0, 1].plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=key)
    axes[0, 1].set_xlabel("epoch")
    axes[0, 1].set_ylabel("loss")
    axes[0, 1].legend()
    _plot_reuse(axes[1, 0], axes[1, 1], records)
    fig.tight_layout()
    out_path = out_path or os.path.join(run_dir, "run.png")
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return [out_path]


def plot_compare(exact_dir, reuse_dir, out_dir, target_acc=None):
    """compare_accuracy.png (test accuracy vs wall time, both runs) and compare_reuse.png."""
    runs = {"exact": read_records(exact_dir), "reuse": read_records(reuse_dir)}
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, records in runs.items():
        evals = _evals(records)
        ax.plot([r["wall_time"] for r in evals], [100 * r["test_acc"] for r in evals], marker="o",
                label=f"{name} ({os.path.basename(os.path.abspath(exact_dir if name == 'exact' else reuse_dir))})")
    if target_acc is not None:
        ax.axhline(100 * target_acc, color="gray", linestyle="--", label="target (exact final - 0.3)")
    ax.set_xlabel("wall-clock time (s)")
    ax.set_ylabel("test accuracy (%)")
    ax.legend()
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
