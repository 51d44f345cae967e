"""PyTorch's default initialisation of Conv2d/Linear (kaiming_uniform_ with a = sqrt(5)), drawn
from a seeded NumPy Generator: weights and biases both uniform in ±1/sqrt(fan_in)."""
from __future__ import annotations

import math

import numpy as np


def default_uniform(rng: np.random.Generator, shape, fan_in: int, dtype=np.float32) -> np.ndarray:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return rng.uniform(-bound, bound, size=shape).astype(dtype)
