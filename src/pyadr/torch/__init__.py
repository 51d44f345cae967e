"""PyTorch layers whose forward and backward run in pyadr (CPU, or CUDA via pyadr.gpu), with deep reuse on demand.

    import pyadr.torch as pt
    conv = pt.Conv2d(64, 64, 5, padding=2, reuse=pyadr.ReuseConfig(L=32, H=10))
    fc = pt.Linear(3136, 384)
    model = pt.convert(model, policy)     # swap the Conv2d layers (linear=True: and Linear) of a model
    pt.set_reuse(model, policy)           # change the reuse configs between steps
    sched = pt.ReuseScheduler(model, "adaptive", probes=..., total_steps=N)   # sched.step(loss) each step

`Conv2d` and `Linear` subclass torch.nn.Conv2d / torch.nn.Linear (same parameters, init and
state_dict keys), so they are drop-in. Their forward calls pyadr through the torch.library custom
ops of pyadr.torch._ops (pyadr::conv2d exact, pyadr::conv2d_reuse with reuse; Linear is the 1x1
case), which have fake kernels and autograd formulas: torch.compile(fullgraph=True),
torch.export and torch.func.grad trace them. The backward is pyadr's (with reuse: the exact
derivative of the reuse forward, clusters held fixed). `reuse` (a pyadr.ReuseConfig or None for
exact) may be changed at any time, e.g. by a coarse-to-fine schedule (a compiled model then
recompiles for the new config). `layer.last_stats` holds the pyadr.ReuseStats of the last reuse
forward (None after an exact one), also when the layer runs inside a compiled graph.

dtypes: float32/float64; float16/bfloat16 are computed in float32 and returned in the input's
dtype; under torch.autocast the layer casts its input and parameters to the autocast dtype like
torch.nn.Conv2d does. channels_last inputs give channels_last outputs. `reuse` is saved in the
state_dict's metadata as plain data (torch.load(weights_only=True) reads it; plain torch modules
load such a state_dict strictly). ONNX: an exact layer exports as a standard Conv/Gemm.
docs/torch.md has the details and commands; docs/torch-schedule.md the scheduler (pyadr.torch.schedule:
the pyadr.train schedules driving a plain PyTorch loop).

Modules: layers (Conv2d, Linear, conv2d, linear, convert, set_reuse, reuse_layers), _ops (the
custom ops), _runtime (device routing, dtypes, side tables), schedule (ReuseScheduler).

Limits: groups=1, padding_mode="zeros", numeric padding (or "valid"/"same" with stride 1); no
double backward; no vmap with reuse. torch is imported only by this package: `import pyadr`
never imports it.
"""
from __future__ import annotations

from .layers import Conv2d, Linear, conv2d, convert, linear, reuse_layers, set_reuse
from .schedule import ReuseScheduler

__all__ = ["Conv2d", "Linear", "conv2d", "linear", "convert", "set_reuse", "reuse_layers", "ReuseScheduler"]
