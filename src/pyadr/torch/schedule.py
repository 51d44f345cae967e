"""The reuse schedules of pyadr.train driving a plain PyTorch training loop.

    import pyadr.torch as pt
    model = pt.convert(model)                       # torch Conv2d/Linear -> pyadr's (exact)
    sched = pt.ReuseScheduler(model, "adaptive", probes=[(x0, y0)], total_steps=N, steps_per_epoch=S)
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(); loss.backward(); opt.step()
        sched.step(loss)                            # may change the layers' `reuse`

Strategies and their options are those of pyadr.train.reuse_schedule.ReuseSchedule (exact, fixed,
ladder, adaptive) and pyadr.train.layer_tuner.TunedSchedule (tuned): the very same objects run,
on an adapter that shows the torch model as an engine model. The pyadr layers are named conv1,
conv2, ..., fc1, ... in module order (as pyadr.train names them); by default every convolution
but the first reuses. The scheduler sets the layers' public `reuse` attribute only. Probe
batches (a few training batches: rc, loss gaps and the tuner's measurements) are (x, y) pairs
of tensors or arrays; y holds class indices. Every decision is an event dict (step, layer, from,
to, reason) in `sched.events`, also given to `log` when one is passed.
"""
from __future__ import annotations

import numpy as np
import torch

from .. import _api
from ..train.layer_tuner import schedule_class
from ..train.reuse_schedule import Rung, default_ladder, parse_ladder
from .layers import Conv2d, Linear

__all__ = ["ReuseScheduler"]


