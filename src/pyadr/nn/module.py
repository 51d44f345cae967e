"""Module base: parameters with gradients, buffers, children, train/eval mode, state_dict.

Every module implements `forward(x)` (caching what its backward needs when training) and
`backward(dy) -> dx`, which *overwrites* (does not accumulate) the `.grad` of its parameters:
each parameter is used once per step, so there is nothing to zero between steps.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from .backend import array_module, to_numpy


class Parameter:
    """A trainable array and its gradient (None until the first backward)."""

    __slots__ = ("data", "grad")

    def __init__(self, data):
        self.data = data
        self.grad = None

    @property
    def shape(self):
        return self.data.shape

    def __repr__(self):
        return f"Parameter(shape={tuple(self.data.shape)}, dtype={self.data.dtype})"


class Module:
    """Base class. Subclasses assign Parameters, buffers (via `register_buffer`) and child
    Modules as attributes; registration follows assignment order, as in PyTorch."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        elif name in self._buffers:
            self._buffers[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name, value):
        """A non-trainable array that belongs to the state (e.g. BatchNorm running stats)."""
        self._buffers[name] = value
        object.__setattr__(self, name, value)

    # -- computation ---------------------------------------------------------------------------
    def forward(self, x):
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, dy):
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def __call__(self, x):
        return self.forward(x)

    def output_shape(self, input_shape):
        """Shape of one sample's output for one sample's input shape (no batch axis)."""
        return tuple(input_shape)

    # -- traversal -----------------------------------------------------------------------------
    def named_modules(self, prefix=""):
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def children(self):
        return list(self._modules.values())

    def named_parameters(self):
        for mod_name, mod in self.named_modules():
            for p_name, p in mod._parameters.items():
                yield (f"{mod_name}.{p_name}" if mod_name else p_name), p

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def named_buffers(self):
        for mod_name, mod in self.named_modules():
            for b_name in mod._buffers:
                yield (f"{mod_name}.{b_name}" if mod_name else b_name), mod, b_name

    # -- modes ---------------------------------------------------------------------------------
    def train(self, mode: bool = True):
        for _, mod in self.named_modules():
            object.__setattr__(mod, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Name -> NumPy copy of every parameter and buffer."""
        out = OrderedDict()
        for name, p in self.named_parameters():
            out[name] = to_numpy(p.data).copy()
        for name, mod, b_name in self.named_buffers():
            out[name] = to_numpy(mod._buffers[b_name]).copy()
        return out

    def load_state_dict(self, state, strict: bool = True):
        """Copy arrays into the parameters/buffers (keeping their array module and dtype)."""
        params = dict(self.named_parameters())
        buffers = {name: (mod, b) for name, mod, b in self.named_buffers()}
        expected = set(params) | set(buffers)
        if strict:
            missing = sorted(expected - set(state))
            unexpected = sorted(set(state) - expected)
            if missing or unexpected:
                raise ValueError(f"state_dict mismatch: missing {missing}, unexpected {unexpected}")
        for name, value in state.items():
            if name in params:
                p = params[name]
                xp = array_module(p.data)
                value = np.asarray(value)
                if value.shape != p.data.shape:
                    raise ValueError(f"state_dict[{name!r}] has shape {value.shape}, "
                                     f"expected {p.data.shape}")
                p.data = xp.asarray(value, dtype=p.data.dtype).copy()
            elif name in buffers:
                mod, b = buffers[name]
                old = mod._buffers[b]
                xp = array_module(old)
                mod.register_buffer(b, xp.asarray(np.asarray(value), dtype=old.dtype).copy())

    def to(self, xp):
        """Move parameters and buffers to array module `xp` (numpy or cupy)."""
        for _, p in self.named_parameters():
            p.data = xp.asarray(p.data)
            p.grad = None
        for _, mod, b in self.named_buffers():
            mod.register_buffer(b, xp.asarray(mod._buffers[b]))
        return self

    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, child in self._modules.items():
            child_repr = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child_repr}")
        return "\n".join(lines) + (")" if len(lines) == 1 else "\n)")


class Sequential(Module):
    """Children applied in order; backward runs them in reverse."""

    def __init__(self, *modules):
        super().__init__()
        for i, mod in enumerate(modules):
            if not isinstance(mod, Module):
                raise TypeError(f"Sequential argument {i} must be a Module, got {type(mod).__name__}")
            setattr(self, str(i), mod)

    def __iter__(self):
        return iter(self._modules.values())

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def forward(self, x):
        """Children in order, with ReLU fusion planned here for this call only: a ReLU after a
        layer that can rectify its own output (BatchNorm2d: `fuses_relu_after`) or before one that
        can rectify its input (MaxPool2d: `fuses_relu_before`) passes through, and that neighbour
        applies max(., 0) and the mask. Every child's forward/backward is still called, once."""
        mods = list(self._modules.values())
        for i, mod in enumerate(mods):
            nxt = mods[i + 1] if i + 1 < len(mods) else None
            if getattr(mod, "is_relu", False):
                if not mod.fused and getattr(nxt, "fuses_relu_before", False) and nxt.can_fuse_relu(x):
                    mod.fused = nxt.relu_input = True
            elif getattr(mod, "fuses_relu_after", False) and getattr(nxt, "is_relu", False):
                mod.relu_output = True
            x = mod.forward(x)
            if getattr(mod, "relu_applied", False) and getattr(nxt, "is_relu", False):
                nxt.fused = True
        return x

    def backward(self, dy):
        for mod in reversed(self._modules.values()):
            dy = mod.backward(dy)
        return dy

    def output_shape(self, input_shape):
        shape = tuple(input_shape)
        for mod in self._modules.values():
            shape = mod.output_shape(shape)
        return shape
