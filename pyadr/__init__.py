"""pyadr: Adaptive Deep Reuse for convolutional networks, framework-free.

Layers (dependencies point down):
  pyadr.train / pyadr.cli   standalone trainer
  pyadr.nn                  layers, models, optimizers on NumPy arrays
  pyadr (this module)       conv2d_forward/backward, linear_forward/backward, ReuseConfig
  pyadr._native             Cython binding over the C++17 core in native/
  pyadr.reference           slow NumPy reference of every kernel

`import pyadr` is cheap: it neither loads SciPy nor CuPy nor compiles anything.
"""
from ._api import (conv2d_backward, conv2d_forward, empty_cache, get_num_threads, linear_backward,
                   linear_forward, set_num_threads)
from ._config import ReuseConfig
from ._context import Conv2dContext, ReuseStats
from ._info import __version__, set_gemm_provider, show_config

__all__ = [
    "ReuseConfig", "ReuseStats", "Conv2dContext", "conv2d_forward", "conv2d_backward",
    "linear_forward", "linear_backward", "set_num_threads", "get_num_threads", "show_config",
    "set_gemm_provider", "empty_cache", "__version__",
]
