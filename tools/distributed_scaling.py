"""Throughput of data-parallel training: step time, images/s and the share of a step spent in
collectives, for the figures in docs/distributed.md.

    python tools/distributed_scaling.py [--reuse exact|adaptive] [--steps 22] [--batch-size 128]
    mpiexec -n 2 python tools/distributed_scaling.py ...      (add --allow-run-as-root --oversubscribe as root)

Trains CifarNet on Fashion-MNIST (the first batch-size x steps images) with 1 engine thread per
rank, times every step on rank 0 (the first two are warm-up and not counted), and prints one
JSON line: ranks, median step (s), images/s (global batch / median step), comm share (time in
allgather + allreduce / step time, summed over the timed steps; it includes waiting for the
slowest rank), and the median CPU time of rank 0's process per step (what a rank costs when it
has a core to itself). Test-set evaluation is skipped: only training steps are measured.

    mpiexec -n 2 python tools/distributed_scaling.py --collectives

times the collectives alone instead: an in-place Allreduce of the model's gradient (float32, one
flat buffer, as the trainer sends it) and the per-step allgather of 10 scalars, medians of 50
after 10 warm-up calls, each call started together after a Barrier.
"""
import argparse
import json
import statistics
import sys
import tempfile
import time

import numpy as np

from pyadr.train.config import TrainConfig
from pyadr.train.distributed import connect
from pyadr.train.models import build_model
from pyadr.train.trainer import Trainer

WARMUP = 2


class TimedTrainer(Trainer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.step_seconds, self.comm_step_seconds, self.cpu_step_seconds = [], [], []

    def _train_step(self, *args, **kwargs):
        c0, t0, p0 = self.comm.comm_seconds, time.perf_counter(), time.process_time()
        loss = super()._train_step(*args, **kwargs)
        self.step_seconds.append(time.perf_counter() - t0)
        self.cpu_step_seconds.append(time.process_time() - p0)
        self.comm_step_seconds.append(self.comm.comm_seconds - c0)
        return loss

    def _evaluate(self):
        return 0.0, 0.0


def time_collectives(comm, model):
    params = sum(int(p.data.size) for p in build_model(model, (1, 28, 28), 10).parameters())
    grad = np.random.default_rng(comm.rank).standard_normal(params).astype(np.float32)
    calls = {"allreduce_ms": lambda: comm.allreduce_sum(grad),
             "allgather_10_scalars_ms": lambda: comm.allgather(np.zeros(10))}
    result = {"ranks": comm.size, "model": model, "params": params, "bytes": 4 * params}
    for name, call in calls.items():
        times = []
        for _ in range(60):
            comm.barrier()
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
        result[name] = round(1e3 * statistics.median(times[10:]), 3)
    if comm.is_root:
        print(json.dumps(result))
    return 0


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--reuse", default="exact", choices=("exact", "adaptive"))
    p.add_argument("--steps", type=int, default=22)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--model", default="cifarnet")
    p.add_argument("--collectives", action="store_true", help="time the collectives alone")
    a = p.parse_args(argv)
    comm = connect("auto")
    if a.collectives:
        return time_collectives(comm, a.model)
    out = tempfile.mkdtemp(prefix="pyadr-scaling-") if comm.is_root else None
    out = comm.bcast(out)
    cfg = TrainConfig(model=a.model, dataset="fashion-mnist", batch_size=a.batch_size, epochs=1,
                      limit_train=a.batch_size * a.steps, reuse=a.reuse, threads=1, progress=False,
                      out=out, exact_tail=0.0 if a.reuse == "adaptive" else None)
    trainer = TimedTrainer(cfg, log=lambda *_: None, comm=comm)
    trainer.run()
    steps, comm_s = trainer.step_seconds[WARMUP:], trainer.comm_step_seconds[WARMUP:]
    if comm.is_root:
        median = statistics.median(steps)
        params = sum(int(p.data.size) for p in build_model(a.model, (1, 28, 28), 10).parameters())
        print(json.dumps({"ranks": comm.size, "model": a.model, "reuse": a.reuse, "batch": a.batch_size,
                          "timed_steps": len(steps), "median_step_s": round(median, 4),
                          "images_per_s": round(a.batch_size / median, 1),
                          "comm_share": round(sum(comm_s) / sum(steps), 4),
                          "median_comm_s": round(statistics.median(comm_s), 5),
                          "median_cpu_s": round(statistics.median(trainer.cpu_step_seconds[WARMUP:]), 4),
                          "params": params, "rungs": trainer.schedule.labels()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
