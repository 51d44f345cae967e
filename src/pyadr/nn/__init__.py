"""pyadr.nn — layers, models' building blocks and optimisers on NumPy (or CuPy) arrays.

Architecture: `functional` is the single door to the engine (pyadr.conv2d_forward/backward,
pyadr.linear_forward/backward); `layers` wraps it in Conv2d/Linear modules whose `reuse`
attribute (a ReuseConfig or None) can change between steps, plus ReLU, pooling (`pooling`:
native kernels for NumPy float arrays, vectorised array-module kernels for CuPy), Dropout and
Flatten; `normalization` has BatchNorm2d and LocalResponseNorm (native on NumPy, likewise); `module` the Module/Parameter/Sequential base; `loss`, `optim` and
`lr_schedule` the training pieces. Everything is NCHW float32, backward is explicit
(`module.backward(dy) -> dx`, gradients overwrite `.grad`), and no framework is imported.

Layer 3: imports the array API below it (pyadr, pyadr._checks, the binding pyadr._native for
pooling/normalisation kernels) and never pyadr.train, pyadr.torch, pyadr.export or pyadr.cli.
"""
from .backend import array_module, to_numpy
from .layers import AvgPool2d, Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU
from .loss import cross_entropy_loss, softmax_cross_entropy
from .lr_schedule import ConstantLR, CosineLR, StepLR, make_lr_schedule
from .module import Module, Parameter, Sequential
from .normalization import BatchNorm2d, LocalResponseNorm
from .optim import SGD

__all__ = ["Module", "Parameter", "Sequential", "Conv2d", "Linear", "ReLU", "MaxPool2d",
           "AvgPool2d", "BatchNorm2d", "LocalResponseNorm", "Dropout", "Flatten", "SGD",
           "ConstantLR", "StepLR", "CosineLR", "make_lr_schedule", "softmax_cross_entropy",
           "cross_entropy_loss", "array_module", "to_numpy"]
