"""Compute layers: Conv2d and Linear (exact or deep reuse per layer), ReLU, pooling, Dropout,
Flatten. Conv2d/Linear call the engine only through `functional`."""
from __future__ import annotations

import time

import numpy as np

from .._checks import ReuseSetting
from . import functional as F
from . import pooling
from .backend import array_module, synchronize
from .init import default_uniform
from .module import Module, Parameter


def _pair(value, name):
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        a, b = value
    else:
        a = b = value
    for v in (a, b):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    return int(a), int(b)


class _EngineLayer(Module):
    """Shared bookkeeping of Conv2d and Linear: the `reuse` setting (a ReuseConfig or None,
    settable between steps), the last call's remaining ratio, and the seconds spent in the
    engine while training (`engine_seconds`, forward + backward; reset by the trainer)."""

    reuse = ReuseSetting()      # a ReuseConfig or None, checked on every assignment

    def __init__(self, reuse):
        super().__init__()
        self.reuse = reuse
        self.last_rc = None
        self.engine_seconds = 0.0
        self._ctx = None

    def _timed(self, fn, *args, **kwargs):
        if not self.training:
            return fn(*args, **kwargs)
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        synchronize(array_module(args[0]))
        self.engine_seconds += time.perf_counter() - start
        return out

    def _grads(self, dw, db):
        self.weight.grad = dw
        if self.bias is not None:
            self.bias.grad = db


class Conv2d(_EngineLayer):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 bias=True, reuse=None, rng=None, dtype=np.float32):
        super().__init__(reuse)
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.padding = _pair(padding, "padding")
        self.dilation = _pair(dilation, "dilation")
        if min(self.kernel_size + self.stride + self.dilation) < 1 or min(self.padding) < 0:
            raise ValueError("kernel_size, stride, dilation must be >= 1 and padding >= 0")
        rng = np.random.default_rng() if rng is None else rng
        kh, kw = self.kernel_size
        fan_in = self.in_channels * kh * kw
        self.weight = Parameter(default_uniform(rng, (out_channels, in_channels, kh, kw), fan_in, dtype))
        self.bias = Parameter(default_uniform(rng, (out_channels,), fan_in, dtype)) if bias else None
        # False: backward skips dx and returns None (a network's first layer: its input needs none)
        self.input_grad = True

    @property
    def K(self):
        """Row length of the im2col matrix (C * kh * kw)."""
        return self.in_channels * self.kernel_size[0] * self.kernel_size[1]

    def forward(self, x):
        b = self.bias.data if self.bias is not None else None
        y, ctx = self._timed(F.conv2d_forward, x, self.weight.data, b, stride=self.stride,
                             padding=self.padding, dilation=self.dilation, reuse=self._reuse)
        self.last_rc = F.rc_of(ctx) if self._reuse is not None else None
        self._ctx = ctx if self.training else None
        return y

    def backward(self, dy):
        if self._ctx is None:
            raise RuntimeError("Conv2d.backward needs a forward in training mode first")
        dx, dw, db = self._timed(F.conv2d_backward, dy, self._ctx, input_grad=self.input_grad)
        self._ctx = None
        self._grads(dw, db)
        return dx

    def output_shape(self, input_shape):
        C, H, W = input_shape
        if C != self.in_channels:
            raise ValueError(f"Conv2d expects {self.in_channels} input channels, got {C}")
        out = []
        for size, k, s, p, d in zip((H, W), self.kernel_size, self.stride, self.padding, self.dilation):
            out.append((size + 2 * p - d * (k - 1) - 1) // s + 1)
        if min(out) < 1:
            raise ValueError(f"Conv2d output would be empty for input {input_shape}")
        return (self.out_channels, out[0], out[1])

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, reuse={self._reuse!r}")


class Linear(_EngineLayer):
    def __init__(self, in_features, out_features, bias=True, reuse=None, rng=None, dtype=np.float32):
        super().__init__(reuse)
        for name, v in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        rng = np.random.default_rng() if rng is None else rng
        self.weight = Parameter(default_uniform(rng, (out_features, in_features), in_features, dtype))
        self.bias = Parameter(default_uniform(rng, (out_features,), in_features, dtype)) if bias else None

    @property
    def K(self):
        return self.in_features

    def forward(self, x):
        b = self.bias.data if self.bias is not None else None
        y, ctx = self._timed(F.linear_forward, x, self.weight.data, b, reuse=self._reuse)
        self.last_rc = F.rc_of(ctx) if self._reuse is not None else None
        self._ctx = ctx if self.training else None
        return y

    def backward(self, dy):
        if self._ctx is None:
            raise RuntimeError("Linear.backward needs a forward in training mode first")
        dx, dw, db = self._timed(F.linear_backward, dy, self._ctx)
        self._ctx = None
        self._grads(dw, db)
        return dx

    def output_shape(self, input_shape):
        if tuple(input_shape) != (self.in_features,):
            raise ValueError(f"Linear expects input shape ({self.in_features},), got {tuple(input_shape)}")
        return (self.out_features,)

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}, reuse={self._reuse!r}"


