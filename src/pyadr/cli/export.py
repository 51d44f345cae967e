"""`pyadr export` (also `python -m pyadr.export`): weights in the pyadr edge format (docs/edge.md).

    pyadr export CHECKPOINT.npz out.bin [--input-shape 1,28,28]   # CifarNet arrays conv1.weight, ...
    pyadr export --random out.bin [--seed 0]                      # random CifarNet weights
    pyadr export runs/x/best.npz out.bin                          # a trainer checkpoint (pyadr train)

A trainer checkpoint brings its architecture and input normalisation (read through pyadr.train);
the format and the writer are pyadr/export.py.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from ..export import cifarnet_layers, export_weights, layers_from_model, random_cifarnet

_DESCRIPTION = "Write weights in the pyadr edge format (docs/edge.md) for the C example and other C users."

def checkpoint_layers(path):
    """(input_shape, layers, mean, std) of a trainer checkpoint (pyadr train's last.npz/best.npz)."""
    from ..train.checkpoint import load_model

    model, meta = load_model(path)
    spec = meta["model_spec"]
    norm = meta.get("data_norm")
    if norm is None:   # checkpoints written before data_norm was recorded
        from ..train.data import load_dataset
        data = load_dataset(meta["config"]["dataset"], meta["config"].get("data_dir"))
        norm = {"mean": data.mean.tolist(), "std": data.std.tolist()}
    return tuple(spec["in_shape"]), layers_from_model(model), norm["mean"], norm["std"]


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m pyadr.export", description=_DESCRIPTION)
    p.add_argument("checkpoint", nargs="?", help="a trainer checkpoint (pyadr train: last.npz / best.npz), or "
                   "an .npz with conv1.weight, conv1.bias, ..., fc3.bias")
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
        if "meta" in arrays:   # a trainer checkpoint: architecture and normalisation from its metadata
            shape, layers, mean, std = checkpoint_layers(a.checkpoint)
            export_weights(layers, a.out, input_shape=shape, mean=mean, std=std)
            print(f"wrote {a.out} ({', '.join(l['name'] for l in layers)}; input {shape})")
            return 0
    else:
        p.error("give a CHECKPOINT.npz or --random")
    export_weights(cifarnet_layers(arrays), a.out, input_shape=shape)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
