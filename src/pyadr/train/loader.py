"""Mini-batches: seeded shuffling, normalisation, optional random crop and flip, and a
background thread that prepares the next batches while the current step runs.

All randomness is counter-based: the permutation of epoch e comes from
default_rng([seed, e, PERMUTATION]) and the augmentation of batch (e, i) from
default_rng([seed, e, i, AUGMENT]). A run resumed at (epoch, step) therefore sees exactly the
batches the uninterrupted run would have seen, and prefetching cannot change them.

Data-parallel runs pass shard=(rank, size): every rank draws the same permutation and the same
augmentation of the whole global batch, then keeps its contiguous slice of it (shard_bounds), so
the ranks' slices together are exactly the 1-process batch.
"""
from __future__ import annotations

import queue
import threading

import numpy as np

from .distributed import shard_bounds

PERMUTATION, AUGMENT, DROPOUT = 0x5EED, 0xA06, 0xD0


def _crop_and_flip(batch, rng, pad, flip):
    B, C, H, W = batch.shape
    if pad:
        padded = np.zeros((B, C, H + 2 * pad, W + 2 * pad), dtype=batch.dtype)
        padded[:, :, pad:pad + H, pad:pad + W] = batch
        dy = rng.integers(0, 2 * pad + 1, B)
        dx = rng.integers(0, 2 * pad + 1, B)
        batch = np.stack([padded[b, :, dy[b]:dy[b] + H, dx[b]:dx[b] + W] for b in range(B)])
    if flip:
        mask = rng.random(B) < 0.5
        batch[mask] = batch[mask, :, :, ::-1]
    return batch


class BatchLoader:
    """Iterates (images float32 NCHW normalised, labels int64) over one epoch at a time."""

    def __init__(self, images, labels, batch_size, mean, std, seed=0, shuffle=True,
                 crop_pad=0, flip=False, xp=np, prefetch=2, shard=(0, 1)):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if len(images) != len(labels):
            raise ValueError(f"images and labels differ in length: {len(images)} vs {len(labels)}")
        if len(images) == 0:
            raise ValueError("the dataset is empty")
        self.images, self.labels = images, labels
        self.batch_size, self.seed, self.shuffle = int(batch_size), int(seed), bool(shuffle)
        self.crop_pad, self.flip, self.xp, self.prefetch = int(crop_pad), bool(flip), xp, int(prefetch)
        self.shard = (int(shard[0]), int(shard[1]))
        shard_bounds(1, *self.shard)            # checks 0 <= rank < size
        C = images.shape[1]
        self.scale = (1.0 / (255.0 * np.asarray(std, np.float32))).reshape(1, C, 1, 1).astype(np.float32)
        self.shift = (np.asarray(mean, np.float32) / np.asarray(std, np.float32)).reshape(1, C, 1, 1)

    def __len__(self):
        return -(-len(self.images) // self.batch_size)

    def order(self, epoch):
        if not self.shuffle:
            return np.arange(len(self.images))
        return np.random.default_rng([self.seed, epoch, PERMUTATION]).permutation(len(self.images))

    def global_rows(self, step):
        """Rows of global batch `step` (all shards together)."""
        return min(self.batch_size, len(self.images) - step * self.batch_size)

    def make_batch(self, order, epoch, step):
        idx = order[step * self.batch_size:(step + 1) * self.batch_size]
        raw = self.images[idx]
        if self.crop_pad or self.flip:
            raw = _crop_and_flip(raw, np.random.default_rng([self.seed, epoch, step, AUGMENT]),
                                 self.crop_pad, self.flip)
        if self.shard[1] > 1:
            lo, hi = shard_bounds(len(idx), *self.shard)
            raw, idx = raw[lo:hi], idx[lo:hi]
        x = raw.astype(np.float32)
        x *= self.scale
        x -= self.shift
        return self.xp.asarray(x), self.xp.asarray(self.labels[idx])

    def epoch(self, epoch, start_step=0):
        """Generator of (step, x, y) for steps start_step..len-1 of `epoch`, prefetched."""
        order = self.order(epoch)
        steps = range(start_step, len(self))
        if self.prefetch <= 0:
            for step in steps:
                yield (step,) + self.make_batch(order, epoch, step)
            return
        q = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def produce():
            try:
                for step in steps:
                    item = (step,) + self.make_batch(order, epoch, step)
                    while not stop.is_set():
                        try:
                            q.put(item, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                q.put(None)
            except BaseException as exc:   # handed to the consumer thread
                q.put(exc)

        thread = threading.Thread(target=produce, name="pyadr-prefetch", daemon=True)
        thread.start()
        try:
            while True:
                item = q.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while thread.is_alive():
                try:
                    q.get_nowait()
                except queue.Empty:
                    thread.join(timeout=0.05)
