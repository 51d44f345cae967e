"""The workloads and reuse points of `pyadr bench` (and of bench/, the pytest-benchmark suite).

Real Fashion-MNIST layers (`layer("conv2")`, "conv1", "vgg"), a tiny synthetic one for smoke tests,
and the ReuseConfig points the timing table compares. Importing this module has no side effects
(no pyadr native load, no torch import, no data read); the images are read with the trainer's IDX
reader (pyadr.train.data.read_idx), imported on first use.
"""
from __future__ import annotations

import functools
import gzip
import os

import numpy as np

# --------------------------------------------------------------------------------------------
# Workloads (real Fashion-MNIST activations)
# --------------------------------------------------------------------------------------------
DATA_DIR_DEFAULT = "/usr/share/datasets/fashion-mnist"
_IMAGE_FILES = {"train": "train-images-idx3-ubyte.gz", "test": "t10k-images-idx3-ubyte.gz"}
LAYERS = ("conv2", "conv1", "vgg")
DEFAULT_BATCH = {"conv1": 128, "conv2": 128, "vgg": 64}
LAYER_DOC = {
    "conv1": "Fashion-MNIST images, 1->64 5x5 pad 2, 28x28",
    "conv2": "CifarNet conv2 on maxpool3x3/2(relu(conv1(images))), 64->64 5x5 pad 2, 14x14",
    "vgg": "VGG-style 64->128 3x3 pad 1, 32x32, on relu(conv3x3(images padded to 32x32))",
}


def data_dir() -> str:
    return os.environ.get("PYADR_FASHION_MNIST", DATA_DIR_DEFAULT)


def data_available() -> bool:
    """True when the Fashion-MNIST image files are installed (Debian: dataset-fashion-mnist)."""
    return all(os.path.exists(os.path.join(data_dir(), f)) for f in _IMAGE_FILES.values())


@functools.lru_cache(maxsize=None)
def fashion_images(n: int = 128, split: str = "test", offset: int = 0) -> np.ndarray:
    """(n, 1, 28, 28) float32 Fashion-MNIST images, standardised (train mean 0.2860, std 0.3530)."""
    path = os.path.join(data_dir(), _IMAGE_FILES[split])
    if not os.path.exists(path):
        raise FileNotFoundError(f"Fashion-MNIST not found at {path} (Debian package dataset-fashion-mnist, "
                                f"or set PYADR_FASHION_MNIST to its directory)")
    from ..train.data import read_idx
    with gzip.open(path, "rb") as f:
        data = read_idx(f)                                  # (count, rows, cols) uint8
    if data.ndim != 3:
        raise ValueError(f"{path} is not an idx3 image file (shape {data.shape})")
    count = data.shape[0]
    if offset + n > count:
        raise ValueError(f"{path} holds {count} images, asked for {offset}+{n}")
    x = data[offset:offset + n].astype(np.float32) / np.float32(255.0)
    x = (x - np.float32(0.2860)) / np.float32(0.3530)
    return np.ascontiguousarray(x[:, None])


def he_weights(M, C, kh, kw, seed):
    """He-normal float32 weights (M, C, kh, kw) and a small bias (M,), from a fixed seed."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((M, C, kh, kw)) * np.sqrt(2.0 / (C * kh * kw))
    b = rng.standard_normal(M) * 0.01
    return w.astype(np.float32), b.astype(np.float32)


def maxpool3s2(x):
    """CifarNet's max-pool: 3x3 windows, stride 2, padding 1 (28x28 -> 14x14), native kernel."""
    from ..nn.pooling import maxpool2d_forward
    return maxpool2d_forward(np.ascontiguousarray(x), (3, 3), (2, 2), (1, 1), track=False)[0]


