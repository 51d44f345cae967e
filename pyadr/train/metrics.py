"""Run logs: metrics.jsonl (one JSON object per line) and metrics.csv (epoch and eval records).

Record kinds: "epoch" (end of each epoch), "eval" (every --eval-every steps) and "rung" (a
reuse-schedule change, with its reason; jsonl only). Epoch/eval keys: kind, epoch (fractional
epochs done), step, wall_time (s since run start, training and evaluation included), train_loss,
train_acc, test_loss, test_acc (0-1), lr, conv_time (s in conv/linear forward+backward during
training in this epoch so far), conv_time_total, rc (layer -> mean remaining ratio over this
epoch's steps so far, null when the layer ran exact), rung (layer -> current rung label).
"""
from __future__ import annotations

import csv
import io
import json
import os

CSV_COLUMNS = ["kind", "epoch", "step", "wall_time", "train_loss", "train_acc", "test_loss",
               "test_acc", "lr", "conv_time", "conv_time_total", "rc", "rung"]


def read_records(run_dir):
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: is {run_dir} a pyadr training run directory?")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class MetricsLog:
    """Appends records to metrics.jsonl and metrics.csv in `run_dir`."""

    def __init__(self, run_dir, keep_until_step=None):
        self.jsonl = os.path.join(run_dir, "metrics.jsonl")
        self.csv = os.path.join(run_dir, "metrics.csv")
        if keep_until_step is None:
            for p in (self.jsonl, self.csv):
                if os.path.exists(p):
                    os.remove(p)
        else:
            self._truncate(keep_until_step)
        if not os.path.exists(self.csv):
            with open(self.csv, "w", newline="") as f:
                csv.writer(f).writerow(CSV_COLUMNS)

    def _truncate(self, step):
        """On resume: drop records written after the checkpoint (a crash may have left some)."""
        records = read_records(os.path.dirname(self.jsonl)) if os.path.exists(self.jsonl) else []
        kept = [r for r in records if r.get("step", 0) <= step]
        with open(self.jsonl, "w") as f:
            for r in kept:
                f.write(json.dumps(r) + "\n")
        with open(self.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(CSV_COLUMNS)
            for r in kept:
                if r["kind"] in ("epoch", "eval"):
                    w.writerow(self._csv_row(r))

    @staticmethod
    def _csv_row(record):
        row = []
        for c in CSV_COLUMNS:
            v = record.get(c)
            row.append(json.dumps(v, sort_keys=True) if isinstance(v, dict) else ("" if v is None else v))
        return row

    def write(self, record):
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(record) + "\n")
        if record["kind"] in ("epoch", "eval"):
            buf = io.StringIO()
            csv.writer(buf).writerow(self._csv_row(record))
            with open(self.csv, "a", newline="") as f:
                f.write(buf.getvalue())
