"""Command line: `pyadr train | compare | plot | evaluate` (entry point: main(argv) -> exit code).

Flag values override --config FILE, which overrides the defaults; --resume starts from the
checkpoint's own config (flags still override, e.g. --epochs to train longer).
`mpiexec -n N pyadr train|compare ...` trains data-parallel (pyadr.train.distributed).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from .._config import PRODUCTS
from ..train.config import DEVICES, LR_SCHEDULES, resolve_config
from ..train.data import DATASET_NAMES
from ..train.data_planes import KINDS as PLANE_KINDS
from ..train.models import MODEL_NAMES
from ..train.reuse_schedule import STRATEGIES

S = argparse.SUPPRESS


def _layer_list(text):
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated layer names such as conv2,conv3")
    return names


def _product_list(text):
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names or any(n not in PRODUCTS for n in names):
        raise argparse.ArgumentTypeError(f"expected comma-separated products among forward, dw, dx, got {text!r}")
    return names


def _budget_pair(text):
    try:
        start, end = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected START,END error budgets such as 0.3,0.1, got {text!r}") from None
    if not 0 < end <= start:
        raise argparse.ArgumentTypeError(f"expected 0 < END <= START, got {text!r}")
    return [start, end]


def _int_or_all(text):
    """--eval-subset: a positive int, or 'all' (None: every test image)."""
    if text.strip().lower() == "all":
        return None
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive int or 'all', got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int or 'all', got {n}")
    return n


def _add_train_flags(p):
    g = p.add_argument_group("model and data")
    g.add_argument("--model", choices=MODEL_NAMES, default=S, help="network (default cifarnet)")
    g.add_argument("--width", type=float, default=S, help="channel/FC width multiplier (default 1)")
    g.add_argument("--dataset", choices=DATASET_NAMES, default=S, help="default fashion-mnist")
    g.add_argument("--data-dir", dest="data_dir", default=S,
                   help="dataset folder (fashion-mnist default: /usr/share/datasets/fashion-mnist)")
    g.add_argument("--limit-train", dest="limit_train", type=int, default=S, help="use the first N training images")
    g.add_argument("--augment", dest="augment", action="store_true", default=S, help="random crop and flip")
    g.add_argument("--no-augment", dest="augment", action="store_false", default=S)
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=float, default=S, help="default 2 (fractions allowed)")
    g.add_argument("--batch-size", dest="batch_size", type=int, default=S, help="default 128")
    g.add_argument("--lr", type=float, default=S, help="default 0.05")
    g.add_argument("--lr-schedule", dest="lr_schedule", choices=LR_SCHEDULES, default=S,
                   help="default cosine (to 0 over the run)")
    g.add_argument("--momentum", type=float, default=S, help="default 0.9")
    g.add_argument("--nesterov", action="store_true", default=S)
    g.add_argument("--weight-decay", dest="weight_decay", type=float, default=S, help="default 0")
    g.add_argument("--seed", type=int, default=S, help="default 0")
    g.add_argument("--threads", type=int, default=S, help="engine threads (pyadr.set_num_threads)")
    g.add_argument("--device", choices=DEVICES, default=S, help="default cpu")
    g = p.add_argument_group("deep reuse")
    g.add_argument("--reuse", choices=STRATEGIES, default=S, help="schedule strategy (default exact)")
    g.add_argument("--L", type=int, default=S, help="sub-vector length for --reuse fixed (default 25)")
    g.add_argument("--H", type=int, default=S, help="hash functions for --reuse fixed (default 20)")
    g.add_argument("--hash", choices=("sign", "l2"), default=S, help="hash family (default sign)")
    g.add_argument("--width-scale", dest="width_scale", type=float, default=S, help="l2 bucket width / sigma")
    g.add_argument("--reuse-layers", dest="reuse_layers", type=_layer_list, default=S,
                   help="comma-separated layers (default: every conv but the first, if the cost model predicts a gain)")
    g.add_argument("--reuse-exact", dest="reuse_exact", type=_product_list, default=S,
                   help="products every reusing layer computes exactly, comma-separated among forward, dw, "
                        "dx (ReuseConfig.exact); e.g. dx: reused forward and dW, exact input gradient")
    g.add_argument("--exact-tail", dest="exact_tail", type=float, default=S,
                   help="fraction of steps run exact at the end (adaptive default 0.25)")
    g.add_argument("--plateau-window", dest="plateau_window", type=int, default=S)
    g.add_argument("--plateau-eps", dest="plateau_eps", type=float, default=S)
    g.add_argument("--gap-delta", dest="gap_delta", type=float, default=S)
    g.add_argument("--check-every", dest="check_every", type=int, default=S)
    g.add_argument("--min-speedup", dest="min_speedup", type=float, default=S)
    g.add_argument("--tune-budget", dest="tune_budget", type=_budget_pair, default=S,
                   help="--reuse tuned: per-layer error budget START,END (default 0.3,0.1)")
    g.add_argument("--retune-every", dest="retune_every", type=int, default=S,
                   help="--reuse tuned: steps between re-tunings (default 200, 0: never)")
    g.add_argument("--tune-repeats", dest="tune_repeats", type=int, default=S,
                   help="--reuse tuned: timed runs per candidate, min taken (default 2)")
    g.add_argument("--planes", dest="planes", choices=PLANE_KINDS, default=S,
                   help="hash planes of every reusing layer: random (seeded; default), pca (the top principal "
                        "directions of the layer's sub-vectors on a probe batch), pca-centred (of their "
                        "covariance); see docs/tuning.md, 'Data-aware planes'")
    g.add_argument("--planes-every", dest="planes_every", type=int, default=S,
                   help="data-aware planes: refit them every N steps on the current weights (default 0: "
                        "fit once, when a layer first needs them)")
    g.add_argument("--min-dwell", dest="min_dwell", type=float, default=S,
                   help="adaptive: least fraction of the steps a layer stays on a rung before a loss "
                        "plateau advances it (default 0.25; loss-gap checks may advance sooner)")
    g = p.add_argument_group("run")
    g.add_argument("--out", default=S, help="run directory (default runs/MODEL-DATASET-REUSE-sSEED)")
    g.add_argument("--config", dest="config_file", default=None,
                   help="settings file: JSON, or YAML (.yaml/.yml, needs PyYAML); keys as in config.json")
    g.add_argument("--print-config", dest="print_config", action="store_true", default=False,
                   help="print the resolved settings (defaults < --config < flags) as JSON and exit; "
                        "writes nothing")
    g.add_argument("--eval-every-steps", "--eval-every", dest="eval_every", type=int, default=S,
                   help="test accuracy every N steps, for the curves (default: about 10 points per run; "
                        "0: at epoch ends only); evaluation time is kept out of train_time")
    g.add_argument("--eval-subset", dest="eval_subset", type=_int_or_all, default=S,
                   help="periodic evaluations use the first N test images (default 2000; 'all': every "
                        "image); the evaluation at each epoch's end always uses the whole test set")
    g.add_argument("--tensorboard", dest="tensorboard", action="store_true", default=S,
                   help="also write TensorBoard event files to OUT/tensorboard (pip install pyadr[tb])")
    g.add_argument("--eval-reuse", dest="eval_reuse", action="store_true", default=S,
                   help="evaluate with the current reuse settings instead of exact convolution")
    g.add_argument("--eval-batch-size", dest="eval_batch_size", type=int, default=S)
    g.add_argument("--progress", dest="progress", action="store_true", default=S)
    g.add_argument("--no-progress", dest="progress", action="store_false", default=S)
    g.add_argument("--stop-after-steps", dest="stop_after_steps", type=int, default=S,
                   help="stop and checkpoint at this global step, as Ctrl-C would")
    g.add_argument("--distributed", choices=("auto", "none", "mpi"), default="auto",
                   help="data-parallel over MPI: auto (when started by mpiexec/srun with > 1 rank), "
                        "none, or mpi (needs mpi4py: pip install pyadr[mpi])")


def build_parser():
    parser = argparse.ArgumentParser(prog="pyadr", description="Adaptive Deep Reuse CNN trainer")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train a model")
    _add_train_flags(p)
    p.add_argument("--resume", default=S, help="checkpoint (last.npz) to continue from")
    p = sub.add_parser("compare", help="train exactly and with reuse, tabulate and plot")
    _add_train_flags(p)
    p.add_argument("--target-drop", dest="target_drop", type=float, default=0.3,
                   help="target = exact final accuracy minus this many points (default 0.3)")
    p = sub.add_parser("summary", help="time to a target accuracy over several runs (e.g. seeds)")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--target", type=float, default=None,
                   help="target test accuracy in [0, 1] (default: mean final accuracy of the exact "
                        "runs given, minus --target-drop)")
    p.add_argument("--target-drop", dest="target_drop", type=float, default=0.3,
                   help="points below the exact runs' mean final accuracy (default 0.3)")
    p = sub.add_parser("plot", help="plot a run directory")
    p.add_argument("run_dir")
    p.add_argument("--output", default=None, help="PNG path (default RUN_DIR/run.png)")
    p = sub.add_parser("evaluate", help="evaluate a checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("--data-dir", dest="data_dir", default=None)
    p.add_argument("--reuse", choices=("exact", "checkpoint", "fixed"), default="exact",
                   help="exact convolution, the checkpoint's rungs, or one fixed rung (--L --H --hash)")
    p.add_argument("--L", type=int, default=25)
    p.add_argument("--H", type=int, default=20)
    p.add_argument("--hash", choices=("sign", "l2"), default="sign")
    p.add_argument("--reuse-layers", dest="reuse_layers", type=_layer_list, default=None)
    p.add_argument("--batch-size", dest="batch_size", type=int, default=256)
    p.add_argument("--device", choices=DEVICES, default="cpu")
    return parser


def _train_config(args, command):
    """Defaults < checkpoint config (train --resume) < --config FILE < flags given."""
    from ..train.config import load_config_file
    given = {k: v for k, v in vars(args).items()
             if k not in ("command", "config_file", "target_drop", "distributed", "print_config")}
    merged = {}
    if command == "train" and "resume" in given:
        from ..train.checkpoint import load_checkpoint
        merged = dict(load_checkpoint(given["resume"])[0]["config"], stop_after_steps=None)
        merged["out"] = merged.get("out") or os.path.dirname(os.path.abspath(given["resume"]))
    if args.config_file:
        merged.update(load_config_file(args.config_file))
    if "tune_budget" in given:
        given["tune_budget_start"], given["tune_budget_end"] = given.pop("tune_budget")
    merged.update(given)
    return resolve_config(merged)


def _cmd_train(args):
    from ..train.distributed import connect
    from ..train.trainer import Trainer
    cfg = _train_config(args, "train")
    if args.print_config:
        return _print_config(cfg)
    comm = connect(args.distributed)
    summary = Trainer(cfg, comm=comm).run()
    return 130 if summary["interrupted"] and not cfg.stop_after_steps else 0


def _cmd_compare(args):
    from ..train.compare import run_compare
    from ..train.distributed import connect
    cfg = _train_config(args, "compare")
    if "reuse" not in vars(args) and cfg.reuse == "exact":
        cfg.reuse = "adaptive"
    out = cfg.out or os.path.join("runs", f"compare-{cfg.model}-{cfg.dataset}-s{cfg.seed}")
    if args.print_config:
        return _print_config(dataclasses.replace(cfg, out=out))
    comm = connect(args.distributed)
    run_compare(cfg, out, target_drop=args.target_drop / 100.0, comm=comm)
    return 0


def _print_config(cfg):
    """--print-config: the settings as a run would use them, readable back with --config."""
    print(json.dumps(cfg.to_dict(), indent=2))
    return 0


def _cmd_summary(args):
    from ..train.compare import format_runs, summarize_runs
    if args.target is not None and not 0.0 < args.target <= 1.0:
        raise ValueError(f"--target must be a test accuracy in (0, 1], got {args.target}")
    rows, target = summarize_runs(args.run_dirs, args.target, args.target_drop / 100.0)
    print(format_runs(rows, target))
    return 0


def _cmd_plot(args):
    from ..train.plots import plot_run
    for path in plot_run(args.run_dir, args.output):
        print(f"wrote {path}")
    return 0


def _cmd_evaluate(args):
    from ..nn.backend import device_module
    from ..train.checkpoint import load_model
    from ..train.data import load_dataset
    from ..train.evaluation import evaluate
    from ..train.loader import BatchLoader
    from ..train.models import engine_layers
    from ..train.layer_tuner import schedule_class
    from ..train.reuse_schedule import Rung

    model, meta = load_model(args.checkpoint)
    cfg = meta["config"]
    xp = device_module(args.device)
    data = load_dataset(cfg["dataset"], args.data_dir or cfg.get("data_dir"))
    model.to(xp)
    layers = dict(engine_layers(model))
    if args.reuse == "checkpoint":
        state = meta["schedule"]
        cls, kind = schedule_class(state["strategy"]), (state.get("planes") or {}).get("kind", "random")
        sched = cls(planes=kind) if state["strategy"] == "tuned" else cls(state["strategy"], planes=kind)
        sched.load_state_dict(state, model)
    elif args.reuse == "fixed":
        names = args.reuse_layers or [n for n in layers if n.startswith("conv")][1:]
        for pos, name in enumerate(names):
            if name not in layers:
                raise ValueError(f"reuse layer {name!r} is not in the model ({', '.join(layers)})")
            layers[name].reuse = Rung(args.L, args.H, args.hash).config(layers[name].K, seed=pos)
    loader = BatchLoader(data.test_images, data.test_labels, args.batch_size, data.mean, data.std,
                         shuffle=False, xp=xp)
    loss, acc, rc = evaluate(model, loader, use_reuse=args.reuse != "exact")
    print(f"{args.checkpoint}: test loss {loss:.4f}, test accuracy {100 * acc:.2f} % "
          f"({args.reuse} convolution)")
    used = {k: round(v, 4) for k, v in rc.items() if v is not None}
    if used:
        print("mean rc: " + ", ".join(f"{k} {v}" for k, v in used.items()))
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:          # argparse already printed the message
        return int(exc.code or 0)
    commands = {"train": _cmd_train, "compare": _cmd_compare, "summary": _cmd_summary, "plot": _cmd_plot,
                "evaluate": _cmd_evaluate}
    try:
        return commands[args.command](args)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as exc:
        print(f"pyadr {args.command}: error: {exc}", file=sys.stderr)
        code = 2 if isinstance(exc, (ValueError, TypeError)) else 1
        _abort_other_ranks(f"{type(exc).__name__}: {exc}", code)
        return code
    except KeyboardInterrupt:
        print(f"pyadr {args.command}: aborted", file=sys.stderr)
        _abort_other_ranks("interrupted", 130)
        return 130


def _abort_other_ranks(message, code):
    """Under MPI with > 1 rank, an error here must end the whole job, not leave it waiting."""
    from ..train.distributed import abort_on_error
    abort_on_error(message, code)


if __name__ == "__main__":
    sys.exit(main())
