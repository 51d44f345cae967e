"""Softmax cross-entropy (mean over the batch), numerically stable."""
from __future__ import annotations

import numpy as np

from .backend import array_module


def softmax_cross_entropy(logits, labels):
    """(loss float, dlogits, correct count) for logits (B, classes) and integer labels (B,)."""
    xp = array_module(logits)
    if logits.ndim != 2:
        raise ValueError(f"logits must be (batch, classes), got shape {logits.shape}")
    if labels.shape != (logits.shape[0],):
        raise ValueError(f"labels must have shape ({logits.shape[0]},), got {labels.shape}")
    B = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = xp.exp(shifted)
    total = exp.sum(axis=1, keepdims=True)
    rows = xp.arange(B)
    log_prob_true = shifted[rows, labels] - xp.log(total[:, 0])
    loss = float(-log_prob_true.astype(xp.float64).mean())
    grad = exp / total
    grad[rows, labels] -= 1
    grad *= logits.dtype.type(1.0 / B)
    correct = int((logits.argmax(axis=1) == labels).sum())
    return loss, grad, correct


def cross_entropy_loss(logits, labels):
    """Loss and correct count only (evaluation)."""
    xp = array_module(logits)
    shifted = logits - logits.max(axis=1, keepdims=True)
    logsum = xp.log(xp.exp(shifted).sum(axis=1))
    rows = xp.arange(logits.shape[0])
    losses = (logsum - shifted[rows, labels]).astype(xp.float64)
    return float(losses.sum()), int((logits.argmax(axis=1) == labels).sum())
