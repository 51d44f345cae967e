"""SGD with momentum, Nesterov and weight decay, exactly as torch.optim.SGD:
    g = grad + weight_decay * p
    buf = g (first step) | momentum * buf + (1 - dampening) * g
    g = g + momentum * buf (nesterov) | buf
    p -= lr * g
NumPy float arrays take the native in-place kernel (native/src/sgd_update.cpp, one pass); the
array-module code below is its reference and serves CuPy.
"""
from __future__ import annotations

import numpy as np

from .backend import array_module, to_numpy


def _native_ok(data, grad, buf):
    """C-contiguous float32/float64 NumPy arrays of one dtype and shape (buf may be None): native."""
    arrays = (data, grad) if buf is None else (data, grad, buf)
    return all(isinstance(a, np.ndarray) and a.flags.c_contiguous and a.dtype == data.dtype
               and a.shape == data.shape for a in arrays) and data.dtype in (np.float32, np.float64) \
        and data.flags.writeable and (buf is None or buf.flags.writeable)


class SGD:
    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, nesterov=False, dampening=0.0):
        self.params = list(params)
        if not self.params:
            raise ValueError("SGD got an empty parameter list")
        for name, v in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay),
                        ("dampening", dampening)):
            if not isinstance(v, (int, float, np.floating)) or isinstance(v, bool) or not v >= 0:
                raise ValueError(f"{name} must be a float >= 0, got {v!r}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov needs momentum > 0 and dampening == 0")
        self.lr, self.momentum, self.weight_decay = float(lr), float(momentum), float(weight_decay)
        self.nesterov, self.dampening = bool(nesterov), float(dampening)
        self.buffers = [None] * len(self.params)

    def step(self):
        for i, p in enumerate(self.params):
            g = p.grad
            if g is None:
                continue
            if _native_ok(p.data, g, self.buffers[i]):
                self._step_native(i, p)
            else:
                self.step_array(i, p)

    def step_array(self, i, p):
        """The array-module (NumPy or CuPy) update of parameter i, the native kernel's reference."""
        g = p.grad
        dt = p.data.dtype.type
        if self.weight_decay:
            g = g + dt(self.weight_decay) * p.data
        if self.momentum:
            buf = self.buffers[i]
            if buf is None:
                buf = g.copy()
                self.buffers[i] = buf
            else:
                buf *= dt(self.momentum)
                buf += dt(1.0 - self.dampening) * g
            g = g + dt(self.momentum) * buf if self.nesterov else buf
        p.data -= dt(self.lr) * g

    def _step_native(self, i, p):
        """sgd_update.cpp: the same update in one pass, in place (no temporaries)."""
        from .. import _native
        first = self.momentum != 0 and self.buffers[i] is None
        if first:
            self.buffers[i] = np.empty_like(p.data)
        _native.sgd_update(p.data.size, p.data, p.grad, self.buffers[i] if self.momentum else None, self.lr,
                           self.momentum, self.dampening, self.weight_decay, self.nesterov, first)

    def state_dict(self) -> dict:
        """Arrays of the momentum buffers (absent ones skipped) and the hyper-parameters."""
        arrays = {str(i): to_numpy(b).copy() for i, b in enumerate(self.buffers) if b is not None}
        meta = {"lr": self.lr, "momentum": self.momentum, "weight_decay": self.weight_decay,
                "nesterov": self.nesterov, "dampening": self.dampening}
        return {"buffers": arrays, "hyper": meta}

    def load_state_dict(self, state):
        for k, v in state["hyper"].items():
            setattr(self, k, v)
        self.buffers = [None] * len(self.params)
        for k, arr in state["buffers"].items():
            i = int(k)
            if not 0 <= i < len(self.params):
                raise ValueError(f"optimizer state has a buffer for parameter {i}, "
                                 f"but there are {len(self.params)} parameters")
            p = self.params[i].data
            if arr.shape != p.shape:
                raise ValueError(f"optimizer buffer {i} has shape {arr.shape}, parameter has {p.shape}")
            self.buffers[i] = array_module(p).asarray(arr, dtype=p.dtype).copy()
