"""The non-convolution parts of a CifarNet and a VGG-11 training step (ReLU, pooling, LRN, batch
norm, linear, dropout, the SGD step), each op's forward + backward on the activations of a real
forward at Fashion-MNIST shapes, batch 128; `extra_info`: the bytes it must move. The table with
the copy-bandwidth bound, the ratio and PyTorch side by side is bench/nn_ops_table.py."""
import pytest

from conftest import pedantic
from nn_ops_table import build_ops

_OPS = {}


def _ops(model):
    if model not in _OPS:
        _OPS[model] = {op.label: op for op in build_ops(model, 128, torch_ok=False)}
    return _OPS[model]


def _labels(model):
    # the labels only (no model is built at collection time)
    # (ReLUs fused into their neighbour, as Sequential runs them in training, are timed with it)
    return {"cifarnet": ["2:ReLU+MaxPool2d (64, 28, 28)", "3:LocalResponseNorm (64, 14, 14)", "5:ReLU (64, 14, 14)",
                         "7:MaxPool2d (64, 14, 14)", "9:Linear (3136,)", "SGD m=0.9", "SGD m=0.9 before"],
            "vgg11": ["1:BatchNorm2d+ReLU (64, 28, 28)", "1:BatchNorm2d (64, 28, 28) before",
                      "3:MaxPool2d (64, 28, 28)", "5:BatchNorm2d+ReLU (128, 14, 14)", "SGD m=0.9",
                      "SGD m=0.9 before"]}[model]


@pytest.mark.parametrize("model,label", [(m, lab) for m in ("cifarnet", "vgg11") for lab in _labels(m)])
def test_nn_op_fwd_bwd(benchmark, fashion, bench_threads, model, label):
    op = _ops(model)[label]
    pedantic(benchmark, op.run)
    benchmark.extra_info.update(bytes=sum(op.bytes), category=op.category)
