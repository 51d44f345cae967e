"""Benchmark workloads on real Fashion-MNIST activations (DESIGN.md/ANCHORS.md shapes).

conv2 input: a batch of 128 real images through conv1 (1->64, 5x5, pad 2, He-initialised),
ReLU and 3x3/2 max-pool (pad 1): (128, 64, 14, 14).
"""
from __future__ import annotations

import functools
import gzip
import os

import numpy as np

FASHION_DIRS = ("/usr/share/datasets/fashion-mnist",)


def fashion_images(n=128, split="train", data_dir=None):
    """First n images as float32 (n, 1, 28, 28), standardised; raises FileNotFoundError with a hint."""
    dirs = (data_dir,) if data_dir else FASHION_DIRS
    prefix = "train" if split == "train" else "t10k"
    for d in dirs:
        path = os.path.join(d, f"{prefix}-images-idx3-ubyte.gz")
        if os.path.exists(path):
            with gzip.open(path, "rb") as f:
                raw = f.read()
            imgs = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28)[:n]
            x = imgs.astype(np.float32) / 255.0
            return (x - 0.2860) / 0.3530
    raise FileNotFoundError(f"Fashion-MNIST not found in {dirs}: install it with "
                            f"'apt-get install dataset-fashion-mnist' or pass a data directory")


def he_weights(rng, shape, dtype=np.float32):
    fan_in = int(np.prod(shape[1:]))
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dtype)


def maxpool3x3s2p1(x):
    B, C, H, W = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    OH, OW = (H + 2 - 3) // 2 + 1, (W + 2 - 3) // 2 + 1
    out = np.full((B, C, OH, OW), -np.inf, dtype=x.dtype)
    for i in range(3):
        for j in range(3):
            np.maximum(out, xp[:, :, i:i + 2 * OH - 1:2, j:j + 2 * OW - 1:2], out=out)
    return out


@functools.lru_cache(maxsize=4)
def conv2_input(batch=128, seed=0):
    """(batch, 64, 14, 14) float32: real images after conv1 + ReLU + max-pool."""
    import pyadr
    rng = np.random.default_rng(seed)
    x = fashion_images(batch)
    w1 = he_weights(rng, (64, 1, 5, 5))
    y1, _ = pyadr.conv2d_forward(x, w1, None, padding=2)
    return np.ascontiguousarray(maxpool3x3s2p1(np.maximum(y1, 0)))


def layer(name, seed=0):
    """(x, w, b, stride, padding) of a named benchmark layer."""
    rng = np.random.default_rng(seed + 1)
    if name == "conv2":
        x = conv2_input()
        return x, he_weights(rng, (64, 64, 5, 5)), np.zeros(64, np.float32), 1, 2
    if name == "conv1":
        return fashion_images(128), he_weights(rng, (64, 1, 5, 5)), np.zeros(64, np.float32), 1, 2
    if name == "vgg":
        # VGG-style 64->128 3x3 layer on 32x32 maps: real images upsampled and lifted to 64 channels.
        x = conv2_input(batch=64)
        x = np.repeat(np.repeat(x, 2, axis=2), 2, axis=3)[:, :, 2:30, 2:30]
        x = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
        return np.ascontiguousarray(x), he_weights(rng, (128, 64, 3, 3)), np.zeros(128, np.float32), 1, 1
    raise ValueError(f"unknown layer {name!r}")
