"""Datasets as uint8 arrays in memory: Fashion-MNIST (IDX, gzip or not), CIFAR-10 (the python
pickle batches, read from a local directory, never downloaded) and a small synthetic dataset.

Images are kept as uint8 (N, C, H, W) and normalised per batch by the loader with the
per-channel mean/std of the training images.
"""
from __future__ import annotations

import dataclasses
import gzip
import os
import pickle

import numpy as np

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte",
}
DATASET_NAMES = ("fashion-mnist", "cifar10", "synthetic")


@dataclasses.dataclass
class Dataset:
    name: str
    train_images: np.ndarray     # uint8 (N, C, H, W)
    train_labels: np.ndarray     # int64 (N,)
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int
    mean: np.ndarray = None      # float32 (C,), in [0, 1] pixel units
    std: np.ndarray = None

    def __post_init__(self):
        if self.mean is None:
            pixels = self.train_images.astype(np.float64) / 255.0
            self.mean = pixels.mean(axis=(0, 2, 3)).astype(np.float32)
            self.std = np.maximum(pixels.std(axis=(0, 2, 3)), 1e-3).astype(np.float32)

    @property
    def image_shape(self):
        return tuple(self.train_images.shape[1:])

    def limit_train(self, n):
        """Keep the first n training images (a quick run)."""
        if n is None:
            return self
        if n < 1:
            raise ValueError(f"limit_train must be >= 1, got {n}")
        return dataclasses.replace(self, train_images=self.train_images[:n],
                                   train_labels=self.train_labels[:n], mean=self.mean, std=self.std)


def _open_maybe_gz(directory, stem):
    for name in (stem + ".gz", stem):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return gzip.open(path, "rb") if name.endswith(".gz") else open(path, "rb")
    return None


def read_idx(fileobj):
    """Parse an IDX file (the MNIST format): magic 0x0000 0x08 ndim, big-endian dims, uint8 data."""
    header = fileobj.read(4)
    if len(header) != 4 or header[0] != 0 or header[1] != 0 or header[2] != 0x08:
        raise ValueError("not an unsigned-byte IDX file (bad magic number)")
    ndim = header[3]
    dims = np.frombuffer(fileobj.read(4 * ndim), dtype=">u4").astype(np.int64)
    data = np.frombuffer(fileobj.read(), dtype=np.uint8)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"IDX file is truncated: header says {tuple(dims)}, found {data.size} bytes")
    return data.reshape(tuple(dims))


def load_fashion_mnist(data_dir=None):
    directory = data_dir or FASHION_MNIST_DIR
    arrays = {}
    for key, stem in FASHION_MNIST_FILES.items():
        f = _open_maybe_gz(directory, stem)
        if f is None:
            hint = (" Install it with `apt-get install dataset-fashion-mnist`, or pass --data-dir "
                    "with the four IDX files.")
            raise FileNotFoundError(f"Fashion-MNIST file {stem}[.gz] not found in {directory}.{hint}")
        with f:
            arrays[key] = read_idx(f)
    tr, te = arrays["train_images"], arrays["test_images"]
    return Dataset("fashion-mnist", tr[:, None], arrays["train_labels"].astype(np.int64),
                   te[:, None], arrays["test_labels"].astype(np.int64), 10,
                   mean=np.array([0.2860], np.float32), std=np.array([0.3530], np.float32))


def load_cifar10(data_dir):
    if not data_dir:
        raise FileNotFoundError("CIFAR-10 is never downloaded: pass --data-dir with the python "
                                "batches (data_batch_1..5, test_batch) or their cifar-10-batches-py folder")
    directory = data_dir
    if not os.path.exists(os.path.join(directory, "data_batch_1")):
        directory = os.path.join(data_dir, "cifar-10-batches-py")

    def batch(name):
        path = os.path.join(directory, name)
        if not os.path.exists(path):
            raise FileNotFoundError(f"CIFAR-10 batch {name} not found in {data_dir} "
                                    f"(expected the python version: data_batch_1..5, test_batch)")
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
        images = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        return images, np.asarray(d[b"labels"], dtype=np.int64)

    parts = [batch(f"data_batch_{i}") for i in range(1, 6)]
    test_x, test_y = batch("test_batch")
    return Dataset("cifar10", np.concatenate([p[0] for p in parts]),
                   np.concatenate([p[1] for p in parts]), test_x, test_y, 10,
                   mean=np.array([0.4914, 0.4822, 0.4465], np.float32),
                   std=np.array([0.2470, 0.2435, 0.2616], np.float32))


def make_synthetic(n_train=512, n_test=128, image_size=12, channels=1, num_classes=4, seed=0):
    """A learnable toy dataset: each class is a smooth random template plus noise, quantised to
    uint8 like real images (with a uniform background, so reuse has something to find)."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((num_classes, channels, 4, 4))
    reps = -(-image_size // 4)
    templates = np.kron(coarse, np.ones((1, 1, reps, reps)))[:, :, :image_size, :image_size]
    templates[:, :, :2, :] = 0.0          # background rows
    templates[:, :, :, -2:] = 0.0

    def draw(n):
        labels = rng.integers(0, num_classes, n)
        noise = rng.normal(0.0, 0.15, (n, channels, image_size, image_size))
        images = np.clip(templates[labels] * 0.8 + 0.1 + noise, 0, 1)
        images[:, :, :2, :] = 0.0
        return (images * 255).round().astype(np.uint8), labels.astype(np.int64)

    tr_x, tr_y = draw(n_train)
    te_x, te_y = draw(n_test)
    return Dataset("synthetic", tr_x, tr_y, te_x, te_y, num_classes)


def load_dataset(name, data_dir=None):
    if name == "fashion-mnist":
        return load_fashion_mnist(data_dir)
    if name == "cifar10":
        return load_cifar10(data_dir)
    if name == "synthetic":
        return make_synthetic()
    raise ValueError(f"dataset must be one of {', '.join(DATASET_NAMES)}; got {name!r}")
