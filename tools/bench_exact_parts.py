"""Exact convolution, part by part: forward, dW only, dX only, and dW+dX, for a bench layer.

Each part is timed with the others interleaved (one call of each per round), so that a machine
shared with other jobs slows them alike; the MINIMUM over rounds is printed (the best estimate of
the undisturbed time), with the median beside it. No assertion: a measurement, not a test.

Usage: python tools/bench_exact_parts.py [--layers conv2,vgg] [--rounds 20] [--threads 2] [--f64] [--torch]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import pyadr
from pyadr import _native
from pyadr.cli.bench_workloads import layer


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", default="conv2,vgg")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--f64", action="store_true")
    ap.add_argument("--torch", action="store_true", help="also time torch F.conv2d fwd and its dW+dX (oneDNN)")
    a = ap.parse_args(argv)
    pyadr.set_num_threads(a.threads)
    dt = np.float64 if a.f64 else np.float32
    code = 1 if a.f64 else 0
    print(f"simd {_native.info()['simd']}; threads {a.threads}; {np.dtype(dt).name}; min (median) of {a.rounds} rounds")
    for name in a.layers.split(","):
        x, w, b, stride, padding = layer(name)
        x, w, b = x.astype(dt), w.astype(dt), b.astype(dt)
        B, C, H, W = x.shape
        M, _, kh, kw = w.shape
        g = (B, C, H, W, M, kh, kw, stride, stride, padding, padding, 1, 1)
        OH, OW = _native.output_shape(g)
        y = np.empty((B, M, OH, OW), dt)
        dy = np.random.default_rng(0).standard_normal(y.shape).astype(dt)
        dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty_like(b)
        flops = 2.0 * B * OH * OW * M * C * kh * kw
        parts = {
            "fwd": lambda: _native.conv_forward_exact(code, g, x, w, b, y),
            "dW": lambda: _native.conv_backward_exact(code, g, x, w, dy, None, dw, None),
            "dX": lambda: _native.conv_backward_exact(code, g, x, w, dy, dx, None, None),
            "dW+dX": lambda: _native.conv_backward_exact(code, g, x, w, dy, dx, dw, db),
        }
        if a.torch:
            import torch
            import torch.nn.functional as F
            torch.set_num_threads(a.threads)
            tx, tw, tb = (torch.from_numpy(np.array(v)).requires_grad_(True) for v in (x, w, b))
            tdy = torch.from_numpy(dy)

            def torch_fwd():
                with torch.no_grad():
                    F.conv2d(tx, tw, tb, stride=stride, padding=padding)

            def torch_bwd():  # the forward is not timed: its graph is built outside the clock
                torch.autograd.grad(state["y"], (tx, tw, tb), tdy)

            state = {}

            def torch_graph():
                state["y"] = F.conv2d(tx, tw, tb, stride=stride, padding=padding)

            parts["torch fwd"] = torch_fwd
            parts["torch dW+dX"] = (torch_graph, torch_bwd)
        for f in parts.values():
            if isinstance(f, tuple):
                f[0]()
                f[1]()
            else:
                f()
        times = {p: [] for p in parts}
        for _ in range(a.rounds):
            for p, f in parts.items():
                if isinstance(f, tuple):  # (untimed setup, timed call)
                    f[0]()
                    f = f[1]
                t0 = time.perf_counter()
                f()
                times[p].append(time.perf_counter() - t0)
        print(f"{name}: x {x.shape} w {w.shape}")
        for p, t in times.items():
            mn, md = min(t), float(np.median(t))
            fl = flops * (2 if p.endswith("dW+dX") else 1)
            print(f"  {p:<6} {mn * 1e3:8.2f} ms ({md * 1e3:7.2f})  {fl / mn / 1e9:6.1f} GFLOP/s")


if __name__ == "__main__":
    main()