@functools.lru_cache(maxsize=None)
def layer(name: str, batch=None):
    """(x, w, b, stride, padding) of a named real workload, float32 NCHW, read-only arrays.

    "conv1": standardised images, 1->64 5x5 pad 2 (28x28, batch 128).
    "conv2": CifarNet conv2, 64->64 5x5 pad 2 (14x14, batch 128), input maxpool3s2(relu(conv1)),
             the 3x3/2 max-pool (pad 1) of CifarNet.
    "vgg":   64->128 3x3 pad 1 (32x32, batch 64), input relu(conv3x3(images padded to 32x32)).
    The previous layers run with pyadr's exact convolution and fixed He weights.
    """
    import pyadr
    if name not in LAYERS:
        raise ValueError(f"unknown layer {name!r}; known: {', '.join(LAYERS)}")
    n = DEFAULT_BATCH[name] if batch is None else int(batch)
    img = fashion_images(n)
    if name == "conv1":
        w, b = he_weights(64, 1, 5, 5, seed=1)
        out = (img, w, b, 1, 2)
    elif name == "conv2":
        w1, b1 = he_weights(64, 1, 5, 5, seed=1)
        a = pyadr.conv2d_forward(img, w1, b1, 1, 2)[0]
        x = maxpool3s2(np.maximum(a, 0))
        w, b = he_weights(64, 64, 5, 5, seed=2)
        out = (x, w, b, 1, 2)
    else:
        w0, b0 = he_weights(64, 1, 3, 3, seed=3)
        img32 = np.ascontiguousarray(np.pad(img, ((0, 0), (0, 0), (2, 2), (2, 2)), constant_values=float(img.min())))
        x = np.ascontiguousarray(np.maximum(pyadr.conv2d_forward(img32, w0, b0, 1, 1)[0], 0))
        w, b = he_weights(128, 64, 3, 3, seed=4)
        out = (x, w, b, 1, 1)
    for a in out[:3]:
        a.setflags(write=False)
    return out


@functools.lru_cache(maxsize=None)
def synthetic_layer(name: str = "syn", B=4, C=3, H=10, W=10, M=8, k=3, padding=1, seed=0):
    """A tiny, piecewise-constant (hence redundant) layer for smoke tests; not for claims."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    pattern = np.sign(np.sin(yy / 3.0) + np.cos(xx / 4.0) + 0.1).astype(np.float32)
    x = rng.standard_normal((B, C, 1, 1)).astype(np.float32) * pattern[None, None]
    x = np.ascontiguousarray(x + np.float32(0.5))
    w, b = he_weights(M, C, k, k, seed=seed + 1)
    out = (x, w, b, 1, padding)
    for a in out[:3]:
        a.setflags(write=False)
    return out


# --------------------------------------------------------------------------------------------
# Reuse points of the timing table
# --------------------------------------------------------------------------------------------
# (label, ReuseConfig kwargs): the coarse point, the accuracy-keeping points of ANCHORS.md, and
# the l2 points with L = C (one pixel's channels: hashed once per input pixel) whose rc/error
# put them at the same accuracy for less time.
REUSE_POINTS = (
    ("sign L=64 H=12 (coarse)", dict(L=64, H=12, hash="sign")),
    ("l2 L=64 H=8 w=1s", dict(L=64, H=8, hash="l2", width_scale=1.0)),
    ("l2 L=64 H=12 w=1s", dict(L=64, H=12, hash="l2", width_scale=1.0)),
    ("l2 L=25 H=8 w=1s", dict(L=25, H=8, hash="l2", width_scale=1.0)),
    ("sign L=25 H=24", dict(L=25, H=24, hash="sign")),
    ("sign L=25 H=20", dict(L=25, H=20, hash="sign")),
)


def reuse_config(K, **kw):
    """ReuseConfig with L clamped to the layer's K (conv1 has K = 25). Returns (cfg, clamped)."""
    import pyadr
    L = kw.pop("L")
    return pyadr.ReuseConfig(L=min(L, K), **kw), L > K


def rel_err(a, b) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    nb = np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / nb) if nb > 0 else float(np.linalg.norm(a - b))


def import_torch():
    """(torch, None) or (None, reason). Any failure (also a half-installed wheel's OSError) counts."""
    try:
        import torch
        import torch.nn.functional  # noqa: F401
        return torch, None
    except Exception as exc:  # noqa: BLE001 - torch is optional; report why it is absent
        return None, f"{type(exc).__name__}: {exc}".splitlines()[0][:120]
