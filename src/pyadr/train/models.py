"""Model zoo: CifarNet, AlexNet and VGG-11/16/19 adapted to 28x28 and 32x32 inputs, plus a tiny
network for tests and smoke runs. Channel and FC widths scale with `width`; weights are drawn
like PyTorch's defaults from a Generator seeded with `seed`.

A model is a `pyadr.nn.Sequential`; `engine_layers(model)` names its Conv2d/Linear layers
conv1, conv2, ..., fc1, fc2, ... in forward order (the names used by the schedule and the logs).
"""
from __future__ import annotations

import numpy as np

from .. import nn

VGG_CONFIGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}
MODEL_NAMES = ("cifarnet", "alexnet", "vgg11", "vgg16", "vgg19", "tiny")


def _scaled(channels, width):
    return max(1, int(round(channels * width)))


def _classifier_input(features, in_shape):
    shape = features.output_shape(in_shape)
    return int(np.prod(shape))


def cifarnet(in_shape, num_classes, width, rng):
    """TensorFlow's CifarNet: conv5x5 64 - relu - maxpool 3/2 - LRN - conv5x5 64 - relu - LRN -
    maxpool 3/2 - FC 384 - FC 192 - classes (7x7x64 into the FC on 28x28 inputs).
    LRN is TF's lrn(depth_radius=4, bias=1, alpha=0.001/9, beta=0.75) = PyTorch LRN(9, 0.001)."""
    c = _scaled(64, width)
    features = nn.Sequential(
        nn.Conv2d(in_shape[0], c, 5, padding=2, rng=rng), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
        nn.LocalResponseNorm(9, alpha=0.001, beta=0.75, k=1.0),
        nn.Conv2d(c, c, 5, padding=2, rng=rng), nn.ReLU(),
        nn.LocalResponseNorm(9, alpha=0.001, beta=0.75, k=1.0), nn.MaxPool2d(3, 2, 1), nn.Flatten())
    f = _classifier_input(features, in_shape)
    fc1, fc2 = _scaled(384, width), _scaled(192, width)
    return nn.Sequential(*features, nn.Linear(f, fc1, rng=rng), nn.ReLU(),
                         nn.Linear(fc1, fc2, rng=rng), nn.ReLU(), nn.Linear(fc2, num_classes, rng=rng))


def alexnet(in_shape, num_classes, width, rng):
    """AlexNet for small images: five 3x3 convolutions (64-192-384-256-256), three 2x2 max-pools,
    dropout and two FC 1024 layers."""
    chans = [_scaled(c, width) for c in (64, 192, 384, 256, 256)]
    layers, c_in = [], in_shape[0]
    for i, c in enumerate(chans):
        layers += [nn.Conv2d(c_in, c, 3, padding=1, rng=rng), nn.ReLU()]
        if i in (0, 1, 4):
            layers.append(nn.MaxPool2d(2))
        c_in = c
    features = nn.Sequential(*layers, nn.Flatten())
    f, hidden = _classifier_input(features, in_shape), _scaled(1024, width)
    return nn.Sequential(*features, nn.Dropout(0.5), nn.Linear(f, hidden, rng=rng), nn.ReLU(),
                         nn.Dropout(0.5), nn.Linear(hidden, hidden, rng=rng), nn.ReLU(),
                         nn.Linear(hidden, num_classes, rng=rng))


def vgg(name, in_shape, num_classes, width, rng):
    """VGG with batch norm; a 2x2 max-pool is skipped once the feature map is 1 pixel (28x28
    inputs reach 1x1 after four pools). Classifier: FC 512 - relu - dropout - classes."""
    layers, shape = [], tuple(in_shape)
    for v in VGG_CONFIGS[name]:
        if v == "M":
            if min(shape[1:]) >= 2:
                layers.append(nn.MaxPool2d(2))
                shape = layers[-1].output_shape(shape)
            continue
        c = _scaled(v, width)
        layers += [nn.Conv2d(shape[0], c, 3, padding=1, rng=rng), nn.BatchNorm2d(c), nn.ReLU()]
        shape = (c,) + shape[1:]
    features = nn.Sequential(*layers, nn.Flatten())
    f, hidden = _classifier_input(features, in_shape), _scaled(512, width)
    return nn.Sequential(*features, nn.Linear(f, hidden, rng=rng), nn.ReLU(), nn.Dropout(0.5),
                         nn.Linear(hidden, num_classes, rng=rng))


def tiny(in_shape, num_classes, width, rng):
    """Two small convolutions and one FC layer: for tests and smoke runs."""
    c1, c2 = _scaled(4, width), _scaled(8, width)
    features = nn.Sequential(
        nn.Conv2d(in_shape[0], c1, 3, padding=1, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1, rng=rng), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
    return nn.Sequential(*features, nn.Linear(_classifier_input(features, in_shape), num_classes, rng=rng))


def build_model(name, in_shape, num_classes, width=1.0, seed=0):
    """A freshly initialised model. in_shape = (channels, height, width) of one image."""
    if name not in MODEL_NAMES:
        raise ValueError(f"model must be one of {', '.join(MODEL_NAMES)}; got {name!r}")
    if not (isinstance(width, (int, float)) and width > 0):
        raise ValueError(f"width must be a number > 0, got {width!r}")
    in_shape = tuple(int(v) for v in in_shape)
    if len(in_shape) != 3 or min(in_shape) < 1:
        raise ValueError(f"in_shape must be (channels, height, width), got {in_shape!r}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    rng = np.random.default_rng(seed)
    if name == "cifarnet":
        model = cifarnet(in_shape, num_classes, width, rng)
    elif name == "alexnet":
        model = alexnet(in_shape, num_classes, width, rng)
    elif name == "tiny":
        model = tiny(in_shape, num_classes, width, rng)
    else:
        model = vgg(name, in_shape, num_classes, width, rng)
    first = model
    while list(first.children()):
        first = next(iter(first.children()))
    if isinstance(first, nn.Conv2d):
        first.input_grad = False     # the images need no gradient: skip the first layer's dX
    return model


def engine_layers(model):
    """[(name, layer)] of the model's Conv2d (conv1, conv2, ...) and Linear (fc1, ...) layers."""
    out, n_conv, n_fc = [], 0, 0
    for _, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d):
            n_conv += 1
            out.append((f"conv{n_conv}", mod))
        elif isinstance(mod, nn.Linear):
            n_fc += 1
            out.append((f"fc{n_fc}", mod))
    return out


def dropout_layers(model):
    return [mod for _, mod in model.named_modules() if isinstance(mod, nn.Dropout)]
