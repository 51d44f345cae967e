"""Where a training step's time goes: `pyadr profile` (also `python -m pyadr profile`).

Times every layer's forward and backward by kind (conv, pooling, LRN, linear, ReLU, ...), the
loss, the optimizer step and building the batch (data), over a few training steps of a real model
on real data, for exact training and for deep reuse (one fixed rung on the chosen layers, the
default: every convolution but the first, as the trainer's schedule does). Medians of the
per-step sums are printed side by side, with each part's share of the step.

    pyadr profile --model cifarnet --dataset fashion-mnist --steps 20 --threads 2
    pyadr profile --L 64 --H 12 --hash l2          # the reuse column's rung
    pyadr profile --checkpoint runs/ad/last.npz    # a trained model: its rc is what training sees

The remaining ratio rc depends on the weights: conv1 of a trained CifarNet gives conv2 more
varied inputs than a freshly initialised one, so reuse groups less there and a step costs more.
`--checkpoint` times the checkpoint's model and weights (both columns), as training sees them.

When PyTorch is installed (never a dependency) the same model with the same weights
(`torch_twin`) is timed on the same batches and threads, for a side-by-side step time.

Then a per-layer table of the exact column (`--no-layers` skips it): every layer's forward and
backward (best of the timed steps), PyTorch's same layer (the twin run one layer at a time, same
batches and threads), and for each non-convolution part the bytes it must move, its bound (bytes /
the copy bandwidth measured in the same run at the layer's working-set size) and time / bound;
convolutions and linear layers also show GFLOP/s. Per-part sums follow (pyadr/train/layer_profile.py).
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from ..train.profile import CATEGORIES, profile_steps, torch_step_times


def _parser():
    p = argparse.ArgumentParser(prog="pyadr profile", description=__doc__.split("\n")[0])
    p.add_argument("--model", default="cifarnet")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=20, help="timed steps per column (default 20)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--L", type=int, default=64, help="reuse column: sub-vector length (default 64)")
    p.add_argument("--H", type=int, default=12, help="reuse column: hashes (default 12)")
    p.add_argument("--hash", choices=("sign", "l2"), default="l2")
    p.add_argument("--reuse-layers", default=None,
                   help="comma list of layers for the reuse column (default: every conv but the first)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", default=None,
                   help="time this checkpoint's model and weights (default: a new model, --model, --seed)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch step (timed when torch is installed)")
    p.add_argument("--no-layers", action="store_true", help="skip the per-layer table")
    return p


def _layer_table(timer, warmup, opt_seconds, params, torch_res, threads, out):
    """The per-layer table of the exact column (see the module docstring)."""
    from ..train.layer_profile import CopyProbe, fused, gemm_flops, probe_size, row_bytes, row_largest
    from ..train.profile import _category
    rows = [r for r in timer.rows if len(r["fwd"]) > warmup]
    param_bytes = sum(p.data.nbytes for p in params)
    probe = CopyProbe([probe_size(row_largest(r)) for r in rows] + [probe_size(max(p.data.nbytes for p in params))],
                      threads)
    for _ in range(5):
        probe.sample()
    layers, opt_torch = torch_res if torch_res is not None else (None, None)
    twin = "torch = the PyTorch twin's layer run on its own; " if layers is not None else ""
    print(f"\nper layer, exact column: best of the timed steps (ms); {twin}"
          f"bound = bytes / copy bandwidth ({', '.join(f'{n / 1e6:.1f} MB {b / 1e9:.1f} GB/s' for n, b in probe.best.items())})",
          file=out)
    print(f"{'#':>3s} {'layer':18s} {'output':16s} {'fwd':>7s} {'bwd':>7s} {'torch f':>8s} {'torch b':>8s} "
          f"{'MB':>7s} {'bound':>7s} {'ratio':>6s} {'GF/s':>6s}", file=out)
    parts = {}
    for i, r in enumerate(timer.rows):
        if r not in rows:
            continue
        f, b = min(r["fwd"][warmup:]), min(r["bwd"][warmup:] or [0.0])
        tf = tb = None
        if layers is not None:
            tf, tb = min(layers[i][0]), min(layers[i][1])
        nb = row_bytes(r)
        bound = probe.bound(sum(nb), row_largest(r)) if nb is not None else None
        fl = gemm_flops(r["mod"], r["x_shape"], r["y_shape"])
        gfs = f"{3 * fl / (f + b) / 1e9:6.1f}" if fl and f + b > 0 else f"{'':6s}"
        cells = (f"{1e3 * tf:8.2f} {1e3 * tb:8.2f}" if tf is not None else f"{'-':>8s} {'-':>8s}")
        bcells = (f"{sum(nb) / 1e6:7.1f} {1e3 * bound:7.2f} {(f + b) / bound:6.1f}" if bound
                  else f"{'':7s} {'':7s} {'':6s}")
        kind = r["kind"] + (" (fused)" if fused(r) else "")
        print(f"{i:3d} {kind[:18]:18s} {str(r['y_shape'][1:]):16s} {1e3 * f:7.2f} {1e3 * b:7.2f} {cells} "
              f"{bcells} {gfs}", file=out)
        part = parts.setdefault(_category(r["mod"]), [0.0, 0.0, 0.0])
        part[0] += f + b
        part[1] += bound or 0.0
        part[2] += (tf + tb) if tf is not None else 0.0
    if opt_seconds:
        bound = probe.bound(5 * param_bytes, max(p.data.nbytes for p in params))
        t_opt = min(opt_torch) if opt_torch else None
        print(f"{'':3s} {'SGD m=0.9':18s} {'':16s} {1e3 * min(opt_seconds):7.2f} {'':7s} "
              + (f"{1e3 * t_opt:8.2f} {'':8s}" if t_opt is not None else f"{'-':>8s} {'':8s}")
              + f" {5 * param_bytes / 1e6:7.1f} {1e3 * bound:7.2f} {min(opt_seconds) / bound:6.1f}", file=out)
        parts["optimizer"] = [min(opt_seconds), bound, t_opt or 0.0]
    print(f"{'part sums':22s} {'pyadr ms':>10s} {'bound ms':>10s} {'ratio':>6s} {'torch ms':>10s}", file=out)
    non_conv = [0.0, 0.0, 0.0]
    for k, (t, bound, tt) in parts.items():
        ratio = f"{t / bound:6.1f}" if bound else f"{'':6s}"
        print(f"  sum {k:16s} {1e3 * t:10.2f} {1e3 * bound:10.2f} {ratio} "
              + (f"{1e3 * tt:10.2f}" if layers is not None else f"{'-':>10s}"), file=out)
        if k != "conv":
            non_conv = [a + v for a, v in zip(non_conv, (t, bound, tt))]
    print(f"  sum {'non-conv':16s} {1e3 * non_conv[0]:10.2f} {1e3 * non_conv[1]:10.2f} "
          f"{non_conv[0] / non_conv[1] if non_conv[1] else 0:6.1f} "
          + (f"{1e3 * non_conv[2]:10.2f}" if layers is not None else f"{'-':>10s}"), file=out)


def main(argv=None, file=None) -> int:
    out = file or sys.stdout
    a = _parser().parse_args(argv)
    if a.steps < 1 or a.batch_size < 1 or a.threads < 1:
        raise SystemExit("pyadr profile: --steps, --batch-size and --threads must be >= 1")
    import pyadr
    from ..nn import SGD
    from ..train.data import load_dataset
    from ..train.loader import BatchLoader
    from ..train.checkpoint import load_checkpoint, model_from_spec
    from ..train.layer_profile import LayerTimer, torch_layer_times
    from ..train.models import build_model, engine_layers
    from ..train.reuse_schedule import Rung

    pyadr.set_num_threads(a.threads)
    spec, state = None, None
    try:
        if a.checkpoint is not None:
            meta, state, _ = load_checkpoint(a.checkpoint)
            spec = meta["model_spec"]
            a.model, a.dataset = spec["name"], meta["config"]["dataset"]
            a.data_dir = a.data_dir or meta["config"].get("data_dir")
        data = load_dataset(a.dataset, a.data_dir)
    except (FileNotFoundError, ValueError) as exc:
        print(f"pyadr profile: {exc}", file=sys.stderr)
        return 2

    def new_model():
        if spec is None:
            return build_model(a.model, data.image_shape, data.num_classes, 1.0, a.seed)
        return model_from_spec(spec, state)

    loader = BatchLoader(data.train_images, data.train_labels, a.batch_size, data.mean, data.std,
                         seed=a.seed, prefetch=0)
    columns, rc_line, peaks, timer, opt_steps = {}, None, {}, None, []
    for label in ("exact", "reuse"):
        model = new_model()
        layers = dict(engine_layers(model))
        if label == "reuse":
            names = a.reuse_layers.split(",") if a.reuse_layers else [n for n in layers if n.startswith("conv")][1:]
            for pos, name in enumerate(names):
                if name not in layers:
                    print(f"pyadr profile: layer {name!r} is not in the model ({', '.join(layers)})", file=sys.stderr)
                    return 2
                layers[name].reuse = Rung(a.L, a.H, a.hash).config(layers[name].K, seed=pos)
            label = f"reuse {a.hash} L={a.L} H={a.H} on {','.join(names)}"
        opt = SGD(model.parameters(), lr=0.01, momentum=0.9)
        if label == "exact" and not a.no_layers:
            timer, exact_model = LayerTimer(model), model
        rcs, peak = {}, []
        steps = profile_steps(model, loader, opt, a.steps, rcs=rcs, peak=peak)
        if label == "exact":
            opt_steps = [st["optimizer"] for st in steps]
        peaks[label] = peak[0]
        if rcs:
            rc_line = "reuse column's mean rc: " + ", ".join(f"{n} {np.mean(v):.3f}" for n, v in rcs.items())
        columns[label] = {k: float(np.median([s[k] for s in steps])) for k in CATEGORIES}
        columns[label]["step"] = float(np.median([sum(s.values()) for s in steps]))
    weights = f"weights of {a.checkpoint}" if spec is not None else f"new weights (seed {a.seed})"
    print(f"{a.model} on {a.dataset} ({weights}), batch {a.batch_size}, {a.threads} threads; medians over {a.steps} steps "
          f"(ms, share of the step)", file=out)
    labels = list(columns)
    print(f"{'part':14s}" + "".join(f"{l[:38]:>40s}" for l in labels), file=out)
    for k in CATEGORIES + ("step",):
        cells = "".join(f"{1e3 * columns[l][k]:>31.1f} ms {100 * columns[l][k] / columns[l]['step']:4.0f} %"
                        for l in labels)
        print(f"{k:14s}{cells}", file=out)
    if all(v is not None for v in peaks.values()):
        print(f"{'peak memory':14s}" + "".join(f"{peaks[l]:>31.1f} MB{'':7s}" for l in labels)
              + "   (RSS growth during one step, block cache emptied first)", file=out)
    e, r = (columns[l]["step"] for l in labels)
    print(f"reuse step / exact step: {r / e:.2f}", file=out)
    if rc_line:
        print(rc_line, file=out)
    if not a.no_torch:
        times = torch_step_times(new_model(), loader, a.threads, a.steps)
        if times is None:
            print("PyTorch step: torch is not installed (not a dependency; skipped)", file=out)
        else:
            t = float(np.median(times))
            print(f"PyTorch step (same model and weights, NCHW, {a.threads} threads): {1e3 * t:.1f} ms; "
                  f"pyadr exact step / PyTorch step: {e / t:.2f}, reuse step / PyTorch step: {r / t:.2f}", file=out)
    if timer is not None:
        torch_res = None if a.no_torch else torch_layer_times(new_model(), loader, a.threads, a.steps)
        _layer_table(timer, 2, opt_steps, exact_model.parameters(), torch_res, a.threads, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
