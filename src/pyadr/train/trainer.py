"""The training loop: data -> model -> SGD, with the reuse schedule, metrics, checkpoints,
resume and clean Ctrl-C.

Resume is exact: batches, augmentation and dropout masks come from counter-based generators
keyed by (seed, epoch, step) (see loader.py), and a checkpoint holds the weights, optimizer
buffers, schedule state, position (epoch, step within it) and the partial-epoch counters. A stop
(Ctrl-C, or `stop_after_steps`) saves last.npz after the last completed step; resuming from it
replays the epoch's permutation from the next step, giving bit-identical weights.

Data-parallel (comm from pyadr.train.distributed, e.g. under `mpiexec -n N`): --batch-size stays
the global batch and each rank trains on its slice of it; per step one allgather of the scalars
(loss, correct, conv time, stop request, a fingerprint of the rung state) and one flat allreduce of
the gradients. Counters and the schedule see global numbers only, so checkpoints do not depend on
the number of ranks; rank 0 alone writes files, logs and shows the progress bar.
"""
from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
import zlib

import numpy as np

from ..nn import SGD, make_lr_schedule, softmax_cross_entropy
from ..nn.backend import device_module
from .checkpoint import load_checkpoint, save_checkpoint
from .config import RESOLVED_KEY, TrainConfig
from .data import load_dataset
from .distributed import Single, default_threads, float_buffers, sync_gradients, weights_fingerprint
from .evaluation import evaluate
from .loader import DROPOUT, BatchLoader
from .metrics import MetricsLog
from .tensorboard import TensorBoardLog, writer_class
from .models import build_model, dropout_layers, engine_layers
from .layer_tuner import TunedSchedule
from .reuse_schedule import ReuseSchedule, Rung, default_ladder, parse_ladder

PROBE = 0x9B0BE
FALLBACK_SIZE = (80, 24)    # progress bar's terminal columns and rows where the terminal reports none


