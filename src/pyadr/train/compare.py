"""Exact vs reuse: train the same model and seed both ways, then tabulate and plot.

Time to target is measured on training time (train_time of the records: evaluation and
checkpoint writes excluded); runs logged before train_time existed fall back to wall_time."""
from __future__ import annotations

import dataclasses
import json
import os

from .metrics import read_records
from .plots import PlottingUnavailable, plot_compare
from .trainer import Trainer

TARGET_DROP = 0.003     # target accuracy = exact final accuracy - 0.3 points


def train_seconds(record):
    """Training time of a record (wall time for records written before train_time existed)."""
    return record.get("train_time", record["wall_time"])


def first_at_target(records, target):
    """The first (by training time) eval/epoch record with test_acc >= target, or None. Only
    evaluations of the whole test set count (not the periodic ones on a subset, which are
    noisier: a lucky subset must not reach the target early)."""
    evals = [r for r in records if r["kind"] in ("eval", "epoch")]
    full = max((r.get("test_images") or 0 for r in evals), default=0)
    for r in sorted(evals, key=train_seconds):
        if r.get("test_images") not in (None, full):
            continue
        if r.get("test_acc") is not None and r["test_acc"] >= target:
            return r
    return None


def time_to_accuracy(records, target):
    """Training time of the first eval/epoch record with test_acc >= target, or None."""
    r = first_at_target(records, target)
    return None if r is None else train_seconds(r)


def summarize(exact_dir, reuse_dir, target_drop=TARGET_DROP):
    rows = {}
    for name, d in (("exact", exact_dir), ("reuse", reuse_dir)):
        records = read_records(d)
        last = [r for r in records if r["kind"] == "epoch"][-1]
        rows[name] = {"dir": d, "wall_time": last["wall_time"], "train_time": train_seconds(last),
                      "eval_time": last.get("eval_time"), "conv_time": last["conv_time_total"],
                      "test_acc": last["test_acc"], "records": records}
    target = rows["exact"]["test_acc"] - target_drop
    for row in rows.values():
        row["time_to_target"] = time_to_accuracy(row["records"], target)
    return rows, target


def format_table(rows, target):
    def fmt(v, spec):
        return "-" if v is None else format(v, spec)
    head = (f"{'run':8s} {'wall (s)':>10s} {'train (s)':>10s} {'eval (s)':>10s} {'conv (s)':>10s} "
            f"{'test acc':>9s} {'to target (train s)':>20s}")
    lines = [head, "-" * len(head)]
    for name, r in rows.items():
        lines.append(f"{name:8s} {r['wall_time']:10.1f} {r['train_time']:10.1f} {fmt(r['eval_time'], '10.1f')} "
                     f"{r['conv_time']:10.1f} {100 * r['test_acc']:8.2f}% {fmt(r['time_to_target'], '20.1f')}")
    ex, re_ = rows["exact"], rows["reuse"]
    saved_train = 1 - re_["train_time"] / ex["train_time"] if ex["train_time"] else 0.0
    saved_conv = 1 - re_["conv_time"] / ex["conv_time"] if ex["conv_time"] else 0.0
    lines.append(f"time saved by reuse: {100 * saved_train:.1f} % of training time, {100 * saved_conv:.1f} % "
                 f"of conv time; accuracy change {100 * (re_['test_acc'] - ex['test_acc']):+.2f} points; "
                 f"target accuracy {100 * target:.2f} %")
    return "\n".join(lines)


