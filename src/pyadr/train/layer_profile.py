"""Per-layer timings of a training step against the bytes each non-convolution layer must move,
and the same layers of the PyTorch twin (`pyadr profile`'s layer table, bench/nn_ops_table.py).

  op_bytes(kind, x_shape, y_shape, itemsize, weight_bytes)  (forward, backward) bytes the op cannot avoid
  copy_bandwidth(nbytes, threads, repeats)                   the machine's copy rate at that working set
  LayerTimer(model)                                          wraps every leaf layer's forward/backward
  torch_layer_times(model, loader, threads, steps)           the twin's layers, one at a time

Bytes (s = element size; N elements in, M out; the byte model of the bench's table):
  ReLU, BatchNorm2d, LRN  fwd 2Ns (x, y)        bwd 3Ns (x or y, dy, dx)   statistics / window sums from cache
  MaxPool2d              fwd Ns + M(s + 4)      bwd M(s + 4) + Ns          the int32 argmax is kept
  AvgPool2d              fwd Ns + Ms            bwd Ms + Ns
  Linear                 fwd x + W + y          bwd dy + x + 2W + dx       (W read, dW written)
  Dropout                fwd 3Ns (x, mask, y)   bwd 3Ns
  Flatten                0 (a view)             0
  a fused ReLU           0 (its neighbour rectifies: BatchNorm2d's output, MaxPool2d's pooled values)
Conv2d and Linear are GEMMs (compute-bound): their rows also show GFLOP/s (2 x multiply-adds / time).
"""
from __future__ import annotations

import time

import numpy as np

MEMORY_BOUND = ("ReLU", "BatchNorm2d", "LocalResponseNorm", "MaxPool2d", "AvgPool2d", "Linear", "Dropout",
                "Flatten")


def op_bytes(kind, x_shape, y_shape, itemsize, weight_bytes=0):
    """(forward bytes, backward bytes) of one layer (see the module docstring); None for a conv."""
    n, m, s = int(np.prod(x_shape)), int(np.prod(y_shape)), itemsize
    if kind in ("ReLU", "BatchNorm2d", "LocalResponseNorm"):
        return 2 * n * s, 3 * n * s
    if kind in ("MaxPool2d", "AvgPool2d"):
        extra = 4 if kind == "MaxPool2d" else 0
        return n * s + m * (s + extra), m * (s + extra) + n * s
    if kind == "Linear":
        return n * s + weight_bytes + m * s, m * s + n * s + 2 * weight_bytes + n * s
    if kind == "Dropout":
        return 3 * n * s, 3 * n * s
    if kind == "Flatten":
        return 0, 0
    return None


def gemm_flops(mod, x_shape, y_shape):
    """2 x multiply-adds of a Conv2d/Linear forward (the backward's two products: twice that)."""
    kind = type(mod).__name__
    if kind == "Linear":
        return 2 * x_shape[0] * mod.in_features * mod.out_features
    if kind == "Conv2d":
        return 2 * int(np.prod(y_shape)) * mod.K
    return None


def probe_size(nbytes):
    """Bytes of the copy probe for an op whose largest array has nbytes: a power of two >= 256 KB
    (the last-level cache may hold the op's arrays, so a DRAM-sized copy would not be its bound)."""
    n = max(int(nbytes), 256 << 10)
    return 1 << (n - 1).bit_length()


