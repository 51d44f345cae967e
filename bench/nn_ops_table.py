"""Every non-convolution part of a training step against the bytes it must move, and PyTorch.

    python bench/nn_ops_table.py --model cifarnet vgg11 alexnet --repeats 15 --threads 2

For each leaf layer of the model that is not a convolution (ReLU, pooling, LRN, batch norm,
linear, dropout) on the activations a real forward gives it (Fashion-MNIST shapes, batch 128),
and for the optimizer step over all parameters, it times pyadr's forward and backward and prints

    time (min and median of interleaved repeats), bytes = the reads + writes the op cannot avoid
    (below), bound = bytes / copy bandwidth, ratio = time / bound, and PyTorch's time for the same
    op (torch.nn, same shapes and threads) when torch is importable.

The copy bandwidth is measured in the same run, interleaved with the ops, at each op's working-set
size (its largest array rounded up to a power of two; the machine's last-level cache may hold
it, so a DRAM-sized copy would not be the bound): the best of np.copyto on 1 and on --threads
Python threads and of the core's streaming kernel as a copy (ReLU of non-negative values, OpenMP
threads), best over the repeats: 2 * nbytes / time. "before" rows time the array-module code the native
kernels replaced (BatchNorm2d.forward_vectorised, SGD.step_array), interleaved with the rest.

Bytes (s = element size; N elements in, M out):
  ReLU        fwd 2Ns (x, y)       bwd 3Ns (y, dy, dx)
  BatchNorm2d fwd 2Ns (x, y)       bwd 3Ns (x, dy, dx)     the statistics pass re-reads from cache
  BN + ReLU   fwd 2Ns (x, y)       bwd 4Ns (x, dy, y, dx)   a BatchNorm2d followed by a ReLU and a
  ReLU + pool as MaxPool2d                                  ReLU followed by a MaxPool2d run fused,
                                                            as Sequential plans them in training
  MaxPool2d   fwd Ns + M(s + 4)    bwd M(s + 4) + Ns        (the int32 argmax is kept)
  LRN         fwd 2Ns              bwd 3Ns                  (recomputing the window sums)
  Linear      fwd x + W + y        bwd dy + x + W + dx + dW
  Dropout     fwd 3Ns (x, mask, y) bwd 3Ns
  SGD         5 x parameter bytes (p, grad, buf read; p, buf written), momentum 0.9
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

import numpy as np

CATEGORY = {"ReLU": "relu", "MaxPool2d": "pooling", "AvgPool2d": "pooling", "LocalResponseNorm": "lrn",
            "BatchNorm2d": "batchnorm", "Linear": "linear", "Dropout": "dropout"}


def op_bytes(mod, x, y, fused_relu=False):
    """(forward bytes, backward bytes) the op must move (pyadr.train.layer_profile's byte model)."""
    from pyadr.train.layer_profile import op_bytes as model_bytes
    w = mod.weight.data.nbytes if type(mod).__name__ == "Linear" else 0
    fwd, bwd = model_bytes(type(mod).__name__, x.shape, y.shape, x.itemsize, w)
    return fwd, bwd + (y.nbytes if fused_relu else 0)   # the backward reads y for the ReLU's mask


def _timer(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


class _Op:
    """One layer: pyadr forward/backward on a fixed input and output gradient, and its torch twin."""

    def __init__(self, label, mod, x, torch_mod=None, fused_relu=False, relu_before=False):
        self.label, self.mod, self.x = label, mod, x
        self.category = CATEGORY[type(mod).__name__]
        self.fused_relu = fused_relu            # BatchNorm2d with the following ReLU fused into it
        self.relu_before = relu_before          # MaxPool2d rectifying its input (the ReLU before it)
        self.y = self.forward()
        self.dy = np.random.default_rng(1).standard_normal(self.y.shape).astype(self.y.dtype)
        self.bytes = op_bytes(mod, x, self.y, fused_relu)
        self.fwd, self.bwd, self.tfwd, self.tbwd = [], [], [], []
        self.torch_mod = torch_mod

    def forward(self):
        if self.relu_before:
            self.mod.relu_input = True          # Sequential's plan for ReLU -> MaxPool2d
            return self.mod.forward(self.x)
        if self.fused_relu:
            self.mod.relu_output = True         # what Sequential's fusion plan sets before each forward
            y = self.mod.forward(self.x)
            assert self.mod.relu_applied
            return y
        return self.mod.forward(self.x)

    def run(self):
        self.fwd.append(_timer(self.forward))
        self.bwd.append(_timer(lambda: self.mod.backward(self.dy)))
        if self.torch_mod is not None:
            import torch
            xt = torch.from_numpy(self.x).requires_grad_(True)
            dyt = torch.from_numpy(self.dy)
            out = []
            self.tfwd.append(_timer(lambda: out.append(self.torch_mod(xt))))
            self.tbwd.append(_timer(lambda: out[0].backward(dyt)))


class _BatchNormBefore(_Op):
    """BatchNorm2d's array-module code (what the native kernel replaced), on a copy of the layer."""

    def __init__(self, op):
        mod = copy.deepcopy(op.mod)
        mod.forward = mod.forward_vectorised
        super().__init__(op.label.replace("+ReLU", "") + " before", mod, op.x)


class _Optimizer:
    def __init__(self, model, before=False, torch_mod=None):
        from pyadr.nn import SGD
        self.category, self.label = "optimizer", "SGD m=0.9" + (" before" if before else "")
        self.params = copy.deepcopy(model.parameters())
        rng = np.random.default_rng(2)
        for p in self.params:
            p.grad = rng.standard_normal(p.data.shape).astype(p.data.dtype)
        self.opt = SGD(self.params, lr=1e-3, momentum=0.9)
        self.opt.step()                     # buffers exist: every timed step is a steady-state one
        self.before = before
        self.bytes = (5 * sum(p.data.nbytes for p in self.params), 0)
        self.fwd, self.bwd, self.tfwd, self.tbwd = [], [], [], []
        self.torch_opt = None
        if torch_mod is not None:
            import torch
            ts = [torch.from_numpy(p.data.copy()) for p in self.params]
            for t, p in zip(ts, self.params):
                t.grad = torch.from_numpy(p.grad)
            self.torch_opt = torch.optim.SGD(ts, lr=1e-3, momentum=0.9)
            self.torch_opt.step()

    def run(self):
        if self.before:
            self.fwd.append(_timer(lambda: [self.opt.step_array(i, p) for i, p in enumerate(self.params)]))
        else:
            self.fwd.append(_timer(self.opt.step))
        self.bwd.append(0.0)
        if self.torch_opt is not None:
            self.tfwd.append(_timer(self.torch_opt.step))
            self.tbwd.append(0.0)


def build_ops(model_name, batch, torch_ok, seed=0):
    """The model's non-convolution ops (and optimizer rows) on the activations of a real forward."""
    from pyadr import nn
    from pyadr.train.models import build_model
    from pyadr.train.torch_twin import torch_twin
    model = build_model(model_name, (1, 28, 28), 10, 1.0, seed).train()
    x = np.random.default_rng(seed).standard_normal((batch, 1, 28, 28)).astype(np.float32)
    ops = []
    mods = list(model)
    relu_x = None                               # the input of a ReLU fused into the next MaxPool2d
    for i, mod in enumerate(mods):
        nxt = mods[i + 1] if i + 1 < len(mods) else None
        if isinstance(mod, nn.ReLU) and i > 0 and isinstance(mods[i - 1], nn.BatchNorm2d):
            x = mod.forward(x)                  # fused into the BatchNorm2d row above
            continue
        if isinstance(mod, nn.ReLU) and isinstance(nxt, nn.MaxPool2d) and nxt.can_fuse_relu(x):
            relu_x, x = x, mod.forward(x)       # fused into the MaxPool2d row below
            continue
        if type(mod).__name__ in CATEGORY:
            fused = isinstance(mod, nn.BatchNorm2d) and isinstance(nxt, nn.ReLU)
            before = isinstance(mod, nn.MaxPool2d) and relu_x is not None
            twin = nn.Sequential(mod, nn.ReLU()) if fused else \
                nn.Sequential(nn.ReLU(), mod) if before else nn.Sequential(mod)
            tmod = torch_twin(twin).train() if torch_ok else None
            name = ("ReLU+" if before else "") + type(mod).__name__ + ("+ReLU" if fused else "")
            op = _Op(f"{i}:{name} {tuple(x.shape[1:])}", mod, (relu_x if before else x).copy(), tmod,
                     fused_relu=fused, relu_before=before)
            relu_x = None
            ops.append(op)
            if isinstance(mod, nn.BatchNorm2d):
                ops.append(_BatchNormBefore(op))
        x = mod.forward(x)
    ops.append(_Optimizer(model, torch_mod=True if torch_ok else None))
    ops.append(_Optimizer(model, before=True))
    return ops


HEADLINE = 64 << 20


def probe_size(op):
    """Bytes of the copy probe for an op: its largest array (input or output), at least 256 KB,
    rounded up to a power of two (a few probes only)."""
    from pyadr.train.layer_profile import probe_size as rounded
    if isinstance(op, _Optimizer):
        return rounded(max(p.data.nbytes for p in op.params))
    return rounded(max(op.x.nbytes, op.y.nbytes))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", nargs="+", default=["cifarnet", "vgg11", "alexnet"])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-torch", action="store_true")
    a = p.parse_args(argv)
    import pyadr
    from pyadr.train.layer_profile import copy_bandwidth_sample, native_copy_sample
    pyadr.set_num_threads(a.threads)
    torch_ok = False
    if not a.no_torch:
        try:
            import torch
            torch.set_num_threads(a.threads)
            torch_ok = True
        except ImportError:
            pass
    models = {m: build_ops(m, a.batch_size, torch_ok) for m in a.model}
    # one copy probe per working-set size (the op's largest array; 64 MB for the headline figure):
    # on a machine whose last-level cache holds these arrays, a 64 MB copy would not be the bound
    sizes = {HEADLINE: None}
    for ops in models.values():
        for op in ops:
            sizes[probe_size(op)] = None
    probes = {n: (np.ones(n // 4, np.float32), np.empty(n // 4, np.float32)) for n in sizes}
    bws = {n: [] for n in sizes}
    for _ in range(a.repeats):                       # interleaved: every op and probe once per round
        for n, (src, dst) in probes.items():
            bws[n].append(max(copy_bandwidth_sample(src, dst, 1), copy_bandwidth_sample(src, dst, a.threads),
                              native_copy_sample(src, dst)))
        for ops in models.values():
            for op in ops:
                op.run()
    best = {n: max(v) for n, v in bws.items()}
    print(f"copy bandwidth, best of np.copyto (1 and {a.threads} threads) and a native copy: "
          + ", ".join(f"{n / 1e6:.1f} MB {best[n] / 1e9:.1f} GB/s" for n in sorted(best)))
    print(f"{a.threads} threads; times: min over {a.repeats} interleaved repeats (median in brackets), ms; "
          f"bound = bytes / the copy bandwidth at the op's working-set size")
    for name, ops in models.items():
        print(f"\n{name}, batch {a.batch_size}")
        print(f"{'op':34s} {'fwd':>16s} {'bwd':>16s} {'MB':>7s} {'bound':>7s} {'ratio':>6s} {'torch f+b':>10s}")
        totals = {}
        for op in ops:
            f, b = min(op.fwd), min(op.bwd)
            fm, bm = statistics.median(op.fwd), statistics.median(op.bwd)
            nbytes = sum(op.bytes)
            bound = nbytes / best[probe_size(op)]
            t = (min(op.tfwd) + min(op.tbwd)) if op.tfwd else None
            print(f"{op.label:34s} {1e3 * f:7.2f} ({1e3 * fm:6.2f}) {1e3 * b:7.2f} ({1e3 * bm:6.2f}) "
                  f"{nbytes / 1e6:7.1f} {1e3 * bound:7.2f} {(f + b) / bound:6.1f} "
                  + (f"{1e3 * t:10.2f}" if t is not None else f"{'-':>10s}"))
            key = op.category + (" before" if op.label.endswith("before") else "")
            tot = totals.setdefault(key, [0.0, 0.0, 0.0])
            tot[0] += f + b
            tot[1] += bound
            tot[2] += t or 0.0
        print(f"{'-- per part':34s} {'time':>16s} {'bound':>16s} {'ratio':>7s} {'torch':>10s}")
        for key, (t, bound, tt) in totals.items():
            print(f"{key:34s} {1e3 * t:16.2f} {1e3 * bound:16.2f} {t / bound:7.1f} "
                  + (f"{1e3 * tt:10.2f}" if torch_ok and not key.endswith("before") else f"{'-':>10s}"))
        now = sum(v[0] for k, v in totals.items() if not k.endswith("before"))
        print(f"{'sum (after)':34s} {1e3 * now:16.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