def _native_elementwise(*arrays):
    """True when every array is a C-contiguous float32/float64 NumPy array of one dtype and shape."""
    a0 = arrays[0]
    return all(isinstance(a, np.ndarray) and a.flags.c_contiguous and a.dtype == a0.dtype
               and a.shape == a0.shape for a in arrays) and a0.dtype in (np.float32, np.float64)


class ReLU(Module):
    """max(x, 0); the backward passes dy where the output is > 0 (native kernel for NumPy float
    arrays, one pass each way; array-module code otherwise).

    Fusion (planned by Sequential for one call, see Sequential.forward): when its producer has
    already rectified x (BatchNorm2d) or its consumer will (MaxPool2d), `fused` is set and forward
    and backward pass their argument through untouched; the neighbour applies max(., 0) and its
    mask, saving a full read and write of the activation each way."""

    is_relu = True
    _y = None       # the training forward's output, kept for the backward
    fused = False   # set by Sequential for the next forward only
    _passed = False  # the last forward passed through (a fused one): so does its backward

    def forward(self, x):
        self._passed, self.fused = self.fused, False
        if self._passed:
            self._y = None
            return x
        if _native_elementwise(x):
            from .. import _native
            y = np.empty_like(x)
            _native.relu_forward(0 if x.dtype == np.float32 else 1, x.size, x, y)
        else:
            y = array_module(x).maximum(x, x.dtype.type(0))
        self._y = y if self.training else None
        return y

    def backward(self, dy):
        if self._passed:
            return dy
        y = self._y
        if y is None:
            raise RuntimeError("ReLU.backward needs a forward in training mode first")
        if _native_elementwise(y, dy):
            from .. import _native
            dx = np.empty_like(dy)
            _native.relu_backward(0 if dy.dtype == np.float32 else 1, dy.size, y, dy, dx)
            return dx
        return array_module(dy).where(y > 0, dy, dy.dtype.type(0))


class _Pool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride if stride is not None else kernel_size, "stride")
        self.padding = _pair(padding, "padding")
        if min(self.kernel_size + self.stride) < 1 or min(self.padding) < 0:
            raise ValueError("pool kernel_size and stride must be >= 1, padding >= 0")
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"padding must be at most half the kernel size, got padding="
                             f"{self.padding} for kernel_size={self.kernel_size}")

    def output_shape(self, input_shape):
        C, H, W = input_shape
        OH = pooling.pool_output_size(H, self.kernel_size[0], self.stride[0], self.padding[0])
        OW = pooling.pool_output_size(W, self.kernel_size[1], self.stride[1], self.padding[1])
        if OH < 1 or OW < 1:
            raise ValueError(f"{type(self).__name__} output would be empty for input {input_shape}")
        return (C, OH, OW)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """Max-pooling. With `relu_input` set (by Sequential, for the next forward only, when the
    ReLU before it passes through) it computes maxpool(relu(x)) as relu(maxpool(x)) (equal:
    max commutes with a monotone map) on the pooled values, a quarter of the activation, and its
    backward masks dy with pooled > 0 before the scatter (the unfused ReLU's mask at the argmax)."""

    fuses_relu_before = True
    relu_input = False

    def can_fuse_relu(self, x):
        return pooling.native_ok(x)

    def forward(self, x):
        relu, self.relu_input = self.relu_input, False
        y, cache = pooling.maxpool2d_forward(x, self.kernel_size, self.stride, self.padding,
                                             track=self.training)
        if relu:
            from .. import _native
            r = np.empty_like(y)
            _native.relu_forward(0 if y.dtype == np.float32 else 1, y.size, y, r)
            y = r
        self._cache = cache
        self._relu_y = y if relu and self.training else None
        return y

    def backward(self, dy):
        if self._relu_y is not None:
            from .. import _native
            y = self._relu_y
            dy = np.ascontiguousarray(dy, dtype=y.dtype)
            masked = np.empty_like(y)
            _native.relu_backward(0 if y.dtype == np.float32 else 1, y.size, y, dy, masked)
            dy = masked
        return pooling.maxpool2d_backward(dy, self._cache)


class AvgPool2d(_Pool2d):
    def forward(self, x):
        y, cache = pooling.avgpool2d_forward(x, self.kernel_size, self.stride, self.padding)
        self._cache = cache
        return y

    def backward(self, dy):
        return pooling.avgpool2d_backward(dy, self._cache)


class Dropout(Module):
    """Zeroes each element with probability p while training (scaling the rest by 1/(1-p)).
    The mask comes from `self.rng` (a NumPy Generator) that the trainer reseeds every step."""

    def __init__(self, p=0.5, rng=None):
        super().__init__()
        p = float(p)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout p must be in [0, 1), got {p}")
        self.p = p
        self.rng = np.random.default_rng() if rng is None else rng

    def forward(self, x):
        if not self.training or self.p == 0.0:
            self._mask = None
            return x
        xp = array_module(x)
        keep = self.rng.random(x.shape, dtype=np.float32) >= self.p
        self._mask = xp.asarray(keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - self.p)))
        return x * self._mask

    def backward(self, dy):
        return dy if self._mask is None else dy * self._mask

    def extra_repr(self):
        return f"p={self.p}"


class Flatten(Module):
    """(B, C, H, W) -> (B, C*H*W) in C, H, W order (PyTorch's)."""

    def forward(self, x):
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy):
        return dy.reshape(self._shape)

    def output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)
