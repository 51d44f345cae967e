"""cuDNN vs pyadr.gpu (exact and deep reuse) on three convolution layers, forward and backward.

  cifarnet_conv2  x (128, 64, 14, 14),  w (64, 64, 5, 5),   pad 2
  vgg_conv        x (128, 64, 32, 32),  w (128, 64, 3, 3),  pad 1
  vgg19_conv      x (128, 256, 56, 56), w (256, 256, 3, 3), pad 1

cuDNN runs through PyTorch when it is installed (torch.backends.cudnn), else through CuPy's
cupy.cudnn wrappers when available. Times are medians of CUDA-event timings after warm-up, in ms.
Inputs are random (reuse has nothing to exploit on random data: the rc column shows that; use
real activations to judge reuse speed-ups). Exits 0 with a message when no GPU is usable.

    PYTHONPATH=. python bench/bench_gpu.py [--repeat 10] [--dtype float32] [--L 16 --H 12] [--layers vgg_conv]
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

LAYERS = {
    "cifarnet_conv2": ((128, 64, 14, 14), (64, 64, 5, 5), 2),
    "vgg_conv": ((128, 64, 32, 32), (128, 64, 3, 3), 1),
    "vgg19_conv": ((128, 256, 56, 56), (256, 256, 3, 3), 1),
}


def _timer(cp, fn, repeat, warmup=2):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start, stop = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, stop))
    return float(np.median(times))


def _cudnn_torch(x, w, pad):
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    torch.backends.cudnn.benchmark = True
    tx = torch.as_tensor(x, device="cuda").requires_grad_(True)
    tw = torch.as_tensor(w, device="cuda").requires_grad_(True)
    tb = torch.zeros(w.shape[0], device="cuda", dtype=tx.dtype, requires_grad=True)
    state = {}

    def fwd():
        state["y"] = torch.nn.functional.conv2d(tx, tw, tb, padding=pad)

    def bwd():
        y = torch.nn.functional.conv2d(tx, tw, tb, padding=pad)
        torch.autograd.grad(y, (tx, tw, tb), torch.ones_like(y))

    return "torch cuDNN", fwd, bwd


def _cudnn_cupy(x, w, pad):
    try:
        from cupy import cudnn
    except Exception:  # noqa: BLE001
        return None
    import cupy as cp
    b = cp.zeros(w.shape[0], dtype=x.dtype)
    OH = x.shape[2] + 2 * pad - w.shape[2] + 1
    OW = x.shape[3] + 2 * pad - w.shape[3] + 1
    y = cp.empty((x.shape[0], w.shape[0], OH, OW), dtype=x.dtype)
    dx, dw = cp.empty_like(x), cp.empty_like(w)
    gy = cp.ones_like(y)

    def fwd():
        cudnn.convolution_forward(x, w, b, y, (pad, pad), (1, 1), (1, 1), 1, auto_tune=True, tensor_core="auto")

    def bwd():
        fwd()
        cudnn.convolution_backward_filter(x, gy, dw, (pad, pad), (1, 1), (1, 1), 1, deterministic=False,
                                          auto_tune=True, tensor_core="auto")
        cudnn.convolution_backward_data(w, gy, b, dx, (pad, pad), (1, 1), (1, 1), 1, deterministic=False,
                                        auto_tune=True, tensor_core="auto")
    return "cupy cuDNN", fwd, bwd


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--L", type=int, default=16)
    ap.add_argument("--H", type=int, default=12)
    ap.add_argument("--layers", nargs="*", default=list(LAYERS))
    args = ap.parse_args(argv)

    import pyadr
    import pyadr.gpu
    if not pyadr.gpu.is_available():
        print(f"bench_gpu: skipped, {pyadr.gpu.why_unavailable()}")
        return 0
    import cupy as cp
    pyadr.gpu.precompile()
    dev = cp.cuda.Device()
    name = cp.cuda.runtime.getDeviceProperties(dev.id)["name"]
    name = name.decode() if isinstance(name, bytes) else name
    print(f"device: {name}; CuPy {cp.__version__}; dtype {args.dtype}; median of {args.repeat} (ms)")
    print(f"{'layer':16} {'impl':26} {'forward':>9} {'fwd+bwd':>9} {'rc':>7}")
    rng = np.random.default_rng(0)
    for layer in args.layers:
        xs, ws, pad = LAYERS[layer]
        x = cp.asarray(rng.standard_normal(xs).astype(args.dtype))
        w = cp.asarray((rng.standard_normal(ws) * 0.05).astype(args.dtype))
        b = cp.zeros(ws[0], dtype=args.dtype)
        for make in (_cudnn_torch, _cudnn_cupy):
            impl = make(x, w, pad)
            if impl is not None:
                label, fwd, bwd = impl
                try:
                    tf, tb = _timer(cp, fwd, args.repeat), _timer(cp, bwd, args.repeat)
                except Exception as exc:  # noqa: BLE001 - e.g. a cupy.cudnn signature change
                    print(f"{layer:16} {label:26} failed: {type(exc).__name__}: {exc}")
                    continue
                print(f"{layer:16} {label:26} {tf:9.3f} {tb:9.3f} {'':>7}")
                break
        else:
            print(f"{layer:16} {'cuDNN (no torch/cupy.cudnn)':26} {'-':>9} {'-':>9}")
        cfgs = [("pyadr exact", None),
                (f"pyadr reuse L={args.L} H={args.H}", pyadr.ReuseConfig(L=args.L, H=args.H, seed=0))]
        for label, cfg in cfgs:
            y, ctx = pyadr.gpu.conv2d_forward(x, w, b, padding=pad, reuse=cfg)
            dy = cp.ones_like(y)

            def fwd(cfg=cfg):
                pyadr.gpu.conv2d_forward(x, w, b, padding=pad, reuse=cfg)

            def both(cfg=cfg, dy=dy):
                _, c = pyadr.gpu.conv2d_forward(x, w, b, padding=pad, reuse=cfg)
                pyadr.gpu.conv2d_backward(dy, c)

            rc = f"{ctx.stats.rc:7.4f}" if cfg is not None else ""
            print(f"{layer:16} {label:26} {_timer(cp, fwd, args.repeat):9.3f} {_timer(cp, both, args.repeat):9.3f}"
                  f" {rc:>7}")
            del y, ctx, dy
        cp.get_default_memory_pool().free_all_blocks()
    return 0


if __name__ == "__main__":
    sys.exit(main())
