"""Optional TensorBoard event files of a run (`pyadr train --tensorboard`, `pip install pyadr[tb]`).

Written with tensorboard's own `tensorboard.summary.Writer` (the `tensorboard` package alone:
no TensorFlow, no torch, no tensorboardX), into OUT/tensorboard; `tensorboard --logdir OUT`
shows them. Scalars, with the global step (steps done) as x axis:
  per step:  train/loss, train/acc (the step's batch), train/lr, time/step_s, rc/<layer>
  per eval:  test/acc, test/loss, time/train_s, time/eval_s (every periodic and epoch-end eval)
"""
from __future__ import annotations

import math
import os

SUBDIR = "tensorboard"
INSTALL_HINT = "--tensorboard needs the tensorboard package: pip install tensorboard (or pyadr[tb])"


def writer_class():
    """tensorboard.summary.Writer, or RuntimeError saying how to install it (checked before a
    run writes any file)."""
    try:
        from tensorboard.summary import Writer
    except ImportError:
        raise RuntimeError(INSTALL_HINT) from None
    return Writer


class TensorBoardLog:
    def __init__(self, run_dir, layers=()):
        self.logdir = os.path.join(run_dir, SUBDIR)
        self.layers = list(layers)
        self._writer = writer_class()(self.logdir)

    def _scalars(self, step, values):
        for tag, v in values.items():
            if v is not None and math.isfinite(v):
                self._writer.add_scalar(tag, float(v), step=int(step))

    def write_step(self, row):
        """`row` as for MetricsLog.write_step."""
        rc = row.get("rc") or {}
        values = {"train/loss": row["loss"], "train/acc": row["acc"], "train/lr": row["lr"],
                  "time/step_s": row["step_time"]}
        values.update({f"rc/{n}": rc.get(n) for n in self.layers})
        self._scalars(row["step"], values)

    def write_eval(self, record):
        self._scalars(record["step"], {"test/acc": record["test_acc"], "test/loss": record["test_loss"],
                                       "time/train_s": record["train_time"], "time/eval_s": record["eval_time"]})
        self._writer.flush()

    def close(self):
        self._writer.close()
