"""Train a small CNN on Fashion-MNIST in PyTorch with pyadr layers and a coarse-to-fine reuse
schedule driven from the ordinary training loop (pyadr.torch.set_reuse between steps).

    python examples/torch_fashion_mnist.py [--epochs 2] [--batch 128] [--limit 20000]
                                           [--export model.npz] [--exact]

The model is CifarNet-shaped (conv 5x5 64 -> ReLU -> maxpool 3/2 -> conv 5x5 64 -> ReLU ->
maxpool 3/2 -> FC 384 -> 192 -> 10). conv2 runs with deep reuse: l2 L=64 H=12 in the first 40 %
of training, H=16 next, exact for the last quarter (the adaptive schedule of the ICDE 2019 paper
in its simplest form, with pyadr's default rungs). --export writes the trained weights as .npz with
the names pyadr.export expects (then: pyadr export model.npz model.bin).
"""
import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

import pyadr
from pyadr.train.data import load_fashion_mnist
import pyadr.torch as pt

def load(data):
    """Standardised (N, 1, 28, 28) float32 images and int64 labels of one split, as tensors."""
    images, labels, d = data
    return torch.from_numpy((images.astype(np.float32) / 255.0 - d.mean[0]) / d.std[0]), torch.from_numpy(labels)


class CifarNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 64, 5, padding=2)
        self.conv2 = torch.nn.Conv2d(64, 64, 5, padding=2)
        self.fc1 = torch.nn.Linear(64 * 7 * 7, 384)
        self.fc2 = torch.nn.Linear(384, 192)
        self.fc3 = torch.nn.Linear(192, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 3, 2, 1)
        x = F.max_pool2d(F.relu(self.conv2(x)), 3, 2, 1)
        x = x.flatten(1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


def schedule(progress):
    """Coarse-to-fine reuse for conv2 as a function of training progress in [0, 1]: pyadr's default
    rungs for a 64-channel layer (l2 hashing of each input pixel's channels, L = C = 64: rc ~0.2-0.35
    with H = 12 while training on this data), then exact for the last quarter."""
    if progress < 0.4:
        return pyadr.ReuseConfig(L=64, H=12, hash="l2", seed=0)
    if progress < 0.75:
        return pyadr.ReuseConfig(L=64, H=16, hash="l2", seed=0)
    return None


def evaluate(model, x, y, batch=500):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            correct += (model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item()
    model.train()
    return correct / len(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--limit", type=int, default=20000, help="training images used (0: all 60000)")
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--exact", action="store_true", help="no reuse (baseline)")
    ap.add_argument("--export", help="write the trained weights to this .npz")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    d = load_fashion_mnist()   # pyadr's reader: the Debian package's IDX files
    xtr, ytr = load((d.train_images, d.train_labels, d))
    xte, yte = load((d.test_images, d.test_labels, d))
    if a.limit:
        xtr, ytr = xtr[:a.limit], ytr[:a.limit]
    model = CifarNet()
    # conv1 (K=25) and conv2 run in pyadr (conv1 exact, conv2 gets the reuse schedule); the FC
    # layers stay PyTorch's (convert's default; linear=True would swap them too).
    pt.convert(model, lambda name, m: None)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9)
    steps = a.epochs * ((len(xtr) + a.batch - 1) // a.batch)
    step, t0 = 0, time.perf_counter()
    for epoch in range(a.epochs):
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr), a.batch):
            cfg = None if a.exact else schedule(step / steps)
            pt.set_reuse(model, lambda name, m: cfg if name == "conv2" else False)
            idx = perm[i:i + a.batch]
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step % 50 == 0:
                rc = model.conv2.last_stats.rc if model.conv2.last_stats is not None else 1.0
                print(f"step {step:5d}/{steps}  loss {loss.item():.4f}  conv2 {cfg!r}  rc {rc:.4f}  "
                      f"{time.perf_counter() - t0:7.1f}s", flush=True)
            step += 1
        pt.set_reuse(model, None)
        print(f"epoch {epoch + 1}: test accuracy {evaluate(model, xte, yte):.4f} "
              f"({time.perf_counter() - t0:.1f}s)", flush=True)
    if a.export:
        arrays = {k: v.detach().numpy() for k, v in model.state_dict().items()}
        np.savez(a.export, **arrays)
        print(f"wrote {a.export} (then: pyadr export {a.export} model.bin)")


if __name__ == "__main__":
    main()
