"""pyadr.torch's layers and functions (re-exported by pyadr.torch; see its docstring)."""
from __future__ import annotations

import torch

from .._checks import ReuseSetting, check_reuse
from .._config import ReuseConfig
from . import _ops
from . import _runtime as rt

__all__ = ["Conv2d", "Linear", "conv2d", "linear", "convert", "set_reuse", "reuse_layers"]

F = torch.nn.functional
_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_META_KEY = "pyadr_reuse"   # the state_dict metadata entry of a pyadr layer


def _check_input(name, x, w, b):
    """x, w, b of one call, after autocast: a float dtype pyadr computes, all three the same."""
    if x.dtype not in _DTYPES:
        raise TypeError(f"{name}: input must be float16, bfloat16, float32 or float64, got {x.dtype}")
    for arg, t in (("weight", w), ("bias", b)):
        if t is not None and t.dtype != x.dtype:
            raise TypeError(f"{name}: {arg} must have the input's dtype ({x.dtype}), got {t.dtype}; "
                            "convert the layer (.to(dtype)) or use torch.autocast")


def _autocast(x, w, b):
    """Under torch.autocast, like torch's convolution: input and parameters in the autocast dtype."""
    dev = x.device.type
    if dev in ("cpu", "cuda") and torch.is_autocast_enabled(dev):
        dt = torch.get_autocast_dtype(dev)
        return x.to(dt), w.to(dt), (None if b is None else b.to(dt))
    return x, w, b


def _conv(name, x, w, b, stride, padding, dilation, reuse, args=None, slot=-1):
    """One pyadr convolution (x 4-D): the exact op, the reuse op, or under ONNX export F.conv2d."""
    x, w, b = _autocast(x, w, b)
    _check_input(name, x, w, b)
    stride, padding, dilation = list(stride), list(padding), list(dilation)
    if reuse is None:
        if torch.onnx.is_in_onnx_export():
            return F.conv2d(x, w, b, stride, padding, dilation)   # the exact path is a standard Conv
        return _ops.exact_conv2d(x, w, b, stride, padding, dilation, slot)
    if torch.onnx.is_in_onnx_export():
        raise NotImplementedError(f"{name}: a layer with reuse cannot be exported to ONNX (no standard "
                                  "operator clusters rows); set its reuse to None before exporting")
    return _ops.reuse_conv2d(x, w, b, stride, padding, dilation, args or rt.reuse_args(reuse), slot)


def _linear(name, x, w, b, reuse, args=None, slot=-1):
    """x (*, in) -> (*, out): the 1x1 convolution of x.reshape(-1, in) (as pyadr.linear_forward)."""
    if torch.onnx.is_in_onnx_export() and reuse is None:
        x, w, b = _autocast(x, w, b)
        return F.linear(x, w, b)
    lead = x.shape[:-1]
    x4 = x.reshape(-1, x.shape[-1])[:, :, None, None]
    y = _conv(name, x4, w[:, :, None, None], b, (1, 1), (0, 0), (1, 1), reuse, args, slot)
    return y.reshape(*lead, w.shape[0])


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, reuse=None):
    """Functional form: like torch.nn.functional.conv2d (groups=1, x 4-D), computed by pyadr."""
    return _conv("pyadr.torch.conv2d", x, weight, bias, _pair(stride), _pair(padding), _pair(dilation),
                 check_reuse(reuse))


def linear(x, weight, bias=None, reuse=None):
    """Functional form: like torch.nn.functional.linear, computed by pyadr (x: (*, in))."""
    return _linear("pyadr.torch.linear", x, weight, bias, check_reuse(reuse))


class _LayerReuse(ReuseSetting):
    """A pyadr.torch layer's `reuse`: checked on assignment; its op arguments are kept beside it."""

    def __set__(self, obj, value):
        super().__set__(obj, value)
        obj._reuse_args = None if value is None else rt.reuse_args(value)


