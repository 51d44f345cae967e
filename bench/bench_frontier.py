"""The tuner's frontier per layer of a trained checkpoint: rc, error (y, dW, dX) and measured speed
of every candidate against exact, on one probe batch of the training set.

    python bench/bench_frontier.py runs/vgg11w05-exact/last.npz --layers conv2,conv3 --repeats 3

Prints one table per layer (sorted by error) and each layer's pick at the error budgets given.
The timings are fwd + bwd of that layer alone with the engine's current threads (min of
--repeats); on a shared machine interleave and repeat runs and compare ratios.
"""
from __future__ import annotations

import argparse
import json
import math

import numpy as np

from pyadr.train.checkpoint import load_model
from pyadr.train.data import load_dataset
from pyadr.train.layer_tuner import capture_layer_io, default_timer, frontier, measure, pick
from pyadr.train.loader import BatchLoader
from pyadr.train.models import engine_layers


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--layers", default=None, help="comma-separated (default: every conv but the first)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--budgets", default="0.3,0.2,0.1")
    p.add_argument("--json", default=None, help="write the measurements here")
    args = p.parse_args(argv)
    model, meta = load_model(args.checkpoint)
    cfg = meta["config"]
    data = load_dataset(cfg["dataset"], cfg.get("data_dir"))
    idx = np.random.default_rng(0).permutation(len(data.train_images))[: args.batch_size]
    loader = BatchLoader(data.train_images[idx], data.train_labels[idx], args.batch_size, data.mean, data.std,
                         shuffle=False, prefetch=0)
    probe = next((x, y) for _, x, y in loader.epoch(0))
    layers = dict(engine_layers(model))
    names = args.layers.split(",") if args.layers else [n for n in layers if n.startswith("conv")][1:]
    io = capture_layer_io(model, {n: layers[n] for n in names}, probe)
    budgets = [float(b) for b in args.budgets.split(",")]
    out = {}
    for name in names:
        layer = layers[name]
        cands = frontier(layer)
        meas = measure(name, layer, cands, *io[name], seed=1, timer=default_timer(args.repeats))
        K = layer.K
        print(f"\n{name}: C {getattr(layer, 'in_channels', '-')}, M {layer.out_channels}, K {K}, "
              f"exact {1e3 * meas[0]['exact_seconds']:.1f} ms")
        print(f"  {'candidate':28s} {'rc':>6s} {'err y':>6s} {'err dW':>6s} {'err dX':>6s} {'error':>6s} "
              f"{'ms':>8s} {'speed':>6s} {'model':>6s}")
        for i in sorted(range(len(cands)), key=lambda i: meas[i]["error"]):
            m = meas[i]
            print(f"  {cands[i].label(K):28s} {m['rc']:6.3f} {m['err_y']:6.3f} {m['err_dw']:6.3f} "
                  f"{m['err_dx']:6.3f} {m['error']:6.3f} {1e3 * m['seconds']:8.1f} {m['speedup']:5.2f}x "
                  f"{m['predicted']:5.2f}x")
        for b in budgets:
            _, best = pick(cands, meas, b, -math.inf)
            what = "none" if best is None else f"{cands[best].label(K)} {meas[best]['speedup']:.2f}x"
            print(f"  budget {b:g}: fastest within budget: {what}")
        out[name] = [dict(m, label=c.label(K)) for c, m in zip(cands, meas)]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
