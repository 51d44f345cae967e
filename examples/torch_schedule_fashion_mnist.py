"""A plain PyTorch training loop on Fashion-MNIST whose reuse is driven by pyadr's schedules
(pyadr.torch.ReuseScheduler: one `sched.step(loss)` per step).

    python examples/torch_schedule_fashion_mnist.py [--strategy adaptive|tuned|fixed|ladder|exact]
                                                    [--epochs 1] [--limit 20000] [--batch 128]

The model is CifarNet-shaped (conv 5x5 64 -> ReLU -> maxpool 3/2 -> conv 5x5 64 -> ReLU ->
maxpool 3/2 -> FC 384 -> 192 -> 10), written with torch.nn layers and converted by
pyadr.torch.convert. The scheduler picks the reusing layers (every conv but the first), changes
their `reuse` between steps and logs each decision with its reason.
"""
import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

import pyadr.torch as pt
from pyadr.torch import ReuseScheduler
from pyadr.train.data import load_fashion_mnist


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
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x.flatten(1))))))


def tensors(images, labels, d):
    x = (images.astype(np.float32) / 255.0 - d.mean[0]) / d.std[0]
    return torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64))


def accuracy(model, x, y, batch=500):
    model.eval()
    with torch.no_grad():
        correct = sum((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item()
                      for i in range(0, len(x), batch))
    model.train()
    return correct / len(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--strategy", default="adaptive", choices=("exact", "fixed", "ladder", "adaptive", "tuned"))
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--limit", type=int, default=20000, help="training images used (0: all 60000)")
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    d = load_fashion_mnist()
    xtr, ytr = tensors(d.train_images, d.train_labels, d)
    xte, yte = tensors(d.test_images, d.test_labels, d)
    if a.limit:
        xtr, ytr = xtr[:a.limit], ytr[:a.limit]
    model = pt.convert(CifarNet())                   # every Conv2d/Linear now runs in pyadr (exact)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9)
    per_epoch = (len(xtr) + a.batch - 1) // a.batch
    probes = [(xtr[i:i + a.batch], ytr[i:i + a.batch]) for i in (0, a.batch)]
    options = {"fixed": {"rungs": [{"L": 64, "H": 12, "hash": "l2"}]},
               "tuned": {"retune_every": 100}}.get(a.strategy, {})
    t0 = time.perf_counter()
    sched = ReuseScheduler(model, a.strategy, probes=probes, total_steps=a.epochs * per_epoch,
                           steps_per_epoch=per_epoch, log=print, **options)
    print(f"schedule set up in {time.perf_counter() - t0:.1f} s", flush=True)
    step = 0
    for epoch in range(a.epochs):
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr), a.batch):
            idx = perm[i:i + a.batch]
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step(loss)
            if step % 50 == 0:
                stats = model.conv2.last_stats
                print(f"step {step:5d}  loss {loss.item():.4f}  conv2 {sched.labels()['conv2']}  "
                      f"rc {stats.rc if stats is not None else 1.0:.3f}  {time.perf_counter() - t0:6.1f} s", flush=True)
            step += 1
        print(f"epoch {epoch + 1}: test accuracy {accuracy(model, xte, yte):.4f} "
              f"({time.perf_counter() - t0:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
