"""pyadr's convolution as torch.library custom ops: what torch.compile, torch.export and torch.func see.

  pyadr::conv2d(x, w, b?, stride, padding, dilation, stats_slot) -> y                    exact
  pyadr::conv2d_grad(dy, x, w, stride, padding, dilation, has_bias, need_dx) -> (dx, dw, db)
  pyadr::conv2d_reuse(x, w, b?, stride, padding, dilation, <ReuseConfig as 11 plain values>,
                      stats_slot) -> (y, handle)                                         deep reuse
  pyadr::conv2d_reuse_grad(dy, handle, x_shape, w_shape, x_channels_last, has_bias, need_dx)
                      -> (dx, dw, db)

Shapes: x (B, C, H, W), w (M, C, kh, kw), b (M,), y (B, M, OH, OW); handle (1,) int64 on the CPU
(the reuse context's key, see _runtime). dx is (0,) when need_dx is False, db (0,) without bias.
Every op has a fake (meta) kernel, so graphs are traced without running pyadr; the forward ops
have autograd formulas (register_autograd; inside torch.func transforms the same formulas run
through autograd.Functions with setup_context) and the exact ops a vmap rule (a loop over the
mapped dimension). Not supported, with a clear error:
vmap over a reuse op (its clusters span the whole batch) and double backward (the gradient ops
have no derivative of their own).

Dtypes: float32/float64 compute as they are; float16/bfloat16 are computed in float32 inside and
returned in the input's dtype. y and dx keep a channels_last input's layout. CPU tensors run on
pyadr's native engine, CUDA tensors on pyadr.gpu (CuPy), chosen per call by _runtime.backend_of.
"""
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from .. import _api
from . import _runtime as rt

# ---- shapes (shared by the kernels and their fake versions) -------------------------------------


