"""Edge pieces seen from Python: the weights format round trip, and (slow) the C example built
without Python reproducing pyadr's NumPy forward on an exported file."""
import os
import shutil
import subprocess

import numpy as np
import pytest

import pyadr
from pyadr import export
from pyadr.cli import export as export_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_export_round_trip(tmp_path):
    arrays = export.random_cifarnet((1, 28, 28), seed=3)
    path = tmp_path / "m.bin"
    export.export_weights(export.cifarnet_layers(arrays), path, input_shape=(1, 28, 28))
    shape, layers, mean, std = export.read_weights(path)
    assert shape == (1, 28, 28)
    np.testing.assert_allclose(mean, [0.2860]) and np.testing.assert_allclose(std, [0.3530])
    assert [l["name"] for l in layers] == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    for l in layers:
        np.testing.assert_array_equal(l["weight"], arrays[f"{l['name']}.weight"])
        np.testing.assert_array_equal(l["bias"], arrays[f"{l['name']}.bias"])
    assert layers[1]["pool"] == (3, 2, 1) and layers[1]["padding"] == 2 and layers[1]["relu"]
    assert layers[4]["pool"] is None and not layers[4]["relu"]
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:4] == b"PADR" and head[4:8] == (2).to_bytes(4, "little")
    assert all(l["lrn"] is None for l in layers)


def test_export_trainer_checkpoint(tmp_path):
    """A checkpoint written by the trainer (CifarNet: ReLU, pooling and LRN between the layers)
    exports with its architecture and input normalisation, and the file's layers reproduce the
    model's forward pass."""
    from pyadr.train.checkpoint import save_checkpoint
    from pyadr.train.models import build_model
    from pyadr.nn import SGD

    model = build_model("cifarnet", (1, 28, 28), 10, 0.25, seed=2)
    meta = {"model_spec": {"name": "cifarnet", "in_shape": [1, 28, 28], "num_classes": 10, "width": 0.25},
            "data_norm": {"mean": [0.25], "std": [0.5]}, "config": {"dataset": "synthetic"}}
    save_checkpoint(str(tmp_path / "best.npz"), model, SGD(model.parameters(), lr=0.1), meta)
    assert export_cli.main([str(tmp_path / "best.npz"), str(tmp_path / "m.bin")]) == 0
    shape, layers, mean, std = export.read_weights(tmp_path / "m.bin")
    assert shape == (1, 28, 28) and mean.tolist() == [0.25] and std.tolist() == [0.5]
    assert [l["name"] for l in layers] == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    assert layers[0]["lrn"]["position"] == "after_pool" and layers[1]["lrn"]["position"] == "before_pool"
    assert layers[0]["pool"] == (3, 2, 1) and layers[1]["relu"] and not layers[4]["relu"]
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    model.eval()
    np.testing.assert_allclose(_numpy_forward(layers, x), model.forward(x), rtol=1e-4, atol=1e-5)