def run_compare(cfg, out_dir, log=print, target_drop=TARGET_DROP, comm=None):
    """Train exactly and with cfg.reuse into out_dir/exact and out_dir/<strategy>; returns rows.
    Data-parallel (`comm`): every rank trains, rank 0 alone tabulates and plots (others: None)."""
    if cfg.reuse == "exact":
        raise ValueError("reuse must name a reuse strategy (fixed, ladder, adaptive or tuned) to compare with exact")
    root = comm is None or comm.is_root
    exact_dir, reuse_dir = os.path.join(out_dir, "exact"), os.path.join(out_dir, cfg.reuse)
    # both trainers are built (and their settings checked) before either writes a file
    trainers = [(strategy, Trainer(dataclasses.replace(cfg, reuse=strategy, out=d, resume=None), log=log,
                                   comm=comm))
                for strategy, d in (("exact", exact_dir), (cfg.reuse, reuse_dir))]
    if root:
        os.makedirs(out_dir, exist_ok=True)
    for strategy, trainer in trainers:
        if root:
            log(f"== {strategy} ==")
        trainer.run()
    if not root:
        return None
    rows, target = summarize(exact_dir, reuse_dir, target_drop)
    log(format_table(rows, target))
    try:
        for path in plot_compare(exact_dir, reuse_dir, out_dir, target):
            log(f"wrote {path}")
    except PlottingUnavailable as exc:
        log(str(exc))
    return rows


def summarize_runs(run_dirs, target=None, target_drop=TARGET_DROP):
    """Time to accuracy over several runs (e.g. seeds): (rows, target). The target is given, or
    the mean final test accuracy of the exact runs among `run_dirs` minus `target_drop` (issue
    #3's definition: "the exact runs' final test accuracy, mean of 3 seeds, minus 0.3 points")."""
    rows = []
    for d in run_dirs:
        records = read_records(d)
        epochs = [r for r in records if r["kind"] == "epoch"]
        if not epochs:
            raise ValueError(f"{d} has no finished epoch in metrics.jsonl")
        try:
            with open(os.path.join(d, "config.json")) as f:
                cfg = json.load(f)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{d}: cannot read config.json ({exc})") from exc
        rows.append({"dir": d, "reuse": cfg.get("reuse", "?"), "seed": cfg.get("seed"),
                     "threads": cfg.get("threads"), "test_acc": epochs[-1]["test_acc"],
                     "wall_time": epochs[-1]["wall_time"], "train_time": train_seconds(epochs[-1]),
                     "eval_time": epochs[-1].get("eval_time"), "records": records})
    if target is None:
        exact = [r["test_acc"] for r in rows if r["reuse"] == "exact"]
        if not exact:
            raise ValueError("no exact run among the run directories: give --target")
        target = sum(exact) / len(exact) - target_drop
    for r in rows:
        hit = first_at_target(r["records"], target)
        r["time_to_target"] = None if hit is None else train_seconds(hit)
        r["epoch_to_target"] = None if hit is None else hit["epoch"]
    return rows, target


def format_runs(rows, target):
    def fmt(v, spec):
        width = int(spec.split(".")[0].rstrip("df") or 0)
        return "-".rjust(width) if v is None else format(v, spec)
    head = (f"{'run':40s} {'reuse':>9s} {'seed':>4s} {'thr':>3s} {'test acc':>9s} {'wall (s)':>9s} "
            f"{'to target (train s)':>19s} {'epoch':>6s} {'share of train':>14s} {'train (s)':>9s} {'eval (s)':>9s}")
    lines = [f"target accuracy {100 * target:.2f} %", head, "-" * len(head)]
    for r in rows:
        share = (r["time_to_target"] / r["train_time"] if r["time_to_target"] is not None and r["train_time"]
                 else None)
        name = os.path.normpath(r["dir"])
        name = name if len(name) <= 40 else "..." + name[-37:]
        lines.append(f"{name:40s} {r['reuse']:>9s} "
                     f"{fmt(r['seed'], '4d')} {fmt(r['threads'], '3d')} {100 * r['test_acc']:8.2f}% "
                     f"{r['wall_time']:9.1f} {fmt(r['time_to_target'], '19.1f')} "
                     f"{fmt(r['epoch_to_target'], '6.2f')} {fmt(share, '14.2f')} "
                     f"{r['train_time']:9.1f} {fmt(r['eval_time'], '9.1f')}")
    return "\n".join(lines)
