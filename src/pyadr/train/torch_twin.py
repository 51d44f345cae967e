"""The PyTorch twin of a pyadr.nn model: same layers, same weights (for side-by-side timings in
`pyadr profile` and for the step-for-step equivalence tests). torch is imported only here and
only when called; it is never a dependency of pyadr.
"""
from __future__ import annotations

import numpy as np


def torch_twin(model, dtype=None):
    """torch.nn.Sequential equal to `model` (a pyadr.nn.Sequential, nested allowed), with copies of
    its weights and buffers. Supports Conv2d, Linear, ReLU, MaxPool2d, AvgPool2d, BatchNorm2d,
    LocalResponseNorm, Dropout and Flatten; anything else is a ValueError naming the layer.
    dtype: a torch dtype for the parameters (default: the model's)."""
    import torch
    from .. import nn

    tnn = torch.nn
    layers = []
    first = next((p for _, p in model.named_parameters()), None)
    if dtype is None:
        dtype = torch.float64 if first is not None and first.data.dtype == np.float64 else torch.float32

    def convert(mod, name):
        if isinstance(mod, nn.Sequential):
            for child_name, child in mod._modules.items():
                convert(child, f"{name}.{child_name}" if name else child_name)
            return
        if isinstance(mod, nn.Conv2d):
            t = tnn.Conv2d(mod.in_channels, mod.out_channels, mod.kernel_size, stride=mod.stride,
                           padding=mod.padding, dilation=mod.dilation, bias=mod.bias is not None)
        elif isinstance(mod, nn.Linear):
            t = tnn.Linear(mod.in_features, mod.out_features, bias=mod.bias is not None)
        elif isinstance(mod, nn.ReLU):
            t = tnn.ReLU()
        elif isinstance(mod, nn.MaxPool2d):
            t = tnn.MaxPool2d(mod.kernel_size, mod.stride, mod.padding)
        elif isinstance(mod, nn.AvgPool2d):
            t = tnn.AvgPool2d(mod.kernel_size, mod.stride, mod.padding)
        elif isinstance(mod, nn.BatchNorm2d):
            t = tnn.BatchNorm2d(mod.num_features, eps=mod.eps, momentum=mod.momentum,
                                affine=mod.weight is not None).to(dtype)
            with torch.no_grad():
                t.running_mean.copy_(torch.from_numpy(np.asarray(mod.running_mean, np.float64)))
                t.running_var.copy_(torch.from_numpy(np.asarray(mod.running_var, np.float64)))
        elif isinstance(mod, nn.LocalResponseNorm):
            t = tnn.LocalResponseNorm(mod.size, alpha=mod.alpha, beta=mod.beta, k=mod.k)
        elif isinstance(mod, nn.Dropout):
            t = tnn.Dropout(mod.p)
        elif isinstance(mod, nn.Flatten):
            t = tnn.Flatten()
        else:
            raise ValueError(f"torch_twin: layer {name or '(root)'} ({type(mod).__name__}) has no PyTorch twin")
        t = t.to(dtype)
        for pname, p in mod._parameters.items():
            if p is not None:
                with torch.no_grad():
                    getattr(t, pname).copy_(torch.from_numpy(np.asarray(p.data, np.float64)))
        layers.append(t)

    convert(model, "")
    return tnn.Sequential(*layers)
