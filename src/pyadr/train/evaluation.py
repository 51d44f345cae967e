"""Test-set evaluation, with exact convolution unless asked otherwise. In a data-parallel run
each rank evaluates its shard of every batch (the loader's shard) and the sums are reduced."""
from __future__ import annotations

import contextlib

import numpy as np

from ..nn.loss import cross_entropy_loss
from .models import engine_layers


@contextlib.contextmanager
def exact_convolutions(model):
    """Temporarily run every Conv2d/Linear of `model` exactly (reuse = None)."""
    saved = [(layer, layer.reuse) for _, layer in engine_layers(model)]
    try:
        for layer, _ in saved:
            layer.reuse = None
        yield model
    finally:
        for layer, reuse in saved:
            layer.reuse = reuse


def evaluate(model, loader, use_reuse=False, comm=None):
    """(mean loss, accuracy in [0, 1], {layer: mean rc or None}) over all of `loader`'s data;
    with `comm` (pyadr.train.distributed), over the shards of all ranks."""
    was_training = model.training
    model.eval()
    layers = engine_layers(model)
    rc_sum = {name: 0.0 for name, _ in layers}
    rc_n = {name: 0 for name, _ in layers}
    total_loss, correct, count = 0.0, 0, 0
    ctx = contextlib.nullcontext() if use_reuse else exact_convolutions(model)
    try:
        with ctx:
            for _, x, y in loader.epoch(0):
                if len(y) == 0:         # this rank's shard of a short last batch
                    continue
                s, c = cross_entropy_loss(model.forward(x), y)
                total_loss, correct, count = total_loss + s, correct + c, count + len(y)
                for name, layer in layers:
                    if layer.reuse is not None and layer.last_rc is not None:
                        rc_sum[name] += layer.last_rc
                        rc_n[name] += 1
    finally:
        model.train(was_training)
    if comm is not None and comm.size > 1:
        names = [name for name, _ in layers]
        sums = comm.allgather([total_loss, correct, count] + [rc_sum[n] for n in names]
                              + [rc_n[n] for n in names]).sum(axis=0)
        total_loss, correct, count = float(sums[0]), int(sums[1]), int(sums[2])
        k = len(names)
        rc_sum = dict(zip(names, sums[3:3 + k].tolist()))
        rc_n = dict(zip(names, sums[3 + k:].tolist()))
    rc = {name: (rc_sum[name] / rc_n[name] if rc_n[name] else None) for name, _ in layers}
    return total_loss / max(count, 1), correct / max(count, 1), rc
