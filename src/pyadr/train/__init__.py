"""pyadr.train — the standalone CNN trainer (data, models, adaptive reuse schedule, loop, logs).

Layer 4: imports pyadr.nn and the array API below it, never pyadr.cli (the command lines
`pyadr train | compare | summary | plot | evaluate | profile` are pyadr/cli/train.py and
pyadr/cli/profile.py). Nothing here imports torch except torch_twin (on a call); matplotlib
and tqdm are optional, imported where used.
  compare      exact-vs-reuse runs, table, time-to-target;  plots: PNGs of runs
  trainer      the loop: schedule decisions, SGD steps, eval, metrics, checkpoints, resume, Ctrl-C
  reuse_schedule  strategies exact/fixed/ladder/adaptive, rungs, cost model, plateau/gap triggers
  evaluation   test-set evaluation (exact convolution unless asked);  metrics: jsonl/csv logs
  checkpoint   self-describing atomic .npz checkpoints;  config: TrainConfig and its resolution
  models       CifarNet, AlexNet, VGG-11/16/19, tiny;  data + loader: datasets and batches
  profile      where a training step's time goes (per-category timers), exact vs reuse
  torch_twin   the same model in PyTorch, for side-by-side step times
  distributed  data-parallel over MPI (mpi4py, imported only when wanted): ranks, collectives
All layers come from pyadr.nn, which reaches the engine only through pyadr.nn.functional.
"""
from .config import TrainConfig
from .models import MODEL_NAMES, build_model, engine_layers
from .reuse_schedule import STRATEGIES, ReuseSchedule, Rung
from .trainer import Trainer

__all__ = ["TrainConfig", "Trainer", "ReuseSchedule", "Rung", "build_model", "engine_layers",
           "MODEL_NAMES", "STRATEGIES"]
