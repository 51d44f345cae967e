"""Real Fashion-MNIST workloads for the pytest-benchmark suite.

The single source is `pyadr.cli.bench_workloads` (also used by `python -m pyadr bench`), so that the
benchmarks and the user-facing table measure the same layers:

  layer("conv2") -> (x, w, b, stride, padding): CifarNet conv2, 64->64 5x5 pad 2, 14x14, batch 128,
                   input maxpool3s2(relu(conv1(Fashion-MNIST images))): CifarNet's 3x3/2 pool
  layer("conv1") -> 1->64 5x5 pad 2 on the standardised 28x28 images, batch 128
  layer("vgg")   -> 64->128 3x3 pad 1, 32x32, batch 64, input relu(conv3x3(images padded to 32x32))

PYADR_BENCH_BATCH (env) overrides the batch of every layer, e.g. for a quicker smoke run.
"""
from __future__ import annotations

import functools
import os

import numpy as np

from pyadr.cli.bench_workloads import (DEFAULT_BATCH, LAYER_DOC, LAYERS, REUSE_POINTS, data_available,
                                       data_dir, fashion_images, he_weights, import_torch, maxpool3s2,
                                       rel_err, reuse_config, synthetic_layer)
from pyadr.cli.bench_workloads import layer as _layer

__all__ = ["LAYERS", "LAYER_DOC", "DEFAULT_BATCH", "REUSE_POINTS", "available", "data_dir", "fashion_images",
           "he_weights", "import_torch", "rel_err", "reuse_config", "synthetic_layer", "layer", "fc_layer",
           "reuse_points", "bench_batch"]


def available() -> bool:
    return data_available()


def bench_batch(name):
    env = os.environ.get("PYADR_BENCH_BATCH")
    return int(env) if env else DEFAULT_BATCH.get(name, 128)


def layer(name: str, batch=None):
    """(x, w, b, stride, padding) of a named real workload (see the module docstring)."""
    return _layer(name, bench_batch(name) if batch is None else batch)


@functools.lru_cache(maxsize=None)
def fc_layer(batch=None):
    """CifarNet-style fully connected layer on real features: x (B, 3136) = flatten(maxpool3s2(relu(conv2))),
    w (384, 3136) He-normal. Returns (x, w, b)."""
    import pyadr
    x2, w2, b2, s, p = layer("conv2", batch)
    a = np.maximum(pyadr.conv2d_forward(x2, w2, b2, s, p)[0], 0)
    f = np.ascontiguousarray(maxpool3s2(a).reshape(a.shape[0], -1))
    rng = np.random.default_rng(5)
    w = (rng.standard_normal((384, f.shape[1])) * np.sqrt(2.0 / f.shape[1])).astype(np.float32)
    b = (rng.standard_normal(384) * 0.01).astype(np.float32)
    for arr in (f, w, b):
        arr.setflags(write=False)
    return f, w, b


def reuse_points():
    """[(id, label, kwargs)] of the benchmarked reuse configurations (pytest ids without spaces)."""
    out = []
    for label, kw in REUSE_POINTS:
        pid = label.split(" (")[0].replace(" ", "_").replace("=", "")
        out.append((pid, label, dict(kw)))
    return out