class StopRequest:
    """First Ctrl-C asks the loop to stop after the current step; a second one aborts. SIGUSR1
    also asks for a stop after the current step (never an abort): mpiexec forwards it to every
    rank, where it forwards no Ctrl-C, and Slurm can send it before a time limit
    (`sbatch --signal=USR1@120`)."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def _handler(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if not self.requested:
            print("\nstopping after this step" + (" (Ctrl-C again to abort without saving)"
                                                  if signum == signal.SIGINT else ""), file=sys.stderr)
        self.requested = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, getattr(signal, "SIGUSR1", None)):
                if sig is not None:
                    self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):
        for sig, previous in self._previous.items():
            if previous is not None:
                signal.signal(sig, previous)
        self._previous = {}


def default_out_dir(cfg):
    return os.path.join("runs", f"{cfg.model}-{cfg.dataset}-{cfg.reuse}-s{cfg.seed}")


def make_schedule(cfg: TrainConfig) -> ReuseSchedule:
    rungs = [Rung(cfg.L, cfg.H, cfg.hash, cfg.width_scale)] if cfg.reuse == "fixed" else None
    if cfg.rungs is not None:
        rungs = [Rung.from_dict(r) for r in cfg.rungs]
    ladder = None
    if cfg.reuse == "ladder":
        ladder = parse_ladder(cfg.ladder) if cfg.ladder else default_ladder(cfg.epochs)
    common = dict(layers=cfg.reuse_layers, exact_tail=cfg.exact_tail, plateau_window=cfg.plateau_window,
                  plateau_eps=cfg.plateau_eps, gap_delta=cfg.gap_delta, check_every=cfg.check_every,
                  probe_batches=cfg.probe_batches, min_speedup=cfg.min_speedup, min_dwell=cfg.min_dwell,
                  seed=cfg.seed, planes=cfg.planes, planes_every=cfg.planes_every)
    if cfg.reuse == "tuned":        # per-layer measured frontier (layer_tuner.py)
        return TunedSchedule(budget_start=cfg.tune_budget_start, budget_end=cfg.tune_budget_end,
                             retune_every=cfg.retune_every, repeats=cfg.tune_repeats, **common)
    return ReuseSchedule(cfg.reuse, rungs=rungs, ladder=ladder, exact=tuple(cfg.reuse_exact or ()), **common)


def _new_epoch_counters():
    return {"loss_sum": 0.0, "correct": 0, "count": 0, "conv_time": 0.0, "rc_sum": {}, "rc_n": {}}


def _quiet(*_):
    pass


class Trainer:
    def __init__(self, cfg: TrainConfig, log=print, comm=None):
        self.cfg = cfg.validate()
        self.comm = comm if comm is not None else Single()
        self.log = log if self.comm.is_root else _quiet
        if cfg.batch_size < self.comm.size:
            raise ValueError(f"batch_size ({cfg.batch_size}) is the global batch and must be at least "
                             f"the number of ranks ({self.comm.size})")
        if self.comm.size > 1 and cfg.device != "cpu":
            raise ValueError(f"data-parallel training runs on device 'cpu' only for now, got {cfg.device!r}")
        self.xp = device_module(cfg.device)
        self.threads = cfg.threads
        if self.threads is None and self.comm.size > 1:
            self.threads = default_threads(self.comm.local_size)
        if self.threads is not None:
            import pyadr
            if hasattr(pyadr, "set_num_threads"):
                pyadr.set_num_threads(self.threads)
        data = load_dataset(cfg.dataset, cfg.data_dir).limit_train(cfg.limit_train)
        augment = cfg.augment if cfg.augment is not None else data.name == "cifar10"
        self.data = data
        shard = (self.comm.rank, self.comm.size)
        self.train_loader = BatchLoader(data.train_images, data.train_labels, cfg.batch_size,
                                        data.mean, data.std, seed=cfg.seed, crop_pad=4 if augment else 0,
                                        flip=augment, xp=self.xp, shard=shard)
        self.test_loader = BatchLoader(data.test_images, data.test_labels, cfg.eval_batch_size,
                                       data.mean, data.std, shuffle=False, xp=self.xp, shard=shard)
        # periodic (mid-epoch) evaluations, for the curves, on the first eval_subset test images:
        # 10 full passes over Fashion-MNIST's 10 000 would double a short run; epoch ends see all
        self.test_images = len(data.test_images)
        n = self.test_images if cfg.eval_subset is None else min(cfg.eval_subset, self.test_images)
        self.subset_images = n
        self.subset_loader = self.test_loader if n == self.test_images else BatchLoader(
            data.test_images[:n], data.test_labels[:n], cfg.eval_batch_size, data.mean, data.std,
            shuffle=False, xp=self.xp, shard=shard)
        probe_idx = np.random.default_rng([cfg.seed, PROBE]).permutation(len(data.train_images))
        probe_idx = np.sort(probe_idx[: cfg.probe_batches * cfg.batch_size])
        probe_loader = BatchLoader(data.train_images[probe_idx], data.train_labels[probe_idx],
                                   cfg.batch_size, data.mean, data.std, shuffle=False, xp=self.xp, prefetch=0,
                                   shard=shard)
        self.probes = [(x, y) for _, x, y in probe_loader.epoch(0)]
        self.steps_per_epoch = len(self.train_loader)
        self.total_steps = max(1, int(math.ceil(cfg.epochs * self.steps_per_epoch)))
        self.eval_every = cfg.eval_every_steps(self.total_steps)
        if cfg.tensorboard and self.comm.is_root:
            writer_class()                           # installed? (before any file is written)
        self.model_spec = {"name": cfg.model, "in_shape": list(data.image_shape),
                           "num_classes": data.num_classes, "width": cfg.width}
        # the input normalisation the model was trained with (pyadr export writes it for the edge)
        self.data_norm = {"mean": [float(v) for v in data.mean], "std": [float(v) for v in data.std]}
        self.model = build_model(cfg.model, data.image_shape, data.num_classes, cfg.width, cfg.seed).to(self.xp)
        self.layers = engine_layers(self.model)
        self.dropouts = dropout_layers(self.model)
        self.params, self.float_buffers = self.model.parameters(), float_buffers(self.model)
        self.optimizer = SGD(self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                             weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
        self.lr_at = make_lr_schedule(cfg.lr_schedule, cfg.lr, self.total_steps, self.steps_per_epoch,
                                      cfg.lr_milestones, cfg.lr_gamma)
        self.schedule = make_schedule(cfg)
        self.schedule.check_layers(self.model)       # every check before run() writes a file
        self.schedule.comm = self.comm
        self.stop_any = False
        self.out = cfg.out or default_out_dir(cfg)
        self.tb = None

    # -- bookkeeping --------------------------------------------------------------------------
    def _record(self, kind, counters, test):
        c = counters
        rc = {name: (c["rc_sum"][name] / c["rc_n"][name] if c["rc_n"].get(name) else None)
              for name, _ in self.layers}
        wall = self._wall()
        record = {"kind": kind, "epoch": round(self.global_step / self.steps_per_epoch, 6),
                  "step": self.global_step, "wall_time": wall, "train_time": self._train_time(wall),
                  "eval_time": self.eval_time_total,
                  "train_loss": c["loss_sum"] / c["count"] if c["count"] else None,
                  "train_acc": c["correct"] / c["count"] if c["count"] else None,
                  "test_loss": test[0], "test_acc": test[1], "test_images": test[2] if len(test) > 2 else None,
                  "lr": self.optimizer.lr,
                  "conv_time": c["conv_time"], "conv_time_total": self.conv_time_total,
                  "rc": rc, "rung": self.schedule.labels()}
        self.metrics.write(record)
        if self.tb is not None:
            self.tb.write_eval(record)
        return record

    def _wall(self):
        return time.perf_counter() - self.clock0

    def _train_time(self, wall):
        """Seconds since the start spent training: all of `wall` but evaluation and checkpoint writes."""
        return wall - self.eval_time_total - self.save_time_total

    def _events(self, events):
        for e in events:
            e = dict(e, epoch=round(e["step"] / self.steps_per_epoch, 6), wall_time=self._wall())
            self.metrics.write(e)
            if e["kind"] == "planes":
                self.log(f"[planes] step {e['step']}: {e['layer']}: {e['reason']}")
            else:
                self.log(f"[reuse] step {e['step']}: {e['layer']}: {e['from']} -> {e['to']} ({e['reason']})")

    def _save(self, name, epoch, step_in_epoch, counters):
        t0 = time.perf_counter()
        try:
            self._save_now(name, epoch, step_in_epoch, counters)
        finally:
            self.save_time_total += time.perf_counter() - t0

    def _save_now(self, name, epoch, step_in_epoch, counters):
        self._check_ranks_agree()
        if not self.comm.is_root:
            return
        meta = {"model_spec": self.model_spec, "config": self.cfg.to_dict(), "data_norm": self.data_norm,
                "position": {"epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": self.global_step},
                "schedule": self.schedule.state_dict(), "counters": counters,
                "totals": {"conv_time_total": self.conv_time_total, "wall_time": self._wall(),
                           "eval_time": self.eval_time_total, "save_time": self.save_time_total,
                           "best_acc": self.best_acc, "last_test": self.last_test},
                "rng": {"scheme": "counter-based default_rng([seed, epoch, step, stream])",
                        "seed": self.cfg.seed}}
        save_checkpoint(os.path.join(self.out, name), self.model, self.optimizer, meta)

    def _check_ranks_agree(self):
        """Invariant of data-parallel training: every rank holds the same weights (and buffers)."""
        if self.comm.size == 1:
            return
        crcs = self.comm.allgather([weights_fingerprint(self.model)])[:, 0]
        if not (crcs == crcs[0]).all():
            raise RuntimeError(f"the ranks' weights differ at global step {self.global_step} "
                               f"(crc32 {[int(c) for c in crcs]}): data-parallel training lost sync")

    def _evaluate(self, subset=False):
        """(test loss, test acc, images evaluated): all test images, or the periodic subset."""
        t0 = time.perf_counter()
        loader, n = (self.subset_loader, self.subset_images) if subset else (self.test_loader, self.test_images)
        try:
            return tuple(evaluate(self.model, loader, self.cfg.eval_reuse, comm=self.comm)[:2]) + (n,)
        finally:
            self.eval_time_total += time.perf_counter() - t0

    def _restore(self, path):
        meta, model_state, opt_state = load_checkpoint(path)
        if meta["model_spec"] != self.model_spec:
            raise ValueError(f"checkpoint {path} holds {meta['model_spec']}, this run builds {self.model_spec}")
        self.model.load_state_dict(model_state)
        self.optimizer.load_state_dict(opt_state)
        self.schedule.load_state_dict(meta["schedule"], self.model, self.probes)
        pos, totals = meta["position"], meta["totals"]
        self.global_step = pos["global_step"]
        self.conv_time_total, self.best_acc = totals["conv_time_total"], totals["best_acc"]
        self.last_test = tuple(totals["last_test"])
        self.clock0 = time.perf_counter() - totals["wall_time"]
        self.eval_time_total = totals.get("eval_time", 0.0)      # absent in older checkpoints
        self.save_time_total = totals.get("save_time", 0.0)
        return pos["epoch"], pos["step_in_epoch"], meta["counters"]

    def _progress(self):
        """A tqdm bar on stderr when it is a terminal, else on stdout when that one is (say under
        `2> log`); progress=True forces one on stderr, False none."""
        want = self.cfg.progress
        if not self.comm.is_root:
            return None
        stream = sys.stderr
        if want is None:
            stream = next((s for s in (sys.stderr, sys.stdout) if _isatty(s)), None)
            want = stream is not None
        if not want:
            return None
        try:
            from tqdm import tqdm
        except ImportError:
            if self.cfg.progress:
                self.log("tqdm is not installed: no progress bar (pip install tqdm)")
            return None
        # a sizeless terminal (a fresh pty reports 0x0): tqdm takes it as -1 columns and -1 rows and
        # draws nothing at all, so give it a size
        sized = _has_width(stream)
        size = {} if sized else {"ncols": FALLBACK_SIZE[0], "nrows": FALLBACK_SIZE[1]}
        return tqdm(total=self.total_steps, initial=self.global_step, unit="step", file=stream,
                    dynamic_ncols=sized, **size)

    # -- the loop -----------------------------------------------------------------------------
    def run(self):
        cfg = self.cfg
        self.global_step, self.conv_time_total, self.best_acc = 0, 0.0, -1.0
        self.eval_time_total = self.save_time_total = 0.0
        self.last_test = (None, None)
        self.clock0 = time.perf_counter()
        start_epoch, start_step, counters = 0, 0, _new_epoch_counters()
        root = self.comm.is_root
        # the schedule is set up (or restored) before any file is written: its errors leave none
        if cfg.resume:
            start_epoch, start_step, counters = self._restore(cfg.resume)
            setup_events = []
        else:
            setup_events = self.schedule.setup(self.model, self.probes, self.steps_per_epoch, self.total_steps)
        reusing = [n for n, _ in self.layers if n in self.schedule.plans]
        if root:
            os.makedirs(self.out, exist_ok=True)
            with open(os.path.join(self.out, "config.json"), "w") as f:
                json.dump(run_config_record(cfg, self.schedule, self.eval_every), f, indent=2)
        keep = self.global_step if cfg.resume else None
        self.metrics = MetricsLog(self.out, reusing, keep_until_step=keep) if root else _NoMetrics()
        self.tb = TensorBoardLog(self.out, reusing) if root and cfg.tensorboard else None
        if cfg.resume:
            self.log(f"resumed from {cfg.resume} at epoch {start_epoch}, step {start_step} "
                     f"(global step {self.global_step})")
        if self.comm.size > 1:
            self.log(f"data-parallel over {self.comm.size} ranks ({self.comm.name}, {self.comm.local_size} "
                     f"on this node), {self.threads} engine thread(s) per rank, global batch {cfg.batch_size}")
        self.log(f"training {cfg.model} on {cfg.dataset} ({len(self.data.train_images)} images, "
                 f"{self.steps_per_epoch} steps/epoch, {self.total_steps} steps), reuse={cfg.reuse}, "
                 f"out={self.out}")
        self._events(setup_events)
        bar = self._progress()
        interrupted = False
        with StopRequest() as stop:
            for epoch in range(start_epoch, int(math.ceil(cfg.epochs))):
                if self.global_step >= self.total_steps:
                    break
                step_in_epoch = start_step
                for step_in_epoch, x, y in self.train_loader.epoch(epoch, start_step):
                    if self.global_step >= self.total_steps:
                        break
                    self._train_step(epoch, step_in_epoch, x, y, counters, stop.requested)
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{counters['loss_sum'] / counters['count']:.4f}")
                    epoch_ends = (step_in_epoch + 1 == self.steps_per_epoch
                                  or self.global_step >= self.total_steps)     # the epoch record evaluates
                    if self.eval_every and self.global_step % self.eval_every == 0 and not epoch_ends:
                        self.last_test = self._evaluate(subset=True)
                        rec = self._record("eval", counters, self.last_test)
                        self.log(f"step {self.global_step}: test acc {rec['test_acc']:.4f}, "
                                 f"train loss {rec['train_loss']:.4f}, {rec['wall_time']:.1f} s")
                    if self.stop_any or (cfg.stop_after_steps and self.global_step >= cfg.stop_after_steps):
                        interrupted = True
                        break
                if interrupted:
                    self._save("last.npz", epoch, step_in_epoch + 1, counters)
                    self.log(f"stopped at global step {self.global_step}; resume with "
                             f"--resume {os.path.join(self.out, 'last.npz')}")
                    break
                self.last_test = self._evaluate()
                rec = self._record("epoch", counters, self.last_test)
                self.log(f"epoch {rec['epoch']:g}: train loss {rec['train_loss']:.4f}, test loss "
                         f"{rec['test_loss']:.4f}, test acc {rec['test_acc']:.4f}, {rec['wall_time']:.1f} s "
                         f"(train {rec['train_time']:.1f} s, eval {rec['eval_time']:.1f} s, conv "
                         f"{rec['conv_time']:.1f} s), rc {_fmt_rc(rec['rc'])}")
                counters, start_step = _new_epoch_counters(), 0
                self._save("last.npz", epoch + 1, 0, counters)
                if rec["test_acc"] > self.best_acc:
                    self.best_acc = rec["test_acc"]
                    self._save("best.npz", epoch + 1, 0, counters)
        if bar is not None:
            bar.close()
        if self.tb is not None:
            self.tb.close()
        wall = self._wall()
        summary = {"out": self.out, "steps": self.global_step, "interrupted": interrupted,
                   "test_loss": self.last_test[0], "test_acc": self.last_test[1],
                   "wall_time": wall, "train_time": self._train_time(wall),
                   "eval_time": self.eval_time_total, "conv_time": self.conv_time_total,
                   "ranks": self.comm.size, "comm_time": self.comm.comm_seconds}
        if not interrupted:
            acc = summary["test_acc"]
            how = "reuse" if cfg.eval_reuse else "exact"
            self.log(f"final test accuracy {100 * acc:.2f} % ({how} convolution), wall time "
                     f"{summary['wall_time']:.1f} s (train {summary['train_time']:.1f} s, eval "
                     f"{summary['eval_time']:.1f} s), conv time {summary['conv_time']:.1f} s"
                     + (f", {summary['comm_time']:.1f} s in collectives on rank 0 ({self.comm.size} ranks)"
                        if self.comm.size > 1 else ""))
        return summary

    def _train_step(self, epoch, step_in_epoch, x, y, counters, stop_requested=False):
        """One SGD step on this rank's slice of global batch `step_in_epoch`; returns the global
        batch's mean loss. Sets self.stop_any when any rank was asked to stop."""
        t_step = time.perf_counter()
        comm = self.comm
        self._events(self.schedule.before_step(self.global_step, self.steps_per_epoch))
        self.optimizer.lr = self.lr_at(self.global_step)
        rank_key = [comm.rank] if comm.size > 1 else []     # ranks draw different dropout masks
        for i, d in enumerate(self.dropouts):
            d.rng = np.random.default_rng([self.cfg.seed, epoch, step_in_epoch, DROPOUT, i] + rank_key)
        self.model.train()
        n_global = self.train_loader.global_rows(step_in_epoch)
        share = len(y) / n_global
        loss, correct = 0.0, 0
        if len(y):
            loss, dlogits, correct = softmax_cross_entropy(self.model.forward(x), y)
            if math.isfinite(loss):
                self.model.backward(dlogits)
        else:                   # an empty slice of a short last batch: no gradient from here
            for p in self.params:
                p.grad = None
        seconds, rc_now = 0.0, []
        for name, layer in self.layers:
            seconds += layer.engine_seconds
            layer.engine_seconds = 0.0
            used = len(y) and layer.reuse is not None and layer.last_rc is not None
            rc_now += [layer.last_rc if used else 0.0, 1.0 if used else 0.0]
        rungs = self.schedule.fingerprint()          # rung labels and hash planes
        table = comm.allgather([loss * share, correct, seconds, bool(stop_requested), rungs] + rc_now)
        if not (table[:, 4] == table[0, 4]).all():
            raise RuntimeError(f"the ranks disagree on the reuse rungs at global step {self.global_step}: "
                               "data-parallel training lost sync")
        sums = table.sum(axis=0)
        loss, correct, seconds, self.stop_any = float(sums[0]), int(sums[1]), sums[2] / comm.size, sums[3] > 0
        if not math.isfinite(loss):
            raise FloatingPointError(f"training loss is {loss} at step {self.global_step}: "
                                     f"lower --lr (now {self.optimizer.lr})")
        sync_gradients(comm, self.params, share, self.float_buffers)
        self.optimizer.step()
        counters["loss_sum"] += loss * n_global
        counters["correct"] += correct
        counters["count"] += n_global
        for j, (name, layer) in enumerate(self.layers):
            rc_total, rc_count = sums[5 + 2 * j], sums[6 + 2 * j]
            if rc_count:
                counters["rc_sum"][name] = counters["rc_sum"].get(name, 0.0) + float(rc_total / rc_count)
                counters["rc_n"][name] = counters["rc_n"].get(name, 0) + 1
        counters["conv_time"] += float(seconds)
        self.conv_time_total += float(seconds)
        self.global_step += 1
        self._events(self.schedule.after_step(self.global_step - 1, loss, self.model, self.probes))
        self._log_step(loss, correct / n_global if n_global else None, time.perf_counter() - t_step,
                       {name: (float(sums[5 + 2 * j] / sums[6 + 2 * j]) if sums[6 + 2 * j] else None)
                        for j, (name, _) in enumerate(self.layers)})
        return loss

    def _log_step(self, loss, acc, seconds, rc):
        """steps.csv (and TensorBoard) row of the step just done (rank 0 only)."""
        if not self.comm.is_root:
            return
        wall = self._wall()
        row = {"step": self.global_step, "epoch": round(self.global_step / self.steps_per_epoch, 6),
               "train_time": self._train_time(wall), "wall_time": wall, "step_time": seconds, "loss": loss,
               "acc": acc, "lr": self.optimizer.lr, "rc": rc}
        self.metrics.write_step(row)
        if self.tb is not None:
            self.tb.write_step(row)


