"""A model's engine layers and what flows through them (shared by the schedules, the tuner and
the data-aware planes, which all probe layers of a live model).

  engine_layers(model)                   [(name, layer)]: conv1, conv2, ..., fc1, ...
  capture_layer_io(model, layers, probe) {name: (x, dY)}: each layer's input and upstream gradient
                                         in one exact training-mode forward + backward of `probe`,
                                         leaving the model as it was
"""
from __future__ import annotations

import numpy as np

from ..nn.loss import softmax_cross_entropy
from .models import dropout_layers
from .models import engine_layers as _model_engine_layers


def engine_layers(model):
    """[(name, layer)] of `model`'s engine layers; a model adapter (pyadr.torch.schedule) may
    provide its own `engine_layers()`."""
    own = getattr(model, "engine_layers", None)
    return own() if callable(own) else _model_engine_layers(model)


def capture_layer_io(model, layers, probe):
    """{name: (x, dY)} of `layers` ({name: layer}) in one training-mode forward + backward of
    `model` on `probe` (x, y), exact everywhere; leaves weights, grads, buffers, reuse settings,
    dropout generators and engine timers as they were. A model may provide its own
    `capture_layer_io(layers, probe)` (pyadr.torch.schedule's adapter does)."""
    if hasattr(model, "capture_layer_io"):
        return model.capture_layer_io(layers, probe)
    all_layers = [l for _, l in engine_layers(model)]
    saved_reuse = [(l, l.reuse, l.engine_seconds) for l in all_layers]
    grads = [(p, p.grad) for p in model.parameters()]
    buffers = [(m, b, m._buffers[b].copy()) for _, m, b in model.named_buffers()]
    drops = [(m, m.rng) for m in dropout_layers(model)]
    was_training = model.training
    got = {}

    def hook(name, layer):
        fwd, bwd = layer.forward, layer.backward

        def forward(x):
            got[name] = [x, None]
            return fwd(x)

        def backward(dy):
            got[name][1] = dy
            return bwd(dy)
        layer.forward, layer.backward = forward, backward

    try:
        for l in all_layers:
            l.reuse = None
        for name, layer in layers.items():
            hook(name, layer)
        for i, (m, _) in enumerate(drops):
            m.rng = np.random.default_rng([0x7E57, i])
        model.train()
        x, y = probe
        _, dlogits, _ = softmax_cross_entropy(model.forward(x), y)
        model.backward(dlogits)
    finally:
        for layer in layers.values():
            del layer.forward, layer.backward          # back to the class's methods
        for l, r, s in saved_reuse:
            l.reuse, l.engine_seconds = r, s
        for p, g in grads:
            p.grad = g
        for m, b, v in buffers:
            m._buffers[b][...] = v
        for m, r in drops:
            m.rng = r
        model.train(was_training)
    return {n: (v[0], v[1]) for n, v in got.items()}
