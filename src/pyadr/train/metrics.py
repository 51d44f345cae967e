"""Run logs: metrics.jsonl (one JSON object per line, the full record), metrics.csv (flat
columns of the epoch and eval records, for pandas and spreadsheets) and steps.csv (one row per
training step: the loss curve).

Record kinds: "epoch" (end of each epoch), "eval" (every --eval-every steps) and "rung" (a
reuse-schedule change, with its reason; jsonl only). Epoch/eval keys: kind, epoch (fractional
epochs done), step, wall_time (s since run start, everything included), train_time (s since run
start spent training: steps, data loading, the reuse schedule's calibration and checks; neither
evaluation nor checkpoint writes), eval_time (s since run start spent evaluating), train_loss,
train_acc, test_loss, test_acc (0-1), lr, conv_time (s in conv/linear forward+backward during
training in this epoch so far), conv_time_total, rc (layer -> mean remaining ratio over this
epoch's steps so far, null when the layer ran exact), rung (layer -> current rung label).

metrics.csv has the scalar keys as columns, then rc_<layer> and rung_<layer> for each reusing
layer (fixed when the run starts; a resumed run keeps the header): rc_<layer> is a number, empty
when the layer ran exact; rung_<layer> a label such as "l2 L64 H12 w1" or "exact".

steps.csv: step (global steps done), epoch, train_time, wall_time (as above, at the step's end),
step_time (s of this step), loss and acc (of the step's batch), lr, then rc_<layer> of the step
(empty when the layer ran exact).
"""
from __future__ import annotations

import csv
import io
import json
import os

SCALAR_COLUMNS = ["kind", "epoch", "step", "wall_time", "train_time", "eval_time", "train_loss",
                  "train_acc", "test_loss", "test_acc", "test_images", "lr", "conv_time", "conv_time_total"]


STEP_COLUMNS = ["step", "epoch", "train_time", "wall_time", "step_time", "loss", "acc", "lr"]


def step_columns(layers):
    """Header of steps.csv for a run whose reusing layers are `layers`."""
    return STEP_COLUMNS + [f"rc_{name}" for name in layers]


def csv_columns(layers):
    """Header of metrics.csv for a run whose reusing layers are `layers` (in model order)."""
    return SCALAR_COLUMNS + [f"{kind}_{name}" for name in layers for kind in ("rc", "rung")]


def csv_row(record, layers):
    """One metrics.csv row of an epoch/eval record: scalars, then rc and rung per layer."""
    rc, rung = record.get("rc") or {}, record.get("rung") or {}
    row = [_cell(record.get(c)) for c in SCALAR_COLUMNS]
    for name in layers:
        row += [_cell(rc.get(name)), _cell(rung.get(name))]
    return row


def _cell(v):
    return "" if v is None else v


def read_steps(run_dir):
    """steps.csv as a list of {column: float or None}, [] for runs written before it existed."""
    path = os.path.join(run_dir, "steps.csv")
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return [{k: (float(v) if v != "" else None) for k, v in row.items()} for row in csv.DictReader(f)]


def read_records(run_dir):
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: is {run_dir} a pyadr training run directory?")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class MetricsLog:
    """Appends records to metrics.jsonl and metrics.csv in `run_dir`; `layers` names the
    reusing layers (the csv's per-layer columns)."""

    def __init__(self, run_dir, layers=(), keep_until_step=None):
        self.jsonl = os.path.join(run_dir, "metrics.jsonl")
        self.csv = os.path.join(run_dir, "metrics.csv")
        self.steps_csv = os.path.join(run_dir, "steps.csv")
        self.layers = list(layers)
        if keep_until_step is None:
            for p in (self.jsonl, self.csv, self.steps_csv):
                if os.path.exists(p):
                    os.remove(p)
        else:
            self._truncate(keep_until_step)
            self._truncate_steps(keep_until_step)
        if not os.path.exists(self.csv):
            with open(self.csv, "w", newline="") as f:
                csv.writer(f).writerow(csv_columns(self.layers))
        if not os.path.exists(self.steps_csv):
            with open(self.steps_csv, "w", newline="") as f:
                csv.writer(f).writerow(step_columns(self.layers))

    def _truncate_steps(self, step):
        if not os.path.exists(self.steps_csv):
            return
        with open(self.steps_csv, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("step") and float(r["step"]) <= step]
        with open(self.steps_csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(step_columns(self.layers))
            for r in rows:
                w.writerow([r.get(c, "") for c in step_columns(self.layers)])

    def write_step(self, row):
        """One steps.csv row: `row` has the STEP_COLUMNS keys and "rc" (layer -> rc or None)."""
        rc = row.get("rc") or {}
        cells = [_cell(row.get(c)) for c in STEP_COLUMNS] + [_cell(rc.get(n)) for n in self.layers]
        buf = io.StringIO()
        csv.writer(buf).writerow(cells)
        with open(self.steps_csv, "a", newline="") as f:
            f.write(buf.getvalue())

    def _truncate(self, step):
        """On resume: drop records written after the checkpoint (a crash may have left some) and
        rewrite metrics.csv from the kept records, with this run's header."""
        records = read_records(os.path.dirname(self.jsonl)) if os.path.exists(self.jsonl) else []
        kept = [r for r in records if r.get("step", 0) <= step]
        with open(self.jsonl, "w") as f:
            for r in kept:
                f.write(json.dumps(r) + "\n")
        with open(self.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(csv_columns(self.layers))
            for r in kept:
                if r["kind"] in ("epoch", "eval"):
                    w.writerow(csv_row(r, self.layers))

    def write(self, record):
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(record) + "\n")
        if record["kind"] in ("epoch", "eval"):
            buf = io.StringIO()
            csv.writer(buf).writerow(csv_row(record, self.layers))
            with open(self.csv, "a", newline="") as f:
                f.write(buf.getvalue())
