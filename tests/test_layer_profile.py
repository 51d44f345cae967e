"""pyadr profile's per-layer table (pyadr/train/layer_profile.py): the byte model, the layer
timer, the PyTorch twin's per-layer times and the printed table. No timing assertions."""
import numpy as np
import pytest

pytest.importorskip("pyadr._native")

from pyadr.train import layer_profile as lp  # noqa: E402


def test_byte_model():
    """The byte model of bench/nn_ops_table.py's docstring, on small shapes."""
    assert lp.op_bytes("ReLU", (2, 3), (2, 3), 4) == (48, 72)
    assert lp.op_bytes("MaxPool2d", (1, 1, 4, 4), (1, 1, 2, 2), 4) == (16 * 4 + 4 * 8, 4 * 8 + 16 * 4)
    assert lp.op_bytes("AvgPool2d", (1, 1, 4, 4), (1, 1, 2, 2), 8) == (16 * 8 + 4 * 8, 4 * 8 + 16 * 8)
    assert lp.op_bytes("Linear", (2, 5), (2, 3), 4, weight_bytes=60) == (40 + 60 + 24, 24 + 40 + 120 + 40)
    assert lp.op_bytes("Flatten", (2, 5), (2, 5), 4) == (0, 0)
    assert lp.op_bytes("Conv2d", (2, 5), (2, 5), 4) is None
    assert lp.probe_size(1) == 256 << 10 and lp.probe_size((1 << 20) + 1) == 2 << 20


def test_layer_timer_records_every_leaf(rng):
    from pyadr import nn
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, rng=rng), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(8, 3, rng=rng))
    timer = lp.LayerTimer(model)
    model.train()
    for _ in range(2):
        y = model.forward(rng.standard_normal((2, 1, 4, 4)).astype(np.float32))
        model.backward(np.ones_like(y))
    kinds = [r["kind"] for r in timer.rows]
    assert kinds == ["Conv2d", "ReLU", "MaxPool2d", "Flatten", "Linear"]
    assert all(len(r["fwd"]) == 2 and len(r["bwd"]) == 2 for r in timer.rows)
    pool = timer.rows[2]
    assert pool["x_shape"] == (2, 2, 4, 4) and pool["y_shape"] == (2, 2, 2, 2)
    assert lp.row_bytes(pool) == lp.op_bytes("MaxPool2d", (2, 2, 4, 4), (2, 2, 2, 2), 4)
    assert lp.row_bytes(timer.rows[0]) is None
    assert lp.fused(timer.rows[1]) and lp.row_bytes(timer.rows[1]) == (0, 0)    # ReLU applied by the pool
    assert lp.gemm_flops(timer.rows[4]["mod"], (2, 8), (2, 3)) == 2 * 2 * 8 * 3


def test_copy_probe_gives_a_bound():
    probe = lp.CopyProbe([256 << 10], threads=2)
    probe.sample()
    assert probe.best[256 << 10] > 0
    assert probe.bound(1000, 10) > 0


def test_profile_layer_table(capsys):
    from pyadr.__main__ import main
    assert main(["profile", "--dataset", "synthetic", "--batch-size", "4", "--steps", "1", "--threads", "1",
                 "--model", "tiny", "--no-torch"]) == 0
    out = capsys.readouterr().out
    assert "per layer, exact column" in out and "PyTorch" not in out
    table = out.split("per layer, exact column")[1].splitlines()
    kinds = [l.split()[1] for l in table if l.split() and l.split()[0].isdigit()]
    assert kinds == ["Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "MaxPool2d", "Flatten", "Linear"]
    assert any(l.strip().startswith("SGD m=0.9") for l in table)
    assert any(l.strip().startswith("sum non-conv") for l in table)
    assert main(["profile", "--dataset", "synthetic", "--batch-size", "4", "--steps", "1", "--threads", "1",
                 "--model", "tiny", "--no-torch", "--no-layers"]) == 0
    assert "per layer" not in capsys.readouterr().out


def test_torch_layer_times_one_per_layer(rng):
    pytest.importorskip("torch")
    from pyadr.train.data import load_dataset
    from pyadr.train.loader import BatchLoader
    from pyadr.train.models import build_model
    data = load_dataset("synthetic", None)
    loader = BatchLoader(data.train_images, data.train_labels, 4, data.mean, data.std, seed=0, prefetch=0)
    model = build_model("tiny", data.image_shape, data.num_classes, 1.0, 0)
    layers, opt = lp.torch_layer_times(model, loader, 1, 2, warmup=1)
    assert len(layers) == len(lp.LayerTimer(model).rows) == 8
    assert all(len(f) == 2 and len(b) == 2 for f, b in layers) and len(opt) == 2