def _timer(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def copy_bandwidth_sample(a, b, threads):
    """Bytes/s of one copy of a into b by `threads` Python threads on slices (np.copyto releases the GIL)."""
    if threads <= 1:
        return 2 * a.nbytes / _timer(lambda: np.copyto(b, a))
    from concurrent.futures import ThreadPoolExecutor
    parts = np.array_split(np.arange(a.size), threads)
    bounds = [(int(q[0]), int(q[-1]) + 1) for q in parts]
    with ThreadPoolExecutor(threads) as pool:
        t = time.perf_counter()
        list(pool.map(lambda r: np.copyto(b[r[0]:r[1]], a[r[0]:r[1]]), bounds))
        return 2 * a.nbytes / (time.perf_counter() - t)


def native_copy_sample(a, b):
    """Bytes/s of the core's streaming elementwise kernel used as a copy (ReLU of non-negative
    values: one read and one write per element, OpenMP threads, SIMD)."""
    from .. import _native
    return 2 * a.nbytes / _timer(lambda: _native.relu_forward(0, a.size, a, b))


class CopyProbe:
    """Copy bandwidth per working-set size, best over samples taken whenever `sample()` is called
    (interleave it with the timed work: on a shared machine the best sample is the bound)."""

    def __init__(self, sizes, threads):
        self.threads = threads
        self.arrays = {n: (np.ones(n // 4, np.float32), np.empty(n // 4, np.float32)) for n in sorted(set(sizes))}
        self.best = dict.fromkeys(self.arrays, 0.0)

    def sample(self):
        for n, (src, dst) in self.arrays.items():
            bw = max(copy_bandwidth_sample(src, dst, 1), copy_bandwidth_sample(src, dst, self.threads),
                     native_copy_sample(src, dst))
            self.best[n] = max(self.best[n], bw)

    def bound(self, nbytes, largest):
        """Seconds to move nbytes at the copy rate of the working set `largest` bytes."""
        return nbytes / self.best[probe_size(largest)]


class LayerTimer:
    """Wraps the forward and backward of every leaf layer of `model` (instance attributes) to
    record, per call, its seconds in `rows[i]["fwd"]` / `["bwd"]` lists, with its kind, input
    and output shapes (the first call's). rows: one dict per leaf, in forward order."""

    def __init__(self, model):
        self.rows = []
        for name, mod in model.named_modules():
            if list(mod.children()):
                continue
            row = {"name": name, "kind": type(mod).__name__, "mod": mod, "fwd": [], "bwd": [],
                   "x_shape": None, "y_shape": None, "itemsize": None}
            self.rows.append(row)
            self._wrap(mod, row)

    @staticmethod
    def _wrap(mod, row):
        fwd, bwd = mod.forward, mod.backward

        def timed_forward(x, *a, **k):
            t = time.perf_counter()
            y = fwd(x, *a, **k)
            row["fwd"].append(time.perf_counter() - t)
            if row["x_shape"] is None:
                row["x_shape"], row["y_shape"], row["itemsize"] = tuple(x.shape), tuple(y.shape), x.dtype.itemsize
            return y

        def timed_backward(dy, *a, **k):
            t = time.perf_counter()
            dx = bwd(dy, *a, **k)
            row["bwd"].append(time.perf_counter() - t)
            return dx
        mod.forward, mod.backward = timed_forward, timed_backward

    def reset(self):
        for row in self.rows:
            row["fwd"].clear()
            row["bwd"].clear()


def row_bytes(row):
    """(forward, backward) bytes of a LayerTimer row, None for a convolution (or an unknown kind)."""
    if row["x_shape"] is None:
        return None
    if fused(row):
        return 0, 0
    w = row["mod"].weight.data.nbytes if row["kind"] == "Linear" else 0
    return op_bytes(row["kind"], row["x_shape"], row["y_shape"], row["itemsize"], w)


def fused(row):
    """True for a ReLU that its neighbour applied (Sequential's fusion): it moves no bytes itself."""
    return row["kind"] == "ReLU" and bool(getattr(row["mod"], "_passed", False))


def row_largest(row):
    n = max(int(np.prod(row["x_shape"])), int(np.prod(row["y_shape"])))
    if row["kind"] == "Linear":
        return max(n * row["itemsize"], row["mod"].weight.data.nbytes)
    return n * row["itemsize"]


def torch_layer_times(model, loader, threads, steps, warmup=2):
    """([(fwd seconds list, bwd seconds list)] per layer, [optimizer step seconds]) of `model`'s
    PyTorch twin (same weights, threads and batches; SGD lr 0.01, momentum 0.9), each layer run on
    its own: its input detached from the previous layer's output, its backward from the next
    layer's input gradient. None when torch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    from .torch_twin import torch_twin
    torch.set_num_threads(threads)
    twin = torch_twin(model).train()
    layers = list(twin)
    opt = torch.optim.SGD(twin.parameters(), lr=0.01, momentum=0.9)
    out, opt_times = [([], []) for _ in layers], []
    order = loader.order(0)
    for s in range(warmup + steps):
        x, y = loader.make_batch(order, 0, s % len(loader))
        h = torch.from_numpy(x)
        ins, outs, tf = [], [], []
        for i, layer in enumerate(layers):
            h = h.detach().requires_grad_(i > 0)     # the images need no gradient (as pyadr's first conv)
            ins.append(h)
            t = time.perf_counter()
            h = layer(h)
            tf.append(time.perf_counter() - t)
            outs.append(h)
        loss = torch.nn.functional.cross_entropy(h, torch.from_numpy(y.astype(np.int64)))
        g = torch.autograd.grad(loss, h)[0]
        tb = [0.0] * len(layers)
        for i in reversed(range(len(layers))):
            t = time.perf_counter()
            outs[i].backward(g)
            tb[i] = time.perf_counter() - t
            g = ins[i].grad
        t = time.perf_counter()
        opt.step()
        t_opt = time.perf_counter() - t
        opt.zero_grad(set_to_none=True)
        if s >= warmup:
            for i in range(len(layers)):
                out[i][0].append(tf[i])
                out[i][1].append(tb[i])
            opt_times.append(t_opt)
    return out, opt_times
