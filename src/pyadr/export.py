"""Write weights in the pyadr edge format (docs/edge.md) for the C example and other C users.

    from pyadr.export import export_weights, cifarnet_layers
    export_weights(cifarnet_layers(arrays), "model.bin", input_shape=(1, 28, 28))

    pyadr export CHECKPOINT.npz out.bin [--input-shape 1,28,28]   # arrays or a trainer checkpoint
    pyadr export --random out.bin [--seed 0]

This module is the library part (layer 4: it imports only NumPy and, for layers_from_model,
pyadr.nn); the command line, which reads trainer checkpoints through pyadr.train, is
pyadr/cli/export.py (`pyadr export`).

Layout (all little-endian): magic b"PADR", u32 version (2), u32 in_c, in_h, in_w, u32 layer
count, f32 mean (in_c), f32 std (in_c) (inputs are normalised as (pixel/255 - mean) / std), then
per layer: u32 kind (1 conv2d, 2 linear), u32 name length + UTF-8 name, u32 out, in, kh, kw,
stride, padding, has_bias, relu, pool_k, pool_stride, pool_padding (pool_k 0: no pool), u32
lrn_pos (0 none, 1 after the ReLU and before the pool, 2 after the pool), u32 lrn_size, f32
lrn_alpha, lrn_beta, lrn_k (local response normalisation across channels, as
torch.nn.LocalResponseNorm), f32 weight (out*in*kh*kw, PyTorch order), f32 bias (out) if has_bias.
Version 1 files (no mean/std, no LRN fields) are still read.
"""
from __future__ import annotations

import struct

import numpy as np

MAGIC = b"PADR"
VERSION = 2
LRN_POS = {None: 0, "before_pool": 1, "after_pool": 2}
KINDS = {"conv2d": 1, "linear": 2}


def export_weights(layers, path, input_shape=(1, 28, 28), mean=None, std=None):
    """Writes `layers` to `path`.

    layers: list of dicts with keys kind ("conv2d" | "linear"), name, weight ((M, C, kh, kw) or
    (out, in)), optional bias, stride (1), padding (0), relu (False), pool (None or
    (k, stride, padding), max-pooling after the ReLU), lrn (None or dict(size, alpha, beta, k,
    position "before_pool" | "after_pool")). input_shape: (C, H, W) of one sample; mean, std: the
    per-channel input normalisation (default Fashion-MNIST's 0.2860, 0.3530 for every channel).
    """
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (C, H, W), got {input_shape!r}")
    C0 = int(input_shape[0])
    norm = []
    for label, v, default in (("mean", mean, 0.2860), ("std", std, 0.3530)):
        v = np.full(C0, default, "<f4") if v is None else np.asarray(v, dtype="<f4").reshape(-1)
        if v.shape != (C0,) or not np.all(np.isfinite(v)):
            raise ValueError(f"{label} must hold {C0} finite values (one per input channel), got {v!r}")
        if label == "std" and np.any(v <= 0):
            raise ValueError(f"std must be > 0, got {v!r}")
        norm.append(v.tobytes())
    out = [MAGIC, struct.pack("<5I", VERSION, *map(int, input_shape), len(layers))] + norm
    for i, layer in enumerate(layers):
        kind = layer.get("kind")
        if kind not in KINDS:
            raise ValueError(f"layers[{i}].kind must be 'conv2d' or 'linear', got {kind!r}")
        name = str(layer.get("name", f"layer{i}")).encode("utf-8")
        if len(name) >= 64:
            raise ValueError(f"layers[{i}].name must be shorter than 64 bytes")
        w = np.asarray(layer["weight"], dtype="<f4")
        if kind == "conv2d":
            if w.ndim != 4:
                raise ValueError(f"layers[{i}] ({kind}) weight must be 4-D (M, C, kh, kw), got {w.shape}")
            M, C, kh, kw = w.shape
        else:
            if w.ndim != 2:
                raise ValueError(f"layers[{i}] (linear) weight must be 2-D (out, in), got {w.shape}")
            (M, C), kh, kw = w.shape, 1, 1
        b = layer.get("bias")
        if b is not None:
            b = np.asarray(b, dtype="<f4")
            if b.shape != (M,):
                raise ValueError(f"layers[{i}].bias must have shape ({M},), got {b.shape}")
        pool = layer.get("pool") or (0, 0, 0)
        if len(pool) != 3:
            raise ValueError(f"layers[{i}].pool must be None or (k, stride, padding), got {pool!r}")
        out.append(struct.pack("<2I", KINDS[kind], len(name)) + name)
        out.append(struct.pack("<11I", M, C, kh, kw, int(layer.get("stride", 1)), int(layer.get("padding", 0)),
                               b is not None, bool(layer.get("relu", False)), *map(int, pool)))
        lrn = layer.get("lrn")
        if lrn is None:
            out.append(struct.pack("<2I3f", 0, 0, 0.0, 0.0, 0.0))
        else:
            pos = lrn.get("position", "after_pool")
            if pos not in ("before_pool", "after_pool") or kind != "conv2d" or int(lrn["size"]) < 1:
                raise ValueError(f"layers[{i}].lrn must be on a conv2d layer with size >= 1 and position "
                                 f"'before_pool' or 'after_pool', got {lrn!r}")
            out.append(struct.pack("<2I3f", LRN_POS[pos], int(lrn["size"]), float(lrn["alpha"]),
                                   float(lrn["beta"]), float(lrn["k"])))
        out.append(np.ascontiguousarray(w).tobytes())
        if b is not None:
            out.append(b.tobytes())
    with open(path, "wb") as f:
        for chunk in out:
            f.write(chunk)


