"""pyadr.jax against pyadr's eager API on CifarNet conv2 (real Fashion-MNIST activations).

  python bench/bench_jax.py [--threads N]

Prints, exact and with reuse: pyadr forward alone, eager forward+backward on one context, and
jax.jit(jax.grad(...)) through pyadr.jax.conv2d, whose backward recomputes the forward (the
reuse context is no JAX value; docs/jax.md). Best of 7 after one warm-up call. Not a pytest
benchmark: it needs jax (pip install pyadr[jax]).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def best_ms(f, n=7):
    f()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return 1e3 * min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--L", type=int, default=25)
    ap.add_argument("--H", type=int, default=10)
    args = ap.parse_args()
    import jax
    import jax.numpy as jnp

    import pyadr
    import pyadr.jax as pj
    from workloads import layer
    if args.threads:
        pyadr.set_num_threads(args.threads)
    x, w, b, stride, padding = layer("conv2")
    g = np.random.default_rng(0).standard_normal(pyadr.conv2d_forward(x, w, b, stride, padding)[0].shape)
    g = g.astype(x.dtype)
    for reuse in (None, pyadr.ReuseConfig(L=args.L, H=args.H)):
        def eager():
            _, ctx = pyadr.conv2d_forward(x, w, b, stride, padding, reuse=reuse)
            pyadr.conv2d_backward(g, ctx)
        loss = lambda x, w, b: jnp.sum(pj.conv2d(x, w, b, stride, padding, reuse=reuse) * g)  # noqa: E731
        grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
        rc = 1.0 if reuse is None else pyadr.conv2d_forward(x, w, b, stride, padding, reuse=reuse)[1].stats.rc
        print(f"{'exact' if reuse is None else f'reuse L={args.L} H={args.H}'} (rc {rc:.3f}): "
              f"forward {best_ms(lambda: pyadr.conv2d_forward(x, w, b, stride, padding, reuse=reuse)):.1f} ms, "
              f"eager forward+backward {best_ms(eager):.1f} ms, "
              f"jax.jit(jax.grad) {best_ms(lambda: jax.block_until_ready(grad(x, w, b))):.1f} ms")


if __name__ == "__main__":
    main()
