"""pyadr.train — the standalone CNN trainer (data, models, adaptive reuse schedule, loop, logs).

Architecture (dependencies point down; nothing here imports torch, and matplotlib/tqdm are
optional, imported where used):
  cli          `pyadr train | compare | plot | evaluate`; main(argv) -> exit code
  compare      exact-vs-reuse runs, table, time-to-target;  plots: PNGs of runs
  trainer      the loop: schedule decisions, SGD steps, eval, metrics, checkpoints, resume, Ctrl-C
  reuse_schedule  strategies exact/fixed/ladder/adaptive, rungs, cost model, plateau/gap triggers
  evaluation   test-set evaluation (exact convolution unless asked);  metrics: jsonl/csv logs
  checkpoint   self-describing atomic .npz checkpoints;  config: TrainConfig and its resolution
  models       CifarNet, AlexNet, VGG-11/16/19, tiny;  data + loader: datasets and batches
  profile      `pyadr profile`: where a training step's time goes, exact vs reuse
  distributed  data-parallel over MPI (mpi4py, imported only when wanted): ranks, collectives
All layers come from pyadr.nn, which reaches the engine only through pyadr.nn.functional.
"""
from .config import TrainConfig
from .models import MODEL_NAMES, build_model, engine_layers
from .reuse_schedule import STRATEGIES, ReuseSchedule, Rung
from .trainer import Trainer

__all__ = ["TrainConfig", "Trainer", "ReuseSchedule", "Rung", "build_model", "engine_layers",
           "MODEL_NAMES", "STRATEGIES"]
