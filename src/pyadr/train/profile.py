"""Where a training step's time goes, as a library: per-category timers over training steps.

  profile_steps(model, loader, optimizer, steps)  [{category: seconds}] per step: every leaf
      layer's forward + backward by kind (conv, pooling, LRN, linear, ReLU, ...), the loss, the
      optimizer step and building the batch (data); optionally rc per step and the peak memory
  torch_step_times(model, loader, threads, steps)  the same model's PyTorch twin (torch_twin),
      seconds per step, or None when torch is not installed (never a dependency)
The command line `pyadr profile` (pyadr/cli/profile.py) prints them side by side.
"""
from __future__ import annotations

import time

import numpy as np

CATEGORIES = ("data", "conv", "pooling", "lrn", "linear", "relu", "batchnorm", "other layers", "loss", "optimizer")


def _category(mod):
    from .. import nn
    for cls, name in ((nn.Conv2d, "conv"), ((nn.MaxPool2d, nn.AvgPool2d), "pooling"),
                      (nn.LocalResponseNorm, "lrn"), (nn.Linear, "linear"), (nn.ReLU, "relu"),
                      (nn.BatchNorm2d, "batchnorm")):
        if isinstance(mod, cls):
            return name
    return "other layers"


def _instrument(model, times):
    """Wraps every leaf module's forward/backward (instance attributes) to add its time to
    times[category]."""
    for _, mod in model.named_modules():
        if list(mod.children()):
            continue
        cat = _category(mod)
        for attr in ("forward", "backward"):
            fn = getattr(mod, attr)

            def timed(*a, _fn=fn, _cat=cat, **k):
                t = time.perf_counter()
                out = _fn(*a, **k)
                times[_cat] += time.perf_counter() - t
                return out
            setattr(mod, attr, timed)


def profile_steps(model, loader, optimizer, steps, warmup=2, rcs=None, peak=None):
    """[{category: seconds}] for `steps` training steps after `warmup` untimed ones. When `rcs`
    is a dict, it receives {layer: [rc of each timed step]} of the layers that reuse. When `peak`
    is a list, one more (untimed) step is run with the engine's block cache emptied first, and
    `peak` receives its peak RSS growth in MB (Linux; None elsewhere)."""
    from .._memory import peak_delta_mb
    from ..nn import softmax_cross_entropy
    from .models import engine_layers
    reusing = [(n, l) for n, l in engine_layers(model) if l.reuse is not None]
    order = loader.order(0)
    per_step = []
    times = dict.fromkeys(CATEGORIES, 0.0)
    _instrument(model, times)
    model.train()

    def step(s):
        for k in times:
            times[k] = 0.0
        t = time.perf_counter()
        x, y = loader.make_batch(order, 0, s % len(loader))
        times["data"] += time.perf_counter() - t
        logits = model.forward(x)
        t = time.perf_counter()
        _, dlogits, _ = softmax_cross_entropy(logits, y)
        times["loss"] += time.perf_counter() - t
        model.backward(dlogits)
        t = time.perf_counter()
        optimizer.step()
        times["optimizer"] += time.perf_counter() - t

    for s in range(warmup + steps):
        step(s)
        if s >= warmup:
            per_step.append(dict(times))
            if rcs is not None:
                for name, layer in reusing:
                    rcs.setdefault(name, []).append(layer.last_rc)
    if peak is not None:
        peak.append(peak_delta_mb(lambda: step(warmup + steps))[1])
    return per_step


def torch_step_times(model, loader, threads, steps, warmup=2):
    """Seconds per training step of `model`'s PyTorch twin (SGD lr 0.01, momentum 0.9) on the
    loader's first batches, or None when torch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    from .torch_twin import torch_twin
    torch.set_num_threads(threads)
    twin = torch_twin(model).train()
    opt = torch.optim.SGD(twin.parameters(), lr=0.01, momentum=0.9)
    order = loader.order(0)
    times = []
    for s in range(warmup + steps):
        x, y = loader.make_batch(order, 0, s % len(loader))
        xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
        t = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(twin(xt), yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if s >= warmup:
            times.append(time.perf_counter() - t)
    return times
