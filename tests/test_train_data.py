"""Datasets (IDX, CIFAR pickles, synthetic) and the prefetching loader."""
import gzip
import os
import pickle
import struct

import numpy as np
import pytest

from pyadr.train.data import load_cifar10, load_dataset, load_fashion_mnist, make_synthetic, read_idx
from pyadr.train.loader import BatchLoader


@pytest.fixture
def rng():
    return np.random.default_rng(5)


def write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_idx_files(tmp_path, rng):
    imgs = rng.integers(0, 256, (6, 28, 28))
    labels = rng.integers(0, 10, 6)
    for prefix in ("train", "t10k"):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", imgs)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", labels)
    data = load_fashion_mnist(str(tmp_path))
    assert data.train_images.shape == (6, 1, 28, 28) and data.num_classes == 10
    np.testing.assert_array_equal(data.train_images[:, 0], imgs)
    np.testing.assert_array_equal(data.test_labels, labels)
    assert data.limit_train(4).train_images.shape[0] == 4
    with pytest.raises(ValueError, match="limit_train"):
        data.limit_train(0)


def test_missing_and_corrupt_data_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist") as exc:
        load_fashion_mnist(str(tmp_path))
    assert str(tmp_path) in str(exc.value)
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        load_cifar10(None)
    with pytest.raises(FileNotFoundError, match="data_batch_1"):
        load_cifar10(str(tmp_path))
    import io
    with pytest.raises(ValueError, match="magic"):
        read_idx(io.BytesIO(b"\x00\x00\x0d\x01\x00\x00\x00\x01\x00"))
    with pytest.raises(ValueError, match="dataset"):
        load_dataset("imagenet")


def test_cifar10_pickle_batches(tmp_path, rng):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (3, 3072)).astype(np.uint8), b"labels": [1, 2, 3]}
        with open(d / name, "wb") as f:
            pickle.dump(batch, f)
    data = load_cifar10(str(tmp_path))
    assert data.train_images.shape == (15, 3, 32, 32) and data.test_images.shape == (3, 3, 32, 32)
    assert data.mean.shape == (3,)


def test_loader_is_deterministic_normalised_and_prefetches(rng):
    data = make_synthetic(n_train=50, n_test=10)
    kw = dict(batch_size=16, mean=data.mean, std=data.std, seed=9, crop_pad=2, flip=True)
    a = BatchLoader(data.train_images, data.train_labels, **kw)
    b = BatchLoader(data.train_images, data.train_labels, prefetch=0, **kw)
    got_a, got_b = list(a.epoch(1)), list(b.epoch(1))
    assert len(a) == 4 and [s for s, _, _ in got_a] == [0, 1, 2, 3] and got_a[-1][1].shape[0] == 2
    for (sa, xa, ya), (sb, xb, yb) in zip(got_a, got_b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    tail = list(a.epoch(1, start_step=2))
    np.testing.assert_array_equal(tail[0][1], got_a[2][1])
    assert not np.array_equal(a.order(0), a.order(1))
    plain = BatchLoader(data.train_images, data.train_labels, 50, data.mean, data.std, shuffle=False)
    x = next(plain.epoch(0))[1]
    assert x.dtype == np.float32 and abs(x.mean()) < 1e-3 and abs(x.std() - 1) < 1e-2
    gen = a.epoch(0)
    next(gen)
    gen.close()                      # stops the prefetch thread
    with pytest.raises(ValueError, match="batch_size"):
        BatchLoader(data.train_images, data.train_labels, 0, data.mean, data.std)


@pytest.mark.skipif(not os.path.exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"),
                    reason="dataset-fashion-mnist is not installed")
def test_installed_fashion_mnist_loads():
    data = load_dataset("fashion-mnist")
    assert data.train_images.shape == (60000, 1, 28, 28) and data.test_images.shape == (10000, 1, 28, 28)
    assert set(np.unique(data.train_labels)) == set(range(10))