class _PyadrLayer:
    """What Conv2d and Linear share: reuse, last_stats, state_dict metadata, pickling."""

    reuse = _LayerReuse()

    def _pyadr_init(self, reuse):
        self.reuse = reuse
        self._stats_slot = rt.new_stats_slot(self)

    @property
    def last_stats(self):
        """pyadr.ReuseStats of the last reuse forward; None after an exact one (or none yet)."""
        return rt.stats_of(self._stats_slot)

    @last_stats.setter
    def last_stats(self, value):
        rt.record_stats(self._stats_slot, value)

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        meta = getattr(destination, "_metadata", None)
        if meta is not None:
            meta.setdefault(prefix[:-1], {})[_META_KEY] = rt.reuse_to_plain(self.reuse)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        if _META_KEY in local_metadata:     # absent in a torch.nn state_dict: reuse stays as it is
            try:
                self.reuse = rt.reuse_from_plain(local_metadata[_META_KEY])
            except (TypeError, ValueError) as exc:
                error_msgs.append(f"{prefix or 'layer'}: bad {_META_KEY} entry in the state_dict metadata: {exc}")

    def __getstate__(self):
        state = super().__getstate__().copy()
        state["_reuse"] = rt.reuse_to_plain(state.get("_reuse"))   # plain data, no ReuseConfig pickled
        state.pop("_reuse_args", None)
        state.pop("_stats_slot", None)
        return state

    def __setstate__(self, state):
        reuse = rt.reuse_from_plain(state.pop("_reuse", None))
        super().__setstate__(state)
        self._pyadr_init(reuse)


class Conv2d(_PyadrLayer, torch.nn.Conv2d):
    """torch.nn.Conv2d computed by pyadr; `reuse`: pyadr.ReuseConfig or None (exact)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, bias=True,
                 reuse=None, device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=1, bias=bias, padding_mode="zeros", device=device, dtype=dtype)
        self._pyadr_init(reuse)

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
        squeeze = x.dim() == 3
        if squeeze:
            x = x.unsqueeze(0)
        y = _conv("pyadr.torch.Conv2d", x, self.weight, self.bias, self.stride, self._numeric_padding(),
                  self.dilation, self.reuse, self._reuse_args, self._stats_slot)
        return y.squeeze(0) if squeeze else y

    def extra_repr(self):
        return super().extra_repr() + f", reuse={self.reuse!r}"


class Linear(_PyadrLayer, torch.nn.Linear):
    """torch.nn.Linear computed by pyadr; rows (samples) are clustered when `reuse` is set."""

    def __init__(self, in_features, out_features, bias=True, reuse=None, device=None, dtype=None):
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self._pyadr_init(reuse)

    def forward(self, x):
        return _linear("pyadr.torch.Linear", x, self.weight, self.bias, self.reuse, self._reuse_args,
                       self._stats_slot)

    def extra_repr(self):
        return super().extra_repr() + f", reuse={self.reuse!r}"


def _policy_value(policy, name, module):
    if callable(policy) and not isinstance(policy, ReuseConfig):
        return policy(name, module)
    return policy


def _convertible(m, linear):
    if isinstance(m, (Conv2d, Linear)):
        return False
    if type(m) is torch.nn.Conv2d:
        return m.groups == 1 and m.padding_mode == "zeros"
    return linear and type(m) is torch.nn.Linear


def _swap(m, reuse):
    cls = Conv2d if isinstance(m, torch.nn.Conv2d) else Linear
    new = cls.__new__(cls)
    torch.nn.Module.__init__(new)
    new.__dict__.update({k: v for k, v in m.__dict__.items()
                         if k not in ("_parameters", "_buffers", "_modules")})
    # Share the Parameter objects: optimizers built before the swap keep working.
    new._parameters = m._parameters
    new._buffers = m._buffers
    new._modules = m._modules
    new._pyadr_init(reuse)
    return new


def convert(model, policy=None, linear=False):
    """Replaces the torch.nn.Conv2d layers of `model` (and with linear=True its torch.nn.Linear
    layers) by pyadr's, in place.

    policy: a ReuseConfig (every layer), None (every layer, exact), or a callable
    (name, module) -> ReuseConfig | None | False, where False leaves that layer to PyTorch.
    Linear layers stay PyTorch's by default: oneDNN's GEMM is faster than pyadr's exact one and
    a fully connected layer has few rows to cluster (rows are samples). Parameters are shared,
    not copied. Conv2d layers with groups != 1 or a non-zero padding mode are left alone.
    `model` itself may be a Conv2d or a Linear (converted whatever `linear` says): the new
    layer is returned. Returns the model.
    """
    if _convertible(model, linear=True):
        reuse = _policy_value(policy, "", model)
        return model if reuse is False else _swap(model, check_reuse(reuse))
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if not _convertible(child, linear):
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