def read_weights(path):
    """Reads a file written by export_weights: (input_shape, layers) with the same dict keys."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != MAGIC:
        raise ValueError(f"{path}: not a pyadr weights file")
    version, c, h, w, n = struct.unpack_from("<5I", data, 4)
    if version not in (1, 2):
        raise ValueError(f"{path}: unsupported version {version}")
    pos, layers = 24, []
    mean = std = None
    if version >= 2:
        mean = np.frombuffer(data, "<f4", c, pos).copy()
        std = np.frombuffer(data, "<f4", c, pos + 4 * c).copy()
        pos += 8 * c
    inv = {v: k for k, v in KINDS.items()}
    for _ in range(n):
        kind, ln = struct.unpack_from("<2I", data, pos)
        pos += 8
        name = data[pos:pos + ln].decode("utf-8")
        pos += ln
        M, C, kh, kw, stride, pad, has_bias, relu, pk, ps, pp = struct.unpack_from("<11I", data, pos)
        pos += 44
        lrn = None
        if version >= 2:
            lpos, size = struct.unpack_from("<2I", data, pos)
            alpha, beta, k = struct.unpack_from("<3f", data, pos + 8)
            pos += 20
            if lpos:
                lrn = dict(size=size, alpha=alpha, beta=beta, k=k,
                           position={1: "before_pool", 2: "after_pool"}[lpos])
        cnt = M * C * kh * kw
        wt = np.frombuffer(data, "<f4", cnt, pos).copy()
        pos += 4 * cnt
        bias = None
        if has_bias:
            bias = np.frombuffer(data, "<f4", M, pos).copy()
            pos += 4 * M
        layers.append(dict(kind=inv[kind], name=name, weight=wt.reshape((M, C, kh, kw) if kind == 1 else (M, C)),
                           bias=bias, stride=stride, padding=pad, relu=bool(relu),
                           pool=(pk, ps, pp) if pk else None, lrn=lrn))
    return (c, h, w), layers, mean, std


CIFARNET = [("conv1", "conv2d"), ("conv2", "conv2d"), ("fc1", "linear"), ("fc2", "linear"), ("fc3", "linear")]


def layers_from_model(model):
    """Edge layer dicts of a pyadr.nn model made of Conv2d / Linear, each optionally followed by
    ReLU, MaxPool2d and (convolutions only) LocalResponseNorm, with Flatten and Dropout (identity
    at inference) anywhere. Anything else raises ValueError naming the layer."""
    from . import nn

    mods = list(model)
    layers, i, nconv, nfc = [], 0, 0, 0
    while i < len(mods):
        m = mods[i]
        if isinstance(m, (nn.Flatten, nn.Dropout)):
            i += 1
            continue
        if isinstance(m, nn.Conv2d):
            if m.stride[0] != m.stride[1] or m.padding[0] != m.padding[1] or tuple(m.dilation) != (1, 1):
                raise ValueError(f"layer {i} ({m!r}): the edge format needs equal strides/paddings per axis "
                                 "and dilation 1")
            nconv += 1
            layer = dict(kind="conv2d", name=f"conv{nconv}", weight=m.weight.data,
                         bias=None if m.bias is None else m.bias.data, stride=m.stride[0], padding=m.padding[0])
        elif isinstance(m, nn.Linear):
            nfc += 1
            layer = dict(kind="linear", name=f"fc{nfc}", weight=m.weight.data,
                         bias=None if m.bias is None else m.bias.data)
        else:
            raise ValueError(f"layer {i} ({type(m).__name__}) has no equivalent in the edge format "
                             "(Conv2d/Linear with ReLU, MaxPool2d, LocalResponseNorm, Flatten, Dropout)")
        i += 1
        while i < len(mods):   # the ops that follow, in the order the format can express
            f = mods[i]
            if isinstance(f, (nn.Flatten, nn.Dropout)):
                pass
            elif isinstance(f, nn.ReLU) and not layer.get("relu") and "pool" not in layer and "lrn" not in layer:
                layer["relu"] = True
            elif isinstance(f, nn.MaxPool2d) and layer["kind"] == "conv2d" and "pool" not in layer:
                if f.kernel_size[0] != f.kernel_size[1] or f.stride[0] != f.stride[1] or f.padding[0] != f.padding[1]:
                    raise ValueError(f"layer {i} ({f!r}): the edge format needs square max-pooling")
                layer["pool"] = (f.kernel_size[0], f.stride[0], f.padding[0])
            elif isinstance(f, nn.LocalResponseNorm) and layer["kind"] == "conv2d" and "lrn" not in layer:
                layer["lrn"] = dict(size=f.size, alpha=f.alpha, beta=f.beta, k=f.k,
                                    position="after_pool" if "pool" in layer else "before_pool")
            else:
                break
            i += 1
        if layer.get("lrn") and layer["lrn"]["position"] == "before_pool" and not layer.get("relu"):
            raise ValueError(f"layer {layer['name']}: LRN before pooling needs a ReLU before it in the edge format")
        layers.append(layer)
    return layers


def cifarnet_layers(arrays, pool=(3, 2, 1)):
    """CifarNet layer dicts from arrays named conv1.weight, conv1.bias, ..., fc3.bias.

    conv 5x5 (padding 2) -> ReLU -> maxpool 3x3/2 (padding 1), twice; then FC -> ReLU -> FC ->
    ReLU -> FC. Linear weights are (out, in) with in = flattened NCHW features, as in PyTorch.
    """
    layers = []
    for name, kind in CIFARNET:
        key = f"{name}.weight"
        if key not in arrays:
            raise KeyError(f"missing array {key!r} (have: {sorted(arrays)})")
        w = np.asarray(arrays[key])
        layer = dict(kind=kind, name=name, weight=w, bias=arrays.get(f"{name}.bias"), relu=name != "fc3")
        if kind == "conv2d":
            layer.update(stride=1, padding=w.shape[-1] // 2, pool=pool)
        layers.append(layer)
    return layers


def random_cifarnet(input_shape=(1, 28, 28), seed=0):
    """He-initialised CifarNet arrays for `input_shape` (for demos and tests)."""
    rng = np.random.default_rng(seed)
    c, h, w = input_shape
    for _ in range(2):
        h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1  # 'same' conv then pool 3/2 pad 1
    shapes = {"conv1": (64, c, 5, 5), "conv2": (64, 64, 5, 5), "fc1": (384, 64 * h * w), "fc2": (192, 384),
              "fc3": (10, 192)}
    arrays = {}
    for name, shape in shapes.items():
        fan_in = int(np.prod(shape[1:]))
        arrays[f"{name}.weight"] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        arrays[f"{name}.bias"] = np.full(shape[0], 0.01, np.float32)
    return arrays