def _isatty(stream):
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):          # replaced or closed streams
        return False


def _has_width(stream):
    """A terminal that reports columns (a fresh pseudo-terminal says 0: tqdm would draw no bar)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns > 0
    except (AttributeError, ValueError, OSError):
        return False


class _NoMetrics:
    """Ranks other than 0 write no logs."""

    def write(self, record):
        pass

    def write_step(self, row):
        pass


FIXED_RUNG_SETTINGS = ("L", "H", "hash", "width_scale")


def run_config_record(cfg, schedule, eval_every_steps=None):
    """config.json: the settings (readable back with --config) and, under "resolved", what the
    schedule runs: per reusing layer its rungs, which settings the run did not use, and the
    steps between periodic test evaluations (eval_every=None resolved)."""
    record = cfg.to_dict()
    fixed_rung_used = cfg.reuse == "fixed" and cfg.rungs is None
    record[RESOLVED_KEY] = dict(schedule.resolved(),
                                unused_settings=[] if fixed_rung_used else list(FIXED_RUNG_SETTINGS))
    if eval_every_steps is not None:
        record[RESOLVED_KEY]["eval_every_steps"] = eval_every_steps
    return record


def _fmt_rc(rc):
    parts = [f"{k} {v:.3f}" for k, v in rc.items() if v is not None]
    return ", ".join(parts) if parts else "none (exact)"
