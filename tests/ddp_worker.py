"""One process of the DDP test (tests/test_torch_ddp.py): pyadr.torch layers trained a few SGD
steps on this rank's half of a fixed global batch, under torch DistributedDataParallel (gloo,
CPU) when WORLD > 1, plain when WORLD == 1.

    python tests/ddp_worker.py RANK WORLD INIT_FILE OUT_NPZ [--reuse]

Writes OUT_NPZ: the final parameters (param/<name>), the per-step global losses and the rc of
the second convolution's last forward (1 when it ran exact)."""
import argparse

import numpy as np
import torch

import pyadr
import pyadr.torch as pt

GLOBAL_BATCH, STEPS = 16, 4


def build(reuse):
    torch.manual_seed(0)
    return torch.nn.Sequential(
        pt.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        pt.Conv2d(4, 8, 3, padding=1, reuse=pyadr.ReuseConfig(L=9, H=6, seed=1) if reuse else None),
        torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(), pt.Linear(8 * 3 * 3, 5))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("rank", type=int)
    p.add_argument("world", type=int)
    p.add_argument("init_file")
    p.add_argument("out")
    p.add_argument("--reuse", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(1)
    pyadr.set_num_threads(1)
    model = build(a.reuse)
    if a.world > 1:
        torch.distributed.init_process_group("gloo", init_method=f"file://{a.init_file}",
                                             rank=a.rank, world_size=a.world)
        net = torch.nn.parallel.DistributedDataParallel(model)
    else:
        net = model
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(GLOBAL_BATCH, 1, 12, 12, generator=gen).round()       # binary images: reuse finds repeats
    y = torch.randint(0, 5, (GLOBAL_BATCH,), generator=gen)
    lo, hi = GLOBAL_BATCH * a.rank // a.world, GLOBAL_BATCH * (a.rank + 1) // a.world
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x[lo:hi]), y[lo:hi])
        loss.backward()
        opt.step()
        total = loss.detach().clone()
        if a.world > 1:
            torch.distributed.all_reduce(total)
            total /= a.world
        losses.append(float(total))
    params = {"param/" + k: v.detach().numpy() for k, v in model.named_parameters()}
    stats = model[3].last_stats
    np.savez(a.out, losses=np.array(losses), rc=np.array(stats.rc if stats is not None else 1.0), **params)
    if a.world > 1:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
