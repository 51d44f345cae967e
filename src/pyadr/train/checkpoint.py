"""Self-describing checkpoints (.npz, no pickle): architecture, weights, optimizer buffers,
schedule state, training position and counters, the resolved config and the pyadr version.
Written atomically (a temporary file in the same directory, then os.replace)."""
from __future__ import annotations

import json
import os

import numpy as np

FORMAT = "pyadr-train-checkpoint-1"


def pyadr_version():
    import pyadr
    return getattr(pyadr, "__version__", "unknown")


def save_checkpoint(path, model, optimizer, meta):
    """meta: JSON-serialisable dict (architecture, config, position, schedule, counters)."""
    meta = dict(meta, format=FORMAT, pyadr_version=pyadr_version())
    opt_state = optimizer.state_dict()
    meta["optimizer"] = opt_state["hyper"]
    arrays = {"meta": np.array(json.dumps(meta))}
    for name, value in model.state_dict().items():
        arrays["model/" + name] = value
    for name, value in opt_state["buffers"].items():
        arrays["optim/" + name] = value
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_checkpoint(path):
    """(meta dict, model state dict, optimizer state dict) of a checkpoint file."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            model_state = {k[len("model/"):]: z[k] for k in z.files if k.startswith("model/")}
            buffers = {k[len("optim/"):]: z[k] for k in z.files if k.startswith("optim/")}
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{path} is not a readable pyadr checkpoint: {exc}") from exc
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a pyadr training checkpoint (format {meta.get('format')!r})")
    return meta, model_state, {"hyper": meta["optimizer"], "buffers": buffers}


def model_from_spec(spec, state=None):
    """The model a checkpoint's meta["model_spec"] describes, with `state` (its model state dict)
    loaded when given."""
    from .models import build_model
    model = build_model(spec["name"], spec["in_shape"], spec["num_classes"], spec["width"])
    if state is not None:
        model.load_state_dict(state)
    return model


def load_model(path):
    """(model with the checkpoint's weights, meta dict) of a checkpoint file."""
    meta, state, _ = load_checkpoint(path)
    return model_from_spec(meta["model_spec"], state), meta
