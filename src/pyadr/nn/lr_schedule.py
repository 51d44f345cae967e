"""Learning-rate schedules as pure functions of the global step (so resuming needs no state)."""
from __future__ import annotations

import math


class ConstantLR:
    def __init__(self, base_lr):
        self.base_lr = float(base_lr)

    def __call__(self, step: int) -> float:
        return self.base_lr


class StepLR:
    """lr = base_lr * gamma ** (number of milestones (in steps) already passed)."""

    def __init__(self, base_lr, milestones, gamma=0.1):
        self.base_lr, self.gamma = float(base_lr), float(gamma)
        self.milestones = sorted(int(m) for m in milestones)
        if any(m < 0 for m in self.milestones):
            raise ValueError(f"milestones must be >= 0, got {milestones!r}")

    def __call__(self, step: int) -> float:
        passed = sum(1 for m in self.milestones if step >= m)
        return self.base_lr * self.gamma ** passed


class CosineLR:
    """Cosine annealing from base_lr to min_lr over total_steps, after an optional linear warmup."""

    def __init__(self, base_lr, total_steps, min_lr=0.0, warmup_steps=0):
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        if not 0 <= warmup_steps < total_steps:
            raise ValueError(f"warmup_steps must be in [0, total_steps), got {warmup_steps}")
        self.base_lr, self.min_lr = float(base_lr), float(min_lr)
        self.total_steps, self.warmup_steps = int(total_steps), int(warmup_steps)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.base_lr * (step + 1) / self.warmup_steps
        t = min(step - self.warmup_steps, self.total_steps - self.warmup_steps)
        frac = t / max(self.total_steps - self.warmup_steps, 1)
        return self.min_lr + 0.5 * (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * frac))


def make_lr_schedule(name, base_lr, total_steps, steps_per_epoch, milestones_epochs=None, gamma=0.1,
                     min_lr=0.0, warmup_steps=0):
    """'constant', 'step' (milestones in epochs, may be fractional) or 'cosine'."""
    if name == "constant":
        return ConstantLR(base_lr)
    if name == "step":
        ms = milestones_epochs if milestones_epochs is not None else []
        return StepLR(base_lr, [round(m * steps_per_epoch) for m in ms], gamma)
    if name == "cosine":
        return CosineLR(base_lr, total_steps, min_lr, warmup_steps)
    raise ValueError(f"lr schedule must be 'constant', 'step' or 'cosine', got {name!r}")
