"""BatchNorm2d and LocalResponseNorm with PyTorch's semantics, NCHW."""
from __future__ import annotations

import numpy as np

from .backend import array_module
from .module import Module, Parameter


class BatchNorm2d(Module):
    """Per-channel batch normalisation. Training normalises with the biased batch variance and
    updates running_mean/running_var (unbiased) with `momentum`; eval uses the running stats."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, dtype=np.float32):
        super().__init__()
        if isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)) \
                or num_features < 1:
            raise ValueError(f"num_features must be a positive int, got {num_features!r}")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps!r}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), float(momentum)
        self.weight = Parameter(np.ones(num_features, dtype=dtype)) if affine else None
        self.bias = Parameter(np.zeros(num_features, dtype=dtype)) if affine else None
        self.register_buffer("running_mean", np.zeros(num_features, dtype=dtype))
        self.register_buffer("running_var", np.ones(num_features, dtype=dtype))

    def _native_ok(self, x):
        """NumPy float32/float64 input with parameters and buffers of its dtype: the native kernel."""
        arrays = [self.running_mean, self.running_var]
        if self.weight is not None:
            arrays += [self.weight.data, self.bias.data]
        return isinstance(x, np.ndarray) and x.dtype in (np.float32, np.float64) and x.size > 0 \
            and all(isinstance(a, np.ndarray) and a.dtype == x.dtype for a in arrays)

    # Fusion with a following ReLU (planned by Sequential for one forward): `relu_output` asks for
    # max(y, 0); `relu_applied` says whether this forward did it (native path only), and the
    # backward then masks dy with y > 0 inside the kernel.
    fuses_relu_after = True
    relu_output = False
    relu_applied = False

    def forward(self, x):
        relu, self.relu_output = self.relu_output, False
        self.relu_applied = False
        if x.ndim != 4 or x.shape[1] != self.num_features:
            raise ValueError(f"BatchNorm2d expects (B, {self.num_features}, H, W), got {x.shape}")
        if self._native_ok(x):
            self.relu_applied = relu
            return self._forward_native(x, relu)
        return self.forward_vectorised(x)

    def _forward_native(self, x, relu=False):
        """batch_norm.cpp: the same arithmetic as forward_vectorised in one read of x and one write
        of y; the backward keeps x and the per-channel mean and 1/std, not xhat."""
        from .. import _native
        x = np.ascontiguousarray(x)
        B, C, H, W = x.shape
        if self.training:
            mean, var = np.empty(C, np.float64), np.empty(C, np.float64)
        else:
            mean, var = self.running_mean.astype(np.float64), self.running_var.astype(np.float64)
        mean_t, inv_std, y = np.empty(C, x.dtype), np.empty(C, x.dtype), np.empty_like(x)
        gamma = np.ascontiguousarray(self.weight.data) if self.weight is not None else None
        beta = np.ascontiguousarray(self.bias.data) if self.bias is not None else None
        _native.batch_norm_forward(B, C, H * W, x, gamma, beta, self.eps, self.training, mean, var,
                                   mean_t, inv_std, relu, y)
        if self.training:
            self._update_running(mean, var, B * H * W, x.dtype)
            self._cache = ("native", x, mean_t, inv_std, gamma, y if relu else None)
        else:
            self._cache = None
        return y

    def _update_running(self, mean, var, n, dtype):
        m = self.momentum
        self.running_mean = ((1 - m) * self.running_mean + m * mean).astype(dtype)
        unbiased = var * (n / max(n - 1, 1))
        self.running_var = ((1 - m) * self.running_var + m * unbiased).astype(dtype)

    def forward_vectorised(self, x):
        """The array-module version (NumPy or CuPy) of forward, the native kernel's reference."""
        xp = array_module(x)
        if self.training:
            n = x.shape[0] * x.shape[2] * x.shape[3]
            mean = x.mean(axis=(0, 2, 3), dtype=xp.float64)
            var = ((x - mean[None, :, None, None].astype(x.dtype)) ** 2).mean(axis=(0, 2, 3), dtype=xp.float64)
            self._update_running(mean, var, n, x.dtype)
            mean, var = mean.astype(x.dtype), var.astype(x.dtype)
        else:
            mean, var = self.running_mean, self.running_var
        inv_std = (1.0 / xp.sqrt(var + x.dtype.type(self.eps))).astype(x.dtype)
        xhat = (x - mean[None, :, None, None]) * inv_std[None, :, None, None]
        self._cache = ("vectorised", xhat, inv_std) if self.training else None
        if self.weight is None:
            return xhat
        return xhat * self.weight.data[None, :, None, None] + self.bias.data[None, :, None, None]

    def backward(self, dy):
        if self._cache is None:
            raise RuntimeError("BatchNorm2d.backward needs a forward in training mode first")
        if self._cache[0] == "native":
            from .. import _native
            _, x, mean_t, inv_std, gamma, relu_y = self._cache
            dy = np.ascontiguousarray(dy, dtype=x.dtype)
            if dy.shape != x.shape:
                raise ValueError(f"BatchNorm2d.backward: dy must have the forward's output shape {x.shape}, "
                                 f"got {dy.shape}")
            B, C, H, W = x.shape
            dx = np.empty_like(x)
            dgamma = np.empty(C, x.dtype) if gamma is not None else None
            dbeta = np.empty(C, x.dtype) if gamma is not None else None
            _native.batch_norm_backward(B, C, H * W, x, dy, relu_y, mean_t, inv_std, gamma, dx, dgamma, dbeta)
            if gamma is not None:
                self.weight.grad, self.bias.grad = dgamma, dbeta
            return dx
        _, xhat, inv_std = self._cache
        n = dy.shape[0] * dy.shape[2] * dy.shape[3]
        dbeta = dy.sum(axis=(0, 2, 3))
        dgamma = (dy * xhat).sum(axis=(0, 2, 3))
        gamma = self.weight.data if self.weight is not None else 1.0
        if self.weight is not None:
            self.weight.grad, self.bias.grad = dgamma, dbeta
        scale = (gamma * inv_std / n).astype(dy.dtype)
        dx = (n * dy - dbeta[None, :, None, None] - xhat * dgamma[None, :, None, None]) \
            * scale[None, :, None, None]
        return dx

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class LocalResponseNorm(Module):
    """y_c = x_c / (k + alpha/n * sum_{c' in window(c)} x_{c'}^2) ** beta, window(c) =
    [c - n//2, c + (n-1)//2] clipped to the channels (zeros outside), as torch.nn.LocalResponseNorm.
    TensorFlow's lrn(depth_radius=r, alpha=a) is size=2r+1, alpha=a*(2r+1)."""

    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0):
        super().__init__()
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"size must be a positive int, got {size!r}")
        self.size, self.alpha, self.beta, self.k = int(size), float(alpha), float(beta), float(k)

    def _window_sum(self, a, before, after):
        """sum over c' in [c - before, c + after] of a[:, c'] (zero outside)."""
        xp = array_module(a)
        C = a.shape[1]
        out = a.copy()
        for d in range(1, before + 1):
            if d < C:
                out[:, d:] += a[:, : C - d]
        for d in range(1, after + 1):
            if d < C:
                out[:, : C - d] += a[:, d:]
        return out

    def _inverse_power(self, s):
        """s ** -beta; beta = 0.75 (the usual value) via two square roots, 4x faster than pow."""
        xp = array_module(s)
        if self.beta == 0.75:
            r = xp.sqrt(s)
            q = xp.sqrt(r)
            q *= r
            return xp.reciprocal(q, out=q)
        return s ** s.dtype.type(-self.beta)

    def forward(self, x):
        import numpy as np
        if isinstance(x, np.ndarray) and x.ndim == 4 and x.dtype in (np.float32, np.float64):
            from .. import _native     # native kernel (nn_ops.cpp); forward_vectorised is its reference
            x = np.ascontiguousarray(x)
            B, C, H, W = x.shape
            y = np.empty_like(x)       # s and s^-beta are not kept: the backward rebuilds them from x
            _native.lrn_forward(0 if x.dtype == np.float32 else 1, B, C, H * W, self.size, self.alpha, self.beta,
                                self.k, x, y, None, None)
            self._cache = ("native", x) if self.training else None
            return y
        return self.forward_vectorised(x)

    def forward_vectorised(self, x):
        """The array-module version (NumPy or CuPy) of forward."""
        n = self.size
        sq = x * x
        s = self._window_sum(sq, n // 2, (n - 1) // 2)
        s *= x.dtype.type(self.alpha / n)
        s += x.dtype.type(self.k)
        scale = self._inverse_power(s)
        y = x * scale
        self._cache = ("vectorised", x, s, scale) if self.training else None
        return y

    def backward(self, dy):
        if getattr(self, "_cache", None) is None:
            raise RuntimeError("LocalResponseNorm.backward needs a forward in training mode first")
        if self._cache[0] == "native":
            import numpy as np
            from .. import _native
            _, x = self._cache
            dy = np.ascontiguousarray(dy, dtype=x.dtype)
            if dy.shape != x.shape:
                raise ValueError(f"LocalResponseNorm.backward: dy must have the forward's output shape {x.shape}, "
                                 f"got {dy.shape}")
            dx = np.empty_like(x)
            B, C, H, W = x.shape
            _native.lrn_backward_recompute(B, C, H * W, self.size, self.alpha, self.beta, self.k, x, dy, dx)
            return dx
        _, x, s, scale = self._cache
        n = self.size
        t = dy * x
        t *= scale
        t /= s                          # dy_c' x_c' s_c'^(-beta-1)
        # c contributes to window(c') for c' in [c - (n-1)//2, c + n//2]: the transposed window
        back = self._window_sum(t, (n - 1) // 2, n // 2)
        coef = x.dtype.type(2.0 * self.alpha * self.beta / n)
        return dy * scale - coef * x * back

    def extra_repr(self):
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
