"""Write weights in the pyadr edge format (docs/edge.md) for the C example and other C users.

    from pyadr.export import export_weights, cifarnet_layers
    export_weights(cifarnet_layers(arrays), "model.bin", input_shape=(1, 28, 28))

    python -m pyadr.export CHECKPOINT.npz out.bin [--input-shape 1,28,28]
    python -m pyadr.export --random out.bin [--seed 0]

Layout (all little-endian): magic b"PADR", u32 version (1), u32 in_c, in_h, in_w, u32 layer
count, then per layer: u32 kind (1 conv2d, 2 linear), u32 name length + UTF-8 name, u32 out, in,
kh, kw, stride, padding, has_bias, relu, pool_k, pool_stride, pool_padding (pool_k 0: no pool),
f32 weight (out*in*kh*kw, PyTorch order), f32 bias (out) if has_bias.
"""
from __future__ import annotations

import argparse
import struct
import sys

import numpy as np

MAGIC = b"PADR"
VERSION = 1
KINDS = {"conv2d": 1, "linear": 2}


def export_weights(layers, path, input_shape=(1, 28, 28)):
    """Writes `layers` to `path`.

    layers: list of dicts with keys kind ("conv2d" | "linear"), name, weight ((M, C, kh, kw) or
    (out, in)), optional bias, stride (1), padding (0), relu (False), pool (None or
    (k, stride, padding), max-pooling after the ReLU). input_shape: (C, H, W) of one sample.
    """
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (C, H, W), got {input_shape!r}")
    out = [MAGIC, struct.pack("<5I", VERSION, *map(int, input_shape), len(layers))]
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
    if version != VERSION:
        raise ValueError(f"{path}: unsupported version {version}")
    pos, layers = 24, []
    inv = {v: k for k, v in KINDS.items()}
    for _ in range(n):
        kind, ln = struct.unpack_from("<2I", data, pos)
        pos += 8
        name = data[pos:pos + ln].decode("utf-8")
        pos += ln
        M, C, kh, kw, stride, pad, has_bias, relu, pk, ps, pp = struct.unpack_from("<11I", data, pos)
        pos += 44
        cnt = M * C * kh * kw
        wt = np.frombuffer(data, "<f4", cnt, pos).copy()
        pos += 4 * cnt
        bias = None
        if has_bias:
            bias = np.frombuffer(data, "<f4", M, pos).copy()
            pos += 4 * M
        layers.append(dict(kind=inv[kind], name=name, weight=wt.reshape((M, C, kh, kw) if kind == 1 else (M, C)),
                           bias=bias, stride=stride, padding=pad, relu=bool(relu),
                           pool=(pk, ps, pp) if pk else None))
    return (c, h, w), layers


CIFARNET = [("conv1", "conv2d"), ("conv2", "conv2d"), ("fc1", "linear"), ("fc2", "linear"), ("fc3", "linear")]


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


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m pyadr.export", description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", nargs="?", help=".npz with conv1.weight, conv1.bias, ..., fc3.bias")
    p.add_argument("out", help="output .bin")
    p.add_argument("--input-shape", default="1,28,28", help="C,H,W of one sample (default 1,28,28)")
    p.add_argument("--random", action="store_true", help="write random CifarNet weights instead")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    shape = tuple(int(v) for v in a.input_shape.split(","))
    if a.random:
        arrays = random_cifarnet(shape, a.seed)
    elif a.checkpoint:
        with np.load(a.checkpoint) as z:
            arrays = {k: z[k] for k in z.files}
    else:
        p.error("give a CHECKPOINT.npz or --random")
    export_weights(cifarnet_layers(arrays), a.out, input_shape=shape)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
