"""PyTorch layers whose forward and backward run in pyadr (CPU), with deep reuse on demand.

    import pyadr.torch as pt
    conv = pt.Conv2d(64, 64, 5, padding=2, reuse=pyadr.ReuseConfig(L=32, H=10))
    fc = pt.Linear(3136, 384)
    model = pt.convert(model, policy)     # swap the Conv2d/Linear layers of an existing model
    pt.set_reuse(model, policy)           # change the reuse configs between steps

`Conv2d` and `Linear` subclass torch.nn.Conv2d / torch.nn.Linear (same parameters, init and
state_dict), so they are drop-in; their forward calls pyadr through a torch.autograd.Function
whose backward is pyadr's (with reuse: the exact derivative of the reuse forward, clusters held
fixed). `reuse` (a pyadr.ReuseConfig or None for exact) may be changed at any time, e.g. by a
coarse-to-fine schedule in the training loop. `layer.last_stats` holds the pyadr.ReuseStats of
the last reuse forward (None after an exact one).

Limits: CPU tensors, float32/float64, groups=1, padding_mode="zeros", numeric padding (or
"valid"/"same" with stride 1). torch is imported only by this module: `import pyadr` never
imports it.
"""
from __future__ import annotations

import numpy as np
import torch

from . import _api
from ._checks import ReuseSetting, check_reuse
from ._config import ReuseConfig

__all__ = ["Conv2d", "Linear", "convert", "set_reuse", "reuse_layers"]


def _np(t):
    return t.detach().numpy() if t is not None else None


def _check_input(x, layer):
    if x.device.type != "cpu":
        raise TypeError(f"{layer}: pyadr runs on CPU only for now, got an input on {x.device}")
    if x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{layer}: input must be float32 or float64, got {x.dtype}")


def _to_torch(a):
    return None if a is None else torch.from_numpy(np.ascontiguousarray(a))


def _forward_done(ctx, y, pctx, b, owner):
    """Shared end of the autograd forwards: keep pyadr's context, report its stats, y as torch."""
    ctx.pctx = pctx
    ctx.has_bias = b is not None
    if owner is not None:
        owner.last_stats = pctx.stats
    return _to_torch(y)


def _grads(ctx, dx, dw, db, n_extra):
    """(dx, dw, db, None * n_extra) for the inputs that need a gradient."""
    g = ctx.needs_input_grad
    return (_to_torch(dx) if g[0] else None, _to_torch(dw) if g[1] else None,
            _to_torch(db) if ctx.has_bias and g[2] else None) + (None,) * n_extra


class _Conv2dFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b, stride, padding, dilation, reuse, owner):
        y, pctx = _api.conv2d_forward(_np(x.contiguous()), _np(w.contiguous()), _np(b), stride=stride,
                                      padding=padding, dilation=dilation, reuse=reuse)
        return _forward_done(ctx, y, pctx, b, owner)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy):
        dx, dw, db = _api.conv2d_backward(_np(dy.contiguous()), ctx.pctx,
                                          input_grad=bool(ctx.needs_input_grad[0]))
        return _grads(ctx, dx, dw, db, 5)


class _LinearFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b, reuse, owner):
        y, pctx = _api.linear_forward(_np(x.contiguous()), _np(w.contiguous()), _np(b), reuse=reuse)
        return _forward_done(ctx, y, pctx, b, owner)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy):
        dx, dw, db = _api.linear_backward(_np(dy.contiguous()), ctx.pctx)
        return _grads(ctx, dx, dw, db, 2)


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, reuse=None):
    """Functional form: like torch.nn.functional.conv2d (groups=1), computed by pyadr."""
    _check_input(x, "pyadr.torch.conv2d")
    return _Conv2dFunction.apply(x, weight, bias, stride, padding, dilation, reuse, None)


def linear(x, weight, bias=None, reuse=None):
    """Functional form: like torch.nn.functional.linear, computed by pyadr (x: (*, in))."""
    _check_input(x, "pyadr.torch.linear")
    lead = x.shape[:-1]
    y = _LinearFunction.apply(x.reshape(-1, x.shape[-1]), weight, bias, reuse, None)
    return y.reshape(*lead, weight.shape[0])