def _lrn(x, size, alpha, beta, k):
    C = x.shape[1]
    sq = np.pad(x * x, ((0, 0), (size // 2, (size - 1) // 2), (0, 0), (0, 0)))
    s = sum(sq[:, i:i + C] for i in range(size))
    return x / (k + alpha / size * s) ** beta


def test_export_main_npz(tmp_path):
    arrays = export.random_cifarnet((1, 28, 28), seed=1)
    np.savez(tmp_path / "ck.npz", **arrays)
    assert export_cli.main([str(tmp_path / "ck.npz"), str(tmp_path / "o.bin")]) == 0
    _, layers, _, _ = export.read_weights(tmp_path / "o.bin")
    np.testing.assert_array_equal(layers[2]["weight"], arrays["fc1.weight"])


def test_export_errors(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        export.export_weights([{"kind": "pool", "weight": np.zeros(1)}], tmp_path / "x.bin")
    with pytest.raises(ValueError, match="4-D"):
        export.export_weights([{"kind": "conv2d", "weight": np.zeros((2, 2))}], tmp_path / "x.bin")
    with pytest.raises(KeyError, match="conv1.weight"):
        export.cifarnet_layers({})
    with pytest.raises(ValueError, match="std"):
        export.export_weights([], tmp_path / "x.bin", std=[0.0])
    from pyadr import nn
    with pytest.raises(ValueError, match="BatchNorm2d"):
        export.layers_from_model(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)))


def _maxpool(x, k=3, s=2, p=1):
    B, C, H, W = x.shape
    xp = np.full((B, C, H + 2 * p, W + 2 * p), -np.inf, x.dtype)
    xp[:, :, p:p + H, p:p + W] = x
    oh, ow = (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1
    out = np.full((B, C, oh, ow), -np.inf, x.dtype)
    for a in range(k):
        for b in range(k):
            out = np.maximum(out, xp[:, :, a:a + s * oh:s, b:b + s * ow:s])
    return out


def _numpy_forward(layers, x):
    for l in layers:
        if l["kind"] == "conv2d":
            x, _ = pyadr.conv2d_forward(x, l["weight"], l["bias"], stride=l.get("stride", 1), padding=l.get("padding", 0))
        else:
            x, _ = pyadr.linear_forward(x.reshape(x.shape[0], -1), l["weight"], l["bias"])
        if l.get("relu"):
            x = np.maximum(x, 0)
        lrn = l.get("lrn")
        if lrn and lrn["position"] == "before_pool":
            x = _lrn(x, lrn["size"], lrn["alpha"], lrn["beta"], lrn["k"])
        if l.get("pool"):
            x = _maxpool(x, *l["pool"])
        if lrn and lrn["position"] == "after_pool":
            x = _lrn(x, lrn["size"], lrn["alpha"], lrn["beta"], lrn["k"])
    return x


def _pyadr_model(layers):
    """The layer dicts as a pyadr.nn model (Conv2d/Linear with the file's weights, ReLU, MaxPool2d,
    LocalResponseNorm, Flatten before the first Linear), in eval mode: pyadr's own Python
    evaluation of what the edge example runs."""
    from pyadr import nn

    mods, flat = [], False
    for l in layers:
        w = l["weight"]
        if l["kind"] == "conv2d":
            m = nn.Conv2d(w.shape[1], w.shape[0], w.shape[2:], stride=l.get("stride", 1),
                          padding=l.get("padding", 0), bias=l["bias"] is not None)
        else:
            if not flat:
                mods.append(nn.Flatten())
                flat = True
            m = nn.Linear(w.shape[1], w.shape[0], bias=l["bias"] is not None)
        m.weight.data = np.ascontiguousarray(w, np.float32)
        if l["bias"] is not None:
            m.bias.data = np.ascontiguousarray(l["bias"], np.float32)
        mods.append(m)
        if l.get("relu"):
            mods.append(nn.ReLU())
        lrn = l.get("lrn")
        lrn_mod = lrn and nn.LocalResponseNorm(lrn["size"], lrn["alpha"], lrn["beta"], lrn["k"])
        if lrn and lrn["position"] == "before_pool":
            mods.append(lrn_mod)
        if l.get("pool"):
            k, st, pad = l["pool"]
            mods.append(nn.MaxPool2d(k, st, pad))
        if lrn and lrn["position"] == "after_pool":
            mods.append(lrn_mod)
    model = nn.Sequential(*mods)
    model.eval()
    return model


needs_cmake = pytest.mark.skipif(shutil.which("cmake") is None, reason="needs cmake")


@pytest.fixture(scope="module")
def edge_binary(tmp_path_factory):
    """examples/edge built without Python against this source tree (once per module)."""
    build = tmp_path_factory.mktemp("edge") / "build"
    subprocess.run(["cmake", "-S", os.path.join(ROOT, "examples", "edge"), "-B", str(build),
                    f"-DPYADR_SOURCE_DIR={ROOT}", "-DCMAKE_BUILD_TYPE=Release"], check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(build), "-j2"], check=True, capture_output=True)
    return str(build / "pyadr_edge")


@pytest.mark.slow
@needs_cmake
@pytest.mark.parametrize("source", ["arrays", "trainer"])
def test_c_example_matches_python(tmp_path, edge_binary, source):
    """The C example (convolutions, linear layers, and ReLU / max-pool / LRN through the C API's nn
    ops) gives the logits pyadr's Python model gives on the same inputs."""
    if source == "arrays":
        layers = export.cifarnet_layers(export.random_cifarnet((1, 28, 28), seed=7))
        model = _pyadr_model(layers)
    else:   # the trainer's CifarNet: LRN after conv1's pool and before conv2's
        from pyadr import nn
        from pyadr.train.models import build_model
        model = build_model("cifarnet", (1, 28, 28), 10, 1.0, seed=7)
        model.eval()
        # The trainer's alpha (0.001) barely moves the logits; strong LRNs (one on the beta = 0.75
        # square-root path, one on pow) make a wrong LRN visible at the tolerance below.
        lrns = [m for _, m in model.named_modules() if isinstance(m, nn.LocalResponseNorm)]
        assert len(lrns) == 2
        lrns[0].alpha, lrns[1].alpha, lrns[1].beta, lrns[1].k = 2.0, 1.0, 0.6, 2.0
        layers = export.layers_from_model(model)
    export.export_weights(layers, tmp_path / "m.bin")
    batch = 4
    out = subprocess.run([edge_binary, "--weights", str(tmp_path / "m.bin"), "--batch", str(batch),
                          "--reps", "1", "--dump", str(tmp_path / "dump.f32")],
                         check=True, capture_output=True, text=True).stdout
    assert "agreement" in out
    raw = np.fromfile(tmp_path / "dump.f32", np.float32)
    assert raw.size == batch * (28 * 28 + 10)
    x = raw[:batch * 28 * 28].reshape(batch, 1, 28, 28)
    logits = raw[batch * 28 * 28:].reshape(batch, 10)
    expected = model.forward(x)
    scale = np.abs(expected).max()
    assert scale > 1e-2                            # not a degenerate all-zero comparison
    # Same kernels on both sides (bit-identical with the builtin GEMM on one machine); the margin
    # only covers summation-order changes, far below what a wrong layer moves (a 1 % change of
    # the LRNs' alpha moves these logits by ~1e-4 of their scale).
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5 * scale)
    np.testing.assert_allclose(logits, _numpy_forward(layers, x), rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.slow
@needs_cmake
def test_c_example_help(edge_binary):
    r = subprocess.run([edge_binary, "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("usage: pyadr_edge") and "--weights" in r.stdout
    r = subprocess.run([edge_binary, "--no-such-option"], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown option --no-such-option" in r.stderr and "usage:" in r.stderr
    r = subprocess.run([edge_binary, "--batch"], capture_output=True, text=True)
    assert r.returncode == 2 and "missing value after --batch" in r.stderr


FASHION = "/usr/share/datasets/fashion-mnist"


@pytest.mark.slow
@needs_cmake
@pytest.mark.skipif(not os.path.exists(os.path.join(FASHION, "t10k-images-idx3-ubyte.gz")),
                    reason="needs the Fashion-MNIST test set")
def test_c_model_runner_matches_python_evaluation_on_a_checkpoint(tmp_path, edge_binary):
    """A model trained by `pyadr train` (CifarNet with its LRNs, a few steps on real
    Fashion-MNIST), exported with `pyadr export`, run by the C model runner (the edge example:
    pyadr_model_load, pyadr_model_normalize on the raw IDX pixels, pyadr_model_forward) on the
    first 500 test images, gives pyadr's Python evaluation: the same normalised inputs, logits,
    predicted classes and accuracy."""
    import gzip

    from pyadr.cli.train import main as train_main
    from pyadr.train.checkpoint import load_model
    from pyadr.train.data import load_fashion_mnist
    from pyadr.train.evaluation import evaluate
    from pyadr.train.loader import BatchLoader

    run = tmp_path / "run"
    assert train_main(["train", "--model", "cifarnet", "--width", "0.25", "--limit-train", "4096",
                       "--batch-size", "64", "--stop-after-steps", "60", "--out", str(run),
                       "--no-progress"]) in (0, None)
    ckpt = str(run / "last.npz")
    assert export_cli.main([ckpt, str(tmp_path / "m.bin")]) == 0
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(os.path.join(FASHION, name + ".gz")) as src, open(tmp_path / name, "wb") as dst:
            shutil.copyfileobj(src, dst)
    batch, reps = 250, 2
    n = batch * reps
    out = subprocess.run([edge_binary, "--weights", str(tmp_path / "m.bin"),
                          "--images", str(tmp_path / "t10k-images-idx3-ubyte"),
                          "--labels", str(tmp_path / "t10k-labels-idx1-ubyte"), "--batch", str(batch),
                          "--reps", str(reps), "--dump", str(tmp_path / "dump.f32")],
                         check=True, capture_output=True, text=True).stdout
    raw = np.fromfile(tmp_path / "dump.f32", np.float32)
    assert raw.size == n * (28 * 28 + 10)
    c_x = raw[:n * 28 * 28].reshape(n, 1, 28, 28)
    c_logits = raw[n * 28 * 28:].reshape(n, 10)

    # pyadr's Python evaluation of the checkpoint: the trainer's test loader (its normalisation
    # from the checkpoint's data_norm, in order) and evaluate(); the logits of the same batches.
    model, meta = load_model(ckpt)
    data = load_fashion_mnist()
    norm = meta["data_norm"]
    loader = BatchLoader(data.test_images[:n], data.test_labels[:n], batch, norm["mean"], norm["std"],
                         shuffle=False, prefetch=0)
    _, accuracy, _ = evaluate(model, loader)
    model.eval()
    xs, logits = [], []
    for _, x, _ in loader.epoch(0):
        xs.append(x)
        logits.append(model.forward(x))
    py_x, py_logits = np.concatenate(xs), np.concatenate(logits)

    # pyadr_model_normalize is the loader's arithmetic (x * (1/(255 std)) - mean/std in float32)
    np.testing.assert_array_equal(c_x, py_x)
    # Same kernels, same batches, same inputs on both sides (bit-identical here with the builtin
    # GEMM); 1e-5 of the logit scale only allows for a summation-order change (a BLAS provider,
    # another SIMD level), far below what a wrong layer moves (see test_c_example_matches_python).
    scale = np.abs(py_logits).max()
    assert scale > 1e-2
    np.testing.assert_allclose(c_logits, py_logits, rtol=1e-5, atol=1e-5 * scale)
    top2 = np.sort(py_logits, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-4 * scale    # ties within the tolerance may go either way
    assert clear.mean() > 0.99
    np.testing.assert_array_equal(c_logits.argmax(1)[clear], py_logits.argmax(1)[clear])
    assert 0.5 < accuracy < 1.0                        # trained: far above chance (0.1)
    line = next(l for l in out.splitlines() if l.startswith("accuracy"))
    c_accuracy = float(line.split("exact")[1].split("%")[0]) / 100
    assert abs(c_accuracy - accuracy) <= 0.5 / n       # printed with two decimals of a percent
