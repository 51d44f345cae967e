"""pyadr: Adaptive Deep Reuse for convolutional networks, framework-free.

Layers (a module imports only from its own layer or those below; tests/test_layering.py checks it):
  5 pyadr.cli, pyadr.__main__        the command lines (`pyadr train | bench | profile | export ...`)
  4 pyadr.train, pyadr.torch, pyadr.jax, pyadr.export   trainer; PyTorch layers; JAX functions;
                                     edge weights writer
  3 pyadr.nn                         layers, models, optimizers on NumPy (or CuPy) arrays
  2 pyadr (this module), the checked array API: _api (conv2d_forward/backward, linear_...),
    _checks (argument checks and layout codes), _config (ReuseConfig), _context, _interop,
    _blas, _onednn (exact conv provider), _info, _memory, reference (slow NumPy reference of every
    kernel), planes (data-aware hash planes: principal directions of a layer's sub-vectors), gpu
    (CuPy kernels)
  1 pyadr._native                    Cython binding over the C++17 core in native/ (layer 0)

This module, the facade, imports only layer 2 (and 1 through it). `import pyadr` is cheap: it
neither loads SciPy nor CuPy (nor torch, nor JAX) nor compiles anything.
"""
from ._api import (conv2d_backward, conv2d_forward, empty_cache, get_num_threads, linear_backward,
                   linear_forward, set_num_threads)
from ._config import ReuseConfig
from ._context import Conv2dContext, ReuseStats
from ._info import __version__, set_gemm_provider, show_config
from ._onednn import get_conv_provider, set_conv_provider

__all__ = [
    "ReuseConfig", "ReuseStats", "Conv2dContext", "conv2d_forward", "conv2d_backward",
    "linear_forward", "linear_backward", "set_num_threads", "get_num_threads", "show_config",
    "set_gemm_provider", "set_conv_provider", "get_conv_provider", "empty_cache", "__version__",
]