def _out_hw(x_shape, w_shape, stride, padding, dilation):
    (H, W), (kh, kw) = x_shape[2:], w_shape[2:]
    oh = (H + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (W + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    return oh, ow


def _empty(shape, like, channels_last=False, dtype=None):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return torch.empty(shape, dtype=dtype or like.dtype, device=like.device, memory_format=fmt)


def _fake_y(x, w, stride, padding, dilation):
    oh, ow = _out_hw(x.shape, w.shape, stride, padding, dilation)
    if oh < 1 or ow < 1:   # eager calls get the native core's message; traced ones this one
        raise ValueError(f"pyadr.torch: output size {oh}x{ow} is empty for an input of shape {tuple(x.shape)}, "
                         f"kernel {tuple(w.shape[2:])}, stride {stride}, padding {padding}, dilation {dilation}")
    return _empty((x.shape[0], w.shape[0], oh, ow), x, rt.is_channels_last(x))


def _fake_grads(dy, x_shape, w_shape, x_channels_last, has_bias, need_dx):
    dx = _empty(x_shape, dy, x_channels_last) if need_dx else dy.new_empty((0,))
    return dx, _empty(w_shape, dy), dy.new_empty((w_shape[0] if has_bias else 0,))


# ---- kernels ------------------------------------------------------------------------------------


def _forward(x, w, b, stride, padding, dilation, reuse):
    """(y in x's dtype and layout, pyadr context) of one pyadr forward call."""
    be = rt.backend_of(x)
    y, pctx = _api.conv2d_forward(rt.to_array(rt.upcast(x), be), rt.to_array(rt.upcast(w), be),
                                  rt.to_array(rt.upcast(b), be), stride=tuple(stride), padding=tuple(padding),
                                  dilation=tuple(dilation), reuse=reuse)
    return rt.from_array(y, rt.is_channels_last(x)).to(x.dtype), pctx


def _grads_out(grads, dy, x_channels_last, need_dx):
    dx, dw, db = grads
    dx = rt.from_array(dx, x_channels_last).to(dy.dtype) if need_dx else dy.new_empty((0,))
    db = rt.from_array(db).to(dy.dtype) if db is not None else dy.new_empty((0,))
    return dx, rt.from_array(dw).to(dy.dtype), db


def _exact_context(xa, wa, dy_shape, has_bias, stride, padding, dilation, backend):
    """The context pyadr's exact forward would have returned for (x, w): x and w themselves."""
    if backend != "gpu":
        return _api.exact_context(xa, wa, has_bias, stride, padding, dilation)
    from ..gpu._context import GpuConv2dContext
    geom = tuple(xa.shape) + (wa.shape[0],) + tuple(wa.shape[2:]) + tuple(stride) + tuple(padding) \
        + tuple(dilation)
    ctx = GpuConv2dContext("conv2d", geom, xa.dtype, tuple(dy_shape), has_bias, None)
    ctx._x, ctx._w = xa, wa
    return ctx


@torch.library.custom_op("pyadr::conv2d", mutates_args=())
def conv2d(x: Tensor, w: Tensor, b: Optional[Tensor], stride: List[int], padding: List[int],
           dilation: List[int], stats_slot: int) -> Tensor:
    rt.record_stats(stats_slot, None)
    return _forward(x, w, b, stride, padding, dilation, None)[0]


@conv2d.register_fake
def _(x, w, b, stride, padding, dilation, stats_slot):
    return _fake_y(x, w, stride, padding, dilation)


@torch.library.custom_op("pyadr::conv2d_grad", mutates_args=())
def conv2d_grad(dy: Tensor, x: Tensor, w: Tensor, stride: List[int], padding: List[int], dilation: List[int],
                has_bias: bool, need_dx: bool) -> Tuple[Tensor, Tensor, Tensor]:
    backend = rt.backend_of(dy)
    xa, wa, dya = (rt.to_array(rt.upcast(t), backend) for t in (x, w, dy))
    ctx = _exact_context(xa, wa, dy.shape, has_bias, stride, padding, dilation, backend)
    grads = _api.conv2d_backward(dya, ctx, input_grad=need_dx)
    return _grads_out(grads, dy, rt.is_channels_last(x), need_dx)


@conv2d_grad.register_fake
def _(dy, x, w, stride, padding, dilation, has_bias, need_dx):
    return _fake_grads(dy, x.shape, w.shape, rt.is_channels_last(x), has_bias, need_dx)


@torch.library.custom_op("pyadr::conv2d_reuse", mutates_args=())
def conv2d_reuse(x: Tensor, w: Tensor, b: Optional[Tensor], stride: List[int], padding: List[int],
                 dilation: List[int], L: int, H: int, scope: str, order: str, hash_family: str, seed: int,
                 planes: Optional[Tensor], width: Optional[float], width_scale: float, offsets: Optional[Tensor],
                 exact: str, stats_slot: int) -> Tuple[Tensor, Tensor]:
    reuse = rt.reuse_from_args(L, H, scope, order, hash_family, seed, planes, width, width_scale, offsets, exact)
    y, pctx = _forward(x, w, b, stride, padding, dilation, reuse)
    rt.record_stats(stats_slot, pctx.stats)
    return y, rt.keep_context(pctx)


@conv2d_reuse.register_fake
def _(x, w, b, stride, padding, dilation, *reuse_and_slot):
    return _fake_y(x, w, stride, padding, dilation), torch.empty((1,), dtype=torch.int64, device="cpu")


@torch.library.custom_op("pyadr::conv2d_reuse_grad", mutates_args=())
def conv2d_reuse_grad(dy: Tensor, handle: Tensor, x_shape: List[int], w_shape: List[int], x_channels_last: bool,
                      has_bias: bool, need_dx: bool) -> Tuple[Tensor, Tensor, Tensor]:
    backend = rt.backend_of(dy)
    pctx = rt.context_of(handle)
    grads = _api.conv2d_backward(rt.to_array(rt.upcast(dy), backend), pctx, input_grad=need_dx)
    return _grads_out(grads, dy, x_channels_last, need_dx)


@conv2d_reuse_grad.register_fake
def _(dy, handle, x_shape, w_shape, x_channels_last, has_bias, need_dx):
    return _fake_grads(dy, x_shape, w_shape, x_channels_last, has_bias, need_dx)


# ---- autograd -----------------------------------------------------------------------------------


def _exact_setup(ctx, inputs, output):
    x, w, b, stride, padding, dilation, _ = inputs
    ctx.save_for_backward(x, w)
    ctx.geometry = (stride, padding, dilation)
    ctx.has_bias = b is not None


def _exact_backward(ctx, dy):
    x, w = ctx.saved_tensors
    need = ctx.needs_input_grad
    dx, dw, db = _pick(conv2d_grad, _conv2d_grad_fn)(dy, x, w, *ctx.geometry, ctx.has_bias, need[0])
    return _needed(need, dx, dw, db, ctx.has_bias, 4)


def _reuse_setup(ctx, inputs, output):
    x, w, b = inputs[:3]
    ctx.save_for_backward(output[1])
    ctx.shapes = (list(x.shape), list(w.shape), rt.is_channels_last(x))
    ctx.has_bias = b is not None


def _reuse_backward(ctx, dy, _dhandle):
    (handle,) = ctx.saved_tensors
    need = ctx.needs_input_grad
    dx, dw, db = _pick(conv2d_reuse_grad, _conv2d_reuse_grad_fn)(dy, handle, *ctx.shapes, ctx.has_bias, need[0])
    return _needed(need, dx, dw, db, ctx.has_bias, 15)


def _functorch_active():
    """True inside a torch.func transform (grad, vmap, ...) run eagerly."""
    return not torch.compiler.is_compiling() and torch._C._functorch.peek_interpreter_stack() is not None


def _pick(op, function):
    """The op itself, or inside torch.func its autograd.Function twin (see 'what the layers call')."""
    return function if _functorch_active() else op


def _needed(need, dx, dw, db, has_bias, n_plain):
    return (dx if need[0] else None, dw if need[1] else None,
            db if has_bias and need[2] else None) + (None,) * n_plain


def _no_double_backward(name):
    def setup(ctx, inputs, output):
        pass

    def backward(ctx, *grads):
        raise NotImplementedError(f"pyadr.torch: double backward through {name} is not supported (the "
                                  "gradients of pyadr layers are not differentiable themselves); use "
                                  "torch.nn.Conv2d where second derivatives are needed")
    return backward, setup


def _gradient_function(op):
    """op (a gradient op) as an autograd.Function with setup_context, as torch.func needs: its
    own derivative is the clear error of _no_double_backward."""
    backward, setup = _no_double_backward(op._qualname)
    return type(f"_{op._qualname.split('::')[1]}", (torch.autograd.Function,), {
        "generate_vmap_rule": True, "forward": staticmethod(lambda *args: op(*args)),
        "setup_context": staticmethod(setup), "backward": staticmethod(backward)}).apply


conv2d.register_autograd(_exact_backward, setup_context=_exact_setup)
conv2d_reuse.register_autograd(_reuse_backward, setup_context=_reuse_setup)
for _op in (conv2d_grad, conv2d_reuse_grad):
    _backward, _setup = _no_double_backward(_op._qualname)
    _op.register_autograd(_backward, setup_context=_setup)
_conv2d_grad_fn = _gradient_function(conv2d_grad)
_conv2d_reuse_grad_fn = _gradient_function(conv2d_reuse_grad)


# ---- what the layers call ------------------------------------------------------------------------
# The ops' own autograd (register_autograd) is what torch.compile / torch.export trace and what eager
# calls use. torch 2.13 builds it as an autograd.Function without setup_context, which torch.func
# rejects; inside a torch.func transform the layers call these Functions instead: the same
# formulas, with setup_context, and vmap rules generated from the ops' (dynamo cannot trace them,
# hence the switch).


class _ExactConv2d(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x, w, b, stride, padding, dilation, stats_slot):
        return conv2d(x, w, b, stride, padding, dilation, stats_slot)

    setup_context = staticmethod(_exact_setup)
    backward = staticmethod(_exact_backward)


class _ReuseConv2d(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(*args):
        return conv2d_reuse(*args)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _reuse_setup(ctx, inputs, output)
        ctx.mark_non_differentiable(output[1])

    backward = staticmethod(_reuse_backward)


def exact_conv2d(x, w, b, stride, padding, dilation, stats_slot):
    """y (B, M, OH, OW) of pyadr::conv2d, differentiable (also under torch.func)."""
    if _functorch_active():
        return _ExactConv2d.apply(x, w, b, stride, padding, dilation, stats_slot)
    return conv2d(x, w, b, stride, padding, dilation, stats_slot)


def reuse_conv2d(x, w, b, stride, padding, dilation, reuse_args, stats_slot):
    """y (B, M, OH, OW) of pyadr::conv2d_reuse; its handle lives on in the autograd graph."""
    op = _ReuseConv2d.apply if _functorch_active() else conv2d_reuse
    y, _handle = op(x, w, b, stride, padding, dilation, *reuse_args, stats_slot)
    return y


# ---- vmap ---------------------------------------------------------------------------------------


def _loop_vmap(op):
    """vmap rule: the op once per index of the mapped dimension, outputs stacked along dim 0."""
    def rule(info, in_dims, *args):
        outs = []
        for i in range(info.batch_size):
            sliced = [a.select(d, i) if isinstance(a, Tensor) and d is not None else a
                      for a, d in zip(args, in_dims)]
            outs.append(op(*sliced))
        if isinstance(outs[0], tuple):
            stacked = tuple(torch.stack(o) for o in zip(*outs))
            return stacked, (0,) * len(stacked)
        return torch.stack(outs), 0
    return rule


def _reuse_vmap(info, in_dims, *args):
    raise NotImplementedError("pyadr.torch: torch.func.vmap over a layer with reuse is not supported (its "
                              "clusters span the whole batch and its context lives outside the graph); "
                              "set reuse=None for vmap, or call the layer on the whole batch")


conv2d.register_vmap(_loop_vmap(conv2d))
conv2d_grad.register_vmap(_loop_vmap(conv2d_grad))
conv2d_reuse.register_vmap(_reuse_vmap)
conv2d_reuse_grad.register_vmap(_reuse_vmap)
