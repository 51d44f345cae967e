"""Argument errors of the GPU path (pyadr.* on device arrays), on the `gpu_backend` fixture
("cuda", "emulated"): host and device arrays mixed in one call, dtype and shape mismatches checked
by pyadr.gpu's own code, dy of another shape, clusters of an exact call. The CPU path's errors are
tested in test_errors.py."""
import numpy as np
import pytest

import pyadr


def test_argument_errors(gpu_backend):
    be = gpu_backend
    x = be.asarray(np.zeros((1, 2, 4, 4), np.float32))
    w = be.asarray(np.zeros((3, 2, 3, 3), np.float32))
    with pytest.raises(TypeError, match="w must be a cupy.ndarray"):
        pyadr.conv2d_forward(x, np.zeros((3, 2, 3, 3), np.float32))          # host w, device x
    with pytest.raises(TypeError, match="x must be a cupy.ndarray"):
        pyadr.gpu.conv2d_forward(np.zeros((1, 2, 4, 4), np.float32), w)
    with pytest.raises(TypeError, match="w must have the dtype of x"):
        pyadr.conv2d_forward(x, be.asarray(np.zeros((3, 2, 3, 3), np.float64)))
    with pytest.raises(ValueError, match=r"w must have shape \(out_channels, 2, kh, kw\)"):
        pyadr.conv2d_forward(x, be.asarray(np.zeros((3, 5, 3, 3), np.float32)))
    with pytest.raises(ValueError, match="L must be <= K"):
        pyadr.conv2d_forward(x, w, reuse=pyadr.ReuseConfig(L=19, H=2))
    y, ctx = pyadr.conv2d_forward(x, w, padding=1)
    with pytest.raises(ValueError, match="dy must have the shape of the forward output"):
        pyadr.conv2d_backward(be.asarray(np.zeros((1, 3, 2, 2), np.float32)), ctx)
    with pytest.raises(ValueError, match="exact call"):
        ctx.cluster_ids()


def test_linear_argument_errors(gpu_backend):
    be = gpu_backend
    x = be.asarray(np.zeros((4, 6), np.float64))
    with pytest.raises(ValueError, match=r"w must have shape \(out_features, 6\)"):
        pyadr.linear_forward(x, be.asarray(np.zeros((3, 5), np.float64)))
    y, ctx = pyadr.linear_forward(x, be.asarray(np.zeros((3, 6), np.float64)))
    with pytest.raises(TypeError, match="dy must have the dtype"):
        pyadr.linear_backward(be.asarray(np.zeros((4, 3), np.float32)), ctx)
    with pytest.raises(ValueError, match="dy must have the shape"):
        pyadr.linear_backward(be.asarray(np.zeros((4, 2), np.float64)), ctx)
