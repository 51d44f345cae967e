"""Step time (forward + backward) of CifarNet's conv2 on real Fashion-MNIST activations with each
ReuseConfig.exact choice, against full reuse and the exact convolution.

Modes are interleaved (one step of each per round) so that a machine shared with other jobs slows
them alike; medians over rounds and ratios to the exact step are printed. No assertion: a
measurement, not a test.

Usage: python tools/bench_exact_grads.py [--rounds 15] [--threads 2] [--L 64 --H 12 --hash l2]
"""
from __future__ import annotations

import argparse
import platform
import subprocess
import time

import numpy as np

import pyadr
from pyadr.cli.bench_workloads import layer


def cpu_name():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(l.split(":", 1)[1].strip() for l in out.splitlines() if l.startswith("Model name"))
    except Exception:  # noqa: BLE001 - informative only
        return platform.processor() or "unknown"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--L", type=int, default=64)
    ap.add_argument("--H", type=int, default=12)
    ap.add_argument("--hash", default="l2", choices=("sign", "l2"))
    a = ap.parse_args(argv)
    pyadr.set_num_threads(a.threads)
    x, w, b, stride, padding = layer("conv2")
    base = pyadr.ReuseConfig(L=a.L, H=a.H, hash=a.hash, seed=0)
    modes = {"exact": None, "reuse all": base, "exact dx": base.replace(exact="dx"),
             "exact dw,dx": base.replace(exact="dw,dx"), "exact forward": base.replace(exact="forward")}
    dy = np.random.default_rng(0).standard_normal((x.shape[0], w.shape[0], x.shape[2], x.shape[3])).astype(np.float32)

    def step(cfg):
        t0 = time.perf_counter()
        y, ctx = pyadr.conv2d_forward(x, w, b, stride=stride, padding=padding, reuse=cfg)
        t1 = time.perf_counter()
        pyadr.conv2d_backward(dy, ctx)
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1, (ctx.stats.rc if ctx.stats is not None else 1.0)

    for cfg in modes.values():       # warm-up (caches, BLAS, block cache)
        step(cfg)
    times = {m: [] for m in modes}
    rc = {}
    for _ in range(a.rounds):
        for m, cfg in modes.items():
            f, bwd, rc[m] = step(cfg)
            times[m].append((f, bwd))
    print(f"CPU: {cpu_name()}; threads {a.threads}; GEMM builtin (default provider); "
          f"conv2 x {tuple(x.shape)} w {tuple(w.shape)}; {a.hash} L={a.L} H={a.H}; {a.rounds} interleaved rounds")
    ex = np.median([f + bwd for f, bwd in times["exact"]])
    print(f"{'mode':<15}{'rc':>7}{'fwd ms':>9}{'bwd ms':>9}{'step ms':>9}{'exact/step':>12}")
    for m in modes:
        t = np.array(times[m])
        f, bwd, s = np.median(t[:, 0]), np.median(t[:, 1]), np.median(t.sum(axis=1))
        print(f"{m:<15}{rc[m]:>7.3f}{f * 1e3:>9.1f}{bwd * 1e3:>9.1f}{s * 1e3:>9.1f}{ex / s:>11.2f}x")


if __name__ == "__main__":
    main()