class Conv2d(torch.nn.Conv2d):
    """torch.nn.Conv2d computed by pyadr; `reuse`: pyadr.ReuseConfig or None (exact)."""

    reuse = ReuseSetting()

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, bias=True,
                 reuse=None, device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=1, bias=bias, padding_mode="zeros", device=device, dtype=dtype)
        self.reuse = reuse
        self.last_stats = None

    def _numeric_padding(self):
        p = self.padding
        if isinstance(p, str):
            if p == "valid":
                return (0, 0)
            # "same" (stride 1, checked by torch): total pad d*(k-1), needs to be even here
            pads = []
            for k, d in zip(self.kernel_size, self.dilation):
                total = d * (k - 1)
                if total % 2:
                    raise ValueError("pyadr.torch.Conv2d: padding='same' needs an odd effective kernel size")
                pads.append(total // 2)
            return tuple(pads)
        return tuple(p)

    def forward(self, x):
        _check_input(x, "pyadr.torch.Conv2d")
        squeeze = x.dim() == 3
        if squeeze:
            x = x.unsqueeze(0)
        if self.reuse is None:
            self.last_stats = None
        y = _Conv2dFunction.apply(x, self.weight, self.bias, tuple(self.stride), self._numeric_padding(),
                                  tuple(self.dilation), self.reuse, self)
        return y.squeeze(0) if squeeze else y

    def extra_repr(self):
        return super().extra_repr() + f", reuse={self.reuse!r}"


class Linear(torch.nn.Linear):
    """torch.nn.Linear computed by pyadr; rows (samples) are clustered when `reuse` is set."""

    reuse = ReuseSetting()

    def __init__(self, in_features, out_features, bias=True, reuse=None, device=None, dtype=None):
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.reuse = reuse
        self.last_stats = None

    def forward(self, x):
        _check_input(x, "pyadr.torch.Linear")
        if self.reuse is None:
            self.last_stats = None
        lead = x.shape[:-1]
        y = _LinearFunction.apply(x.reshape(-1, self.in_features), self.weight, self.bias, self.reuse, self)
        return y.reshape(*lead, self.out_features)

    def extra_repr(self):
        return super().extra_repr() + f", reuse={self.reuse!r}"


def _policy_value(policy, name, module):
    if callable(policy) and not isinstance(policy, ReuseConfig):
        return policy(name, module)
    return policy


def _convertible(m):
    if isinstance(m, (Conv2d, Linear)):
        return False
    if type(m) is torch.nn.Conv2d:
        return m.groups == 1 and m.padding_mode == "zeros"
    return type(m) is torch.nn.Linear


def _swap(m, reuse):
    if isinstance(m, torch.nn.Conv2d):
        new = Conv2d.__new__(Conv2d)
    else:
        new = Linear.__new__(Linear)
    torch.nn.Module.__init__(new)
    new.__dict__.update({k: v for k, v in m.__dict__.items()
                         if k not in ("_parameters", "_buffers", "_modules")})
    # Share the Parameter objects: optimizers built before the swap keep working.
    new._parameters = m._parameters
    new._buffers = m._buffers
    new._modules = m._modules
    new.reuse = reuse
    new.last_stats = None
    return new


def convert(model, policy=None):
    """Replaces the torch.nn.Conv2d / torch.nn.Linear layers of `model` by pyadr's, in place.

    policy: a ReuseConfig (every layer), None (every layer, exact), or a callable
    (name, module) -> ReuseConfig | None | False, where False leaves that layer to PyTorch.
    Parameters are shared, not copied. Conv2d layers with groups != 1 or a non-zero padding
    mode are left alone. `model` itself may be a Conv2d/Linear: the new layer is returned.
    Returns the model.
    """
    if _convertible(model):
        reuse = _policy_value(policy, "", model)
        return model if reuse is False else _swap(model, check_reuse(reuse))
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if not _convertible(child):
                continue
            full = f"{name}.{child_name}" if name else child_name
            reuse = _policy_value(policy, full, child)
            if reuse is False:
                continue
            setattr(module, child_name, _swap(child, check_reuse(reuse)))
    return model


def reuse_layers(model):
    """[(name, layer)] of the pyadr layers in `model`."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (Conv2d, Linear))]


def set_reuse(model, policy):
    """Sets `reuse` on every pyadr layer of `model` (policy as in convert; False: leave as is)."""
    for name, m in reuse_layers(model):
        reuse = _policy_value(policy, name, m)
        if reuse is not False:
            m.reuse = reuse
    return model
