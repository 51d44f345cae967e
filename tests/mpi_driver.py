"""A training run for the data-parallel tests, started by them with or without `mpiexec -n N`.

    python tests/mpi_driver.py SETTINGS_JSON RESULT_DIR [--raise-at-step K --raise-rank R]

Trains pyadr.train.Trainer with the TrainConfig settings in SETTINGS_JSON over
distributed.connect("auto"), and writes RESULT_DIR/rank<r>.npz on every rank: the final
state_dict and the global per-step losses (losses), so a test can compare ranks bit for bit.
RESULT_DIR/pid<r> holds each rank's pid once its first step is done (for the killed-rank test);
--raise-at-step makes rank R raise at that global step (for the failing-rank test).
"""
import argparse
import json
import os
import sys

import numpy as np

from pyadr.train.config import TrainConfig
from pyadr.train.distributed import connect
from pyadr.train.trainer import Trainer


class RecordingTrainer(Trainer):
    def __init__(self, cfg, comm, result_dir, raise_at=None, raise_rank=0):
        super().__init__(cfg, log=print, comm=comm)
        self.losses, self.result_dir = [], result_dir
        self.raise_at, self.raise_rank = raise_at, raise_rank

    def _train_step(self, *args, **kwargs):
        if self.raise_at is not None and self.global_step == self.raise_at and self.comm.rank == self.raise_rank:
            raise ValueError(f"injected failure at global step {self.global_step}")
        loss = super()._train_step(*args, **kwargs)
        self.losses.append(loss)
        if len(self.losses) == 1:
            with open(os.path.join(self.result_dir, f"pid{self.comm.rank}"), "w") as f:
                f.write(str(os.getpid()))
        return loss


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("settings")
    p.add_argument("result_dir")
    p.add_argument("--raise-at-step", type=int, default=None)
    p.add_argument("--raise-rank", type=int, default=0)
    args = p.parse_args(argv)
    comm = connect("auto")
    with open(args.settings) as f:
        cfg = TrainConfig.from_dict(json.load(f)).validate()
    os.makedirs(args.result_dir, exist_ok=True)
    trainer = RecordingTrainer(cfg, comm, args.result_dir, args.raise_at_step, args.raise_rank)
    summary = trainer.run()
    state = trainer.model.state_dict()
    np.savez(os.path.join(args.result_dir, f"rank{comm.rank}.npz"), losses=np.array(trainer.losses),
             size=np.array(comm.size), **{"model/" + k: v for k, v in state.items()})
    print(f"rank {comm.rank}: {summary['steps']} steps, comm {summary['comm_time']:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