def _numpy(a):
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def _numeric_padding(m):
    if not isinstance(m.padding, str):
        return tuple(m.padding)
    if m.padding == "valid":
        return (0, 0)
    return tuple(d * (k - 1) // 2 for k, d in zip(m.kernel_size, m.dilation))


class _Layer:
    """A pyadr.torch layer as the schedules see an engine layer."""

    def __init__(self, module):
        self.module = module
        self.input_grad = True
        self.engine_seconds = 0.0
        if isinstance(module, Conv2d):
            self.in_channels, self.out_channels = module.in_channels, module.out_channels
            self.K = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
        else:
            self.out_features, self.K = module.out_features, module.in_features

    @property
    def reuse(self):
        return self.module.reuse

    @reuse.setter
    def reuse(self, value):
        self.module.reuse = value

    def plane_geometry(self):
        """pyadr.planes keywords of this layer's im2col rows (data-aware hash planes)."""
        m = self.module
        if isinstance(m, Conv2d):
            return dict(kernel_size=tuple(m.kernel_size), stride=tuple(m.stride), padding=_numeric_padding(m),
                        dilation=tuple(m.dilation))
        return dict(kernel_size=None)

    @property
    def last_rc(self):
        stats = self.module.last_stats
        return None if stats is None else float(stats.rc)

    def tuner_op(self):
        """Bias-free forward/backward of this layer on NumPy arrays (layer_tuner.layer_op)."""
        m = self.module
        w = _numpy(m.weight).astype(np.float32, copy=False)
        if isinstance(m, Conv2d):
            kw = dict(stride=tuple(m.stride), padding=_numeric_padding(m), dilation=tuple(m.dilation))

            def fwd(x, reuse):
                return _api.conv2d_forward(x, w, None, reuse=reuse, **kw)

            def bwd(dy, ctx):
                dx, dw, _ = _api.conv2d_backward(dy, ctx)
                return dx, dw
            return fwd, bwd

        def fwd_fc(x, reuse):
            return _api.linear_forward(x.reshape(len(x), -1), w, None, reuse=reuse)

        def bwd_fc(dy, ctx):
            dx, dw, _ = _api.linear_backward(dy.reshape(len(dy), -1), ctx)
            return dx, dw
        return fwd_fc, bwd_fc


class _Model:
    """A torch model as the schedules see an engine model: forward on NumPy, named layers."""

    def __init__(self, model):
        self.model = model
        self.layers, n_conv, n_fc = [], 0, 0
        for _, m in model.named_modules():
            if isinstance(m, Conv2d):
                n_conv += 1
                self.layers.append((f"conv{n_conv}", _Layer(m)))
            elif isinstance(m, Linear):
                n_fc += 1
                self.layers.append((f"fc{n_fc}", _Layer(m)))
        if not self.layers:
            raise ValueError("the model has no pyadr.torch Conv2d/Linear layers: convert it first "
                             "(pyadr.torch.convert(model))")

    def engine_layers(self):
        return list(self.layers)

    @property
    def training(self):
        return self.model.training

    def train(self, mode=True):
        self.model.train(mode)

    def eval(self):
        self.model.eval()

    def _param_dtype(self):
        return next(self.model.parameters()).dtype

    def forward(self, x):
        with torch.no_grad():
            return self.model(torch.as_tensor(x, dtype=self._param_dtype())).numpy()

    def capture_layer_io(self, layers, probe):
        """{name: (x, dY)} of `layers` in one training-mode forward + backward, exact everywhere;
        grads, buffers, reuse settings and the train/eval mode are restored."""
        model, by_module = self.model, {id(l.module): n for n, l in layers.items()}
        saved_reuse = [(l, l.reuse) for _, l in self.layers]
        grads = [(p, None if p.grad is None else p.grad.clone()) for p in model.parameters()]
        buffers = [(b, b.detach().clone()) for b in model.buffers()]
        was_training, got, handles = model.training, {}, []
        for _, l in self.layers:
            if id(l.module) in by_module:
                name = by_module[id(l.module)]
                handles.append(l.module.register_forward_hook(
                    lambda m, inp, out, name=name: got.__setitem__(name, [_numpy(inp[0]), None])))
                handles.append(l.module.register_full_backward_hook(
                    lambda m, gin, gout, name=name: got[name].__setitem__(1, _numpy(gout[0]))))
        try:
            for l, _ in saved_reuse:
                l.reuse = None
            model.train()
            x, y = probe
            out = model(torch.as_tensor(x, dtype=self._param_dtype()).requires_grad_(True))
            torch.nn.functional.cross_entropy(out, torch.as_tensor(y).long(), reduction="sum").backward()
        finally:
            for h in handles:
                h.remove()
            for l, r in saved_reuse:
                l.reuse = r
            with torch.no_grad():
                for p, g in grads:
                    p.grad = g
                for b, v in buffers:
                    b.copy_(v)
            model.train(was_training)
        return {n: (np.ascontiguousarray(v[0]), np.ascontiguousarray(v[1])) for n, v in got.items()}


class ReuseScheduler:
    """Calls the reuse schedule of `strategy` once per training step: `step(loss)` after the
    optimizer step. `options` are the schedule's (rungs, ladder, layers, exact_tail, plateau_window,
    plateau_eps, gap_delta, check_every, min_speedup, min_dwell, seed, exact, planes, planes_every; for "tuned":
    budget_start, budget_end, retune_every, repeats, timer). Rungs may be Rung objects or dicts;
    ladder: [(epoch, Rung | None)] or the dicts of pyadr train's config (default: the anchors')."""

    def __init__(self, model, strategy="adaptive", *, probes, total_steps, steps_per_epoch=None,
                 log=None, **options):
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
            raise ValueError(f"total_steps must be an int >= 1, got {total_steps!r}")
        if not probes:
            raise ValueError("probes must hold at least one (x, y) batch of training data")
        self.steps_per_epoch = int(steps_per_epoch or total_steps)
        self.total_steps, self.log = total_steps, log
        self.model = _Model(model)
        self.probes = [(_numpy(x).astype(np.float32, copy=False), _numpy(y).astype(np.int64)) for x, y in probes]
        if "rungs" in options and options["rungs"] is not None:
            options["rungs"] = [r if isinstance(r, Rung) else Rung.from_dict(r) for r in options["rungs"]]
        if strategy == "ladder":
            ladder = options.get("ladder")
            if ladder is None:
                options["ladder"] = default_ladder(total_steps / self.steps_per_epoch)
            elif ladder and isinstance(ladder[0], dict):
                options["ladder"] = parse_ladder(ladder)
        cls = schedule_class(strategy)
        self.schedule = cls(**options) if strategy == "tuned" else cls(strategy, **options)
        self.events, self.step_count = [], 0
        self._take(self.schedule.setup(self.model, self.probes, self.steps_per_epoch, total_steps))
        self._take(self.schedule.before_step(0, self.steps_per_epoch))

    def _take(self, events):
        for e in events:
            self.events.append(e)
            if self.log is not None:
                if e["kind"] == "planes":
                    self.log(f"[planes] step {e['step']}: {e['layer']}: {e['reason']}")
                else:
                    self.log(f"[reuse] step {e['step']}: {e['layer']}: {e['from']} -> {e['to']} ({e['reason']})")
        return events

    def step(self, loss):
        """After a training step with mini-batch loss `loss` (tensor or float); returns this
        step's events."""
        loss = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
        new = self._take(self.schedule.after_step(self.step_count, loss, self.model, self.probes))
        self.step_count += 1
        return new + self._take(self.schedule.before_step(self.step_count, self.steps_per_epoch))

    def labels(self):
        """{layer name: what it runs now ("exact" or the rung's label)}."""
        return self.schedule.labels()

    def state_dict(self):
        return {"step": self.step_count, "schedule": self.schedule.state_dict()}

    def load_state_dict(self, state):
        self.step_count = int(state["step"])
        self.schedule.load_state_dict(state["schedule"], self.model, self.probes)
