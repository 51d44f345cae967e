"""Random against data-aware (principal-direction) hash planes on one layer of a trained checkpoint:
rc and the relative errors of y, dW and dX at several H (and l2 widths), and the time the planes
take against a training step.

    python bench/bench_planes.py runs/cifarnet-exact/last.npz --layer conv2 --L 64

The planes are fitted on one training batch (the fit batch) and the errors measured on another
(the test batch), as in training, where planes fitted on the probe batch serve the next steps.
"pca" = uncentred (the second-moment matrix's eigenvectors), "pca-c" = centred (the covariance's).
For l2 the width is width_scale x the RMS of the projections for every kind of planes
(PlaneFit.width_factor; for random planes that is the engine's automatic width).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

import pyadr
from pyadr import planes as pp
from pyadr.train.checkpoint import load_model
from pyadr.train.data import load_dataset
from pyadr.train.layer_tuner import _rel, capture_layer_io, layer_op
from pyadr.train.loader import BatchLoader
from pyadr.train.models import engine_layers
from pyadr.nn.loss import softmax_cross_entropy


def _batches(cfg, n, batch_size):
    data = load_dataset(cfg["dataset"], cfg.get("data_dir"))
    idx = np.random.default_rng(0).permutation(len(data.train_images))[: n * batch_size]
    loader = BatchLoader(data.train_images[idx], data.train_labels[idx], batch_size, data.mean, data.std,
                         shuffle=False, prefetch=0)
    return [(x, y) for _, x, y in loader.epoch(0)]


def fit_kwargs(layer):
    return dict(kernel_size=layer.kernel_size, stride=layer.stride, padding=layer.padding,
                dilation=layer.dilation, order="hwc")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--layer", default="conv2")
    p.add_argument("--L", type=int, default=64)
    p.add_argument("--sign-H", default="8,12,16,20")
    p.add_argument("--l2-H", default="4,8,12")
    p.add_argument("--widths", default="0.5,1,2,4", help="l2 width scales")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--rows", type=int, default=pp.DEFAULT_ROWS)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    model, meta = load_model(args.checkpoint)
    fit_batch, test_batch = _batches(meta["config"], 2, args.batch_size)
    layers = dict(engine_layers(model))
    layer = layers[args.layer]
    x_fit = capture_layer_io(model, {args.layer: layer}, fit_batch)[args.layer][0]
    x, dy = capture_layer_io(model, {args.layer: layer}, test_batch)[args.layer]
    fwd, bwd = layer_op(layer)
    y0, ctx0 = fwd(x, None)
    dx0, dw0 = bwd(dy, ctx0)
    L = args.L

    fits, fit_ms = {}, {}
    for H in sorted({int(h) for h in (args.sign_H + "," + args.l2_H).split(",")}):
        for kind, centred in (("pca", False), ("pca-c", True)):
            t0 = time.perf_counter()
            fits[kind, H] = pp.principal_planes(x_fit, L, H, centred=centred, rows=args.rows, seed=0, fit=True,
                                                **fit_kwargs(layer))
            fit_ms[kind, H] = 1e3 * (time.perf_counter() - t0)
    # a training step on the same batch, for scale (exact everywhere)
    t0 = time.perf_counter()
    _, dl, _ = softmax_cross_entropy(model.forward(test_batch[0]), test_batch[1])
    model.backward(dl)
    step_ms = 1e3 * (time.perf_counter() - t0)

    def run(kind, hash_, H, ws):
        if kind == "random":
            cfg = pyadr.ReuseConfig(L=L, H=H, hash=hash_, width_scale=ws, seed=1)
        else:
            fit = fits[kind, H]
            cfg = pyadr.ReuseConfig(planes=fit.planes, hash=hash_, seed=1,
                                    width_scale=ws * (fit.width_factor if hash_ == "l2" else 1.0))
        y, ctx = fwd(x, cfg)
        dx, dw = bwd(dy, ctx)
        return {"kind": kind, "hash": hash_, "L": L, "H": H, "width_scale": ws if hash_ == "l2" else None,
                "rc": float(ctx.stats.rc), "err_y": _rel(y, y0), "err_dw": _rel(dw, dw0), "err_dx": _rel(dx, dx0)}

    rows = []
    for H in [int(h) for h in args.sign_H.split(",")]:
        for kind in ("random", "pca", "pca-c"):
            rows.append(run(kind, "sign", H, 1.0))
    for H in [int(h) for h in args.l2_H.split(",")]:
        for ws in [float(w) for w in args.widths.split(",")]:
            for kind in ("random", "pca", "pca-c"):
                rows.append(run(kind, "l2", H, ws))
    print(f"{args.layer}: K {layer.K}, x {tuple(x.shape)}, planes fitted on another batch of {args.batch_size}")
    print(f"{'hash':4s} {'H':>3s} {'w':>4s} {'planes':7s} {'rc':>6s} {'err y':>6s} {'err dW':>6s} {'err dX':>6s}")
    for r in rows:
        w = "" if r["width_scale"] is None else f"{r['width_scale']:g}"
        print(f"{r['hash']:4s} {r['H']:3d} {w:>4s} {r['kind']:7s} {r['rc']:6.3f} {r['err_y']:6.3f} "
              f"{r['err_dw']:6.3f} {r['err_dx']:6.3f}")
    print("planes fit (ms, rows %d): " % args.rows
          + ", ".join(f"{k} H{h} {v:.1f}" for (k, h), v in sorted(fit_ms.items()))
          + f"; an exact training step on the batch: {step_ms:.0f} ms")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "fit_ms": {f"{k} H{h}": v for (k, h), v in fit_ms.items()},
                       "step_ms": step_ms}, f, indent=1)


if __name__ == "__main__":
    main()
