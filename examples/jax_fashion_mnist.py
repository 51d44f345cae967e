"""Fashion-MNIST with JAX arrays through pyadr's NumPy-level API (JAX optional).

pyadr's public functions take JAX CPU arrays directly (converted zero-copy via DLPack and handed
back as JAX arrays), so a small network can be trained with pyadr doing the convolutions and
their gradients, deep reuse on conv2, and jax.numpy doing the rest:

    python examples/jax_fashion_mnist.py [--steps 200] [--batch 128]

Model: conv 5x5 32 (pad 2) -> ReLU -> 2x2 subsample -> conv 5x5 32 (pad 2, reuse) -> ReLU ->
2x2 subsample -> linear 10. Gradients by hand: pyadr.conv2d_backward / linear_backward.
"""
import argparse
import sys
import time

import numpy as np

try:
    import jax
    import jax.numpy as jnp
except ImportError:
    sys.exit("this example needs JAX (pip install jax); pyadr itself does not")

import pyadr
from pyadr.train.data import load_fashion_mnist

def load(data):
    """Standardised (N, 1, 28, 28) float32 images and int32 labels of one split, as JAX arrays."""
    images, labels, d = data
    return jnp.asarray((images.astype(np.float32) / 255.0 - d.mean[0]) / d.std[0]), jnp.asarray(labels.astype(np.int32))


def init(key):
    k1, k2, k3 = jax.random.split(key, 3)
    he = lambda k, shape, fan: jax.random.normal(k, shape, jnp.float32) * np.sqrt(2.0 / fan)
    return {"w1": he(k1, (32, 1, 5, 5), 25), "b1": jnp.zeros(32, jnp.float32),
            "w2": he(k2, (32, 32, 5, 5), 800), "b2": jnp.zeros(32, jnp.float32),
            "w3": he(k3, (10, 32 * 7 * 7), 1568), "b3": jnp.zeros(10, jnp.float32)}


def forward(p, x, reuse):
    y1, c1 = pyadr.conv2d_forward(x, p["w1"], p["b1"], padding=2)
    a1 = jnp.maximum(y1, 0)[:, :, ::2, ::2]
    y2, c2 = pyadr.conv2d_forward(a1, p["w2"], p["b2"], padding=2, reuse=reuse)
    a2 = jnp.maximum(y2, 0)[:, :, ::2, ::2]
    logits, c3 = pyadr.linear_forward(a2.reshape(a2.shape[0], -1), p["w3"], p["b3"])
    return logits, (y1, c1, y2, c2, c3)


def loss_and_grads(p, x, y, reuse):
    logits, (y1, c1, y2, c2, c3) = forward(p, x, reuse)
    prob = jax.nn.softmax(logits)
    loss = -jnp.mean(jnp.log(prob[jnp.arange(len(y)), y] + 1e-12))
    dlogits = (prob - jax.nn.one_hot(y, 10)) / len(y)
    da2, dw3, db3 = pyadr.linear_backward(dlogits, c3)
    dy2 = jnp.zeros_like(y2).at[:, :, ::2, ::2].set(da2.reshape(-1, 32, 7, 7)) * (y2 > 0)
    da1, dw2, db2 = pyadr.conv2d_backward(dy2, c2)
    dy1 = jnp.zeros_like(y1).at[:, :, ::2, ::2].set(da1) * (y1 > 0)
    _, dw1, db1 = pyadr.conv2d_backward(dy1, c1)
    return loss, {"w1": dw1, "b1": db1, "w2": dw2, "b2": db2, "w3": dw3, "b3": db3}, c2


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.05)
    a = ap.parse_args()
    d = load_fashion_mnist()   # pyadr's reader: the Debian package's IDX files
    xtr, ytr = load((d.train_images, d.train_labels, d))
    xte, yte = load((d.test_images, d.test_labels, d))
    p = init(jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for step in range(a.steps):
        progress = step / a.steps
        reuse = (pyadr.ReuseConfig(L=32, H=8) if progress < 0.5 else
                 pyadr.ReuseConfig(L=16, H=12) if progress < 0.8 else None)
        idx = rng.integers(0, len(xtr), a.batch)
        loss, g, c2 = loss_and_grads(p, xtr[idx], ytr[idx], reuse)
        p = {k: p[k] - a.lr * g[k] for k in p}
        if step % 20 == 0:
            rc = c2.stats.rc if c2.stats is not None else 1.0
            print(f"step {step:4d} loss {float(loss):.4f} rc {rc:.4f} {time.perf_counter() - t0:6.1f}s")
    correct = 0
    for i in range(0, 2000, 500):
        logits, _ = forward(p, xte[i:i + 500], None)
        correct += int((jnp.argmax(logits, 1) == yte[i:i + 500]).sum())
    print(f"test accuracy (first 2000 images): {correct / 2000:.4f}")


if __name__ == "__main__":
    main()
