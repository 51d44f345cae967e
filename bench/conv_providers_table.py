"""Exact convolution, forward / dX / dW separately: builtin vs oneDNN provider vs PyTorch.

    python bench/conv_providers_table.py --threads 2 --repeats 9            # CifarNet conv2 + VGG-11
    python bench/conv_providers_table.py --layers cifarnet-conv2,vgg11-conv4

Layers: CifarNet conv2 on its real input (pyadr.cli.bench_workloads.layer("conv2"): Fashion-MNIST,
batch 128) and every convolution of VGG-11 as `pyadr train --model vgg11` builds it for 28x28
Fashion-MNIST (batch 128; the activations are relu(N(0, 1)): the time of a dense convolution
does not depend on the values). For each layer, each candidate and each product it times, in
ONE process, interleaved (the candidate order rotates every repeat), and prints medians:

  fwd  y = conv(x, w) + b                 pyadr.conv2d_forward / F.conv2d
  dX   the input gradient alone           the core's exact backward with dW, db not asked for /
                                          aten.convolution_backward(output_mask=[1, 0, 0])
  dW   the weight and bias gradients      conv2d_backward(input_grad=False) /
                                          aten.convolution_backward(output_mask=[0, 1, 1])

then the ratio (fwd + dX + dW) / torch's per candidate ("x torch", < 1: faster than PyTorch).
VGG-11's first layer needs no dX in training (the images): its dX is timed all the same.

--providers picks the candidates (builtin, onednn, torch). --baseline DIR adds "base builtin":
another pyadr build, installed with `pip install --no-deps --target DIR .` from an older commit,
timed in a worker process (PYTHONPATH=DIR, builtin provider) interleaved with the others, so a
change is measured before/after in one run; "new/base" is then builtin's time over base's per
product (< 1: the change is faster):

    python bench/conv_providers_table.py --providers builtin --baseline /tmp/pyadr-base --repeats 5
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np

VGG11 = [(1, 64, 28), (64, 128, 14), (128, 256, 7), (256, 256, 7), (256, 512, 3), (512, 512, 3),
         (512, 512, 1), (512, 512, 1)]   # (C, M, H = W) of each 3x3 pad-1 convolution on 28x28 inputs
LAYERS = ["cifarnet-conv2"] + [f"vgg11-conv{i + 1}" for i in range(len(VGG11))]


def workload(name, batch):
    """(x, w, b, stride, padding) float32 of a named layer."""
    if name == "cifarnet-conv2":
        from pyadr.cli.bench_workloads import layer
        x, w, b, s, p = layer("conv2", batch)
        return np.array(x), np.array(w), np.array(b), s, p
    C, M, H = VGG11[int(name.split("conv")[1]) - 1]
    rng = np.random.default_rng(len(name) + C + M)
    x = np.maximum(rng.standard_normal((batch, C, H, H)), 0).astype(np.float32)
    w = (rng.standard_normal((M, C, 3, 3)) * np.sqrt(2.0 / (9 * C))).astype(np.float32)
    return x, w, (rng.standard_normal(M) * 0.01).astype(np.float32), 1, 1


class PyadrCandidate:
    def __init__(self, provider, x, w, b, s, p, dy):
        import pyadr
        from pyadr import _native
        from pyadr._checks import DTYPE_CODES
        self.label, self.pyadr, self.nat = f"pyadr {provider}", pyadr, _native
        self.provider, self.args, self.dy, self.code = provider, (x, w, b, s, p), dy, DTYPE_CODES[x.dtype]
        self.dx = np.empty_like(x)

    def run(self, op):
        self.pyadr.set_conv_provider(self.provider)
        x, w, b, s, p = self.args
        y, ctx = self.pyadr.conv2d_forward(x, w, b, s, p)
        if op == "dX":    # the input gradient alone (the API computes dW with it)
            t0 = time.perf_counter()
            self.nat.conv_backward_exact(self.code, ctx.geom, x, w, self.dy, self.dx, None, None)
            return time.perf_counter() - t0
        if op == "dW":
            t0 = time.perf_counter()
            self.pyadr.conv2d_backward(self.dy, ctx, input_grad=False)
            return time.perf_counter() - t0
        t0 = time.perf_counter()
        self.pyadr.conv2d_forward(x, w, b, s, p)
        return time.perf_counter() - t0


class BaselineCandidate:
    """The builtin provider of another pyadr build (--baseline DIR), in a worker process."""

    def __init__(self, directory, threads):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([directory] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
                   PYADR_CONV_PROVIDER="builtin")
        self.label = "base builtin"
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", "--threads", str(threads)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd="/")
        self.where = self._ask("where")

    def _ask(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        if not answer:
            raise RuntimeError(f"baseline worker died on {line!r}")
        return answer

    def setup(self, name, batch):
        self._ask(f"setup {name} {batch}")

    def run(self, op):
        return float(self._ask(op))

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def worker(threads):
    """--worker: answers `where`, `setup LAYER BATCH` and `fwd|dX|dW` (seconds) on stdin/stdout."""
    import pyadr
    pyadr.set_num_threads(threads)
    cand = None
    for line in sys.stdin:
        words = line.split()
        if words[0] == "where":
            out = os.path.dirname(pyadr.__file__)
        elif words[0] == "setup":
            batch = int(words[2])
            x, w, b, s, p = workload(words[1], batch)
            cand = PyadrCandidate("builtin", x, w, b, s, p, layer_dy(x, w, s, p, batch))
            out = "ok"
        else:
            out = repr(cand.run(words[0]))
        print(out, flush=True)
    return 0


def layer_dy(x, w, s, p, batch):
    OH, OW = ((n + 2 * p - k) // s + 1 for n, k in zip(x.shape[2:], w.shape[2:]))
    return np.random.default_rng(3).standard_normal((batch, w.shape[0], OH, OW)).astype(np.float32)


class TorchCandidate:
    def __init__(self, torch, x, w, b, s, p, dy):
        self.label, self.torch = "torch", torch
        self.x, self.w, self.b = (torch.from_numpy(a) for a in (x, w, b))
        self.dy, self.s, self.p = torch.from_numpy(dy), [s, s], [p, p]

    def run(self, op):
        t, F = self.torch, self.torch.nn.functional
        with t.no_grad():
            t0 = time.perf_counter()
            if op == "fwd":
                F.conv2d(self.x, self.w, self.b, self.s, self.p)
            else:
                mask = [True, False, False] if op == "dX" else [False, True, True]
                t.ops.aten.convolution_backward(self.dy, self.x, self.w, [self.w.shape[0]], self.s, self.p, [1, 1],
                                                False, [0, 0], 1, mask)
            return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", default=",".join(LAYERS), help=f"comma list of {', '.join(LAYERS)}")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--providers", default="builtin,onednn,torch",
                    help="comma list of builtin, onednn, torch (those unavailable are left out)")
    ap.add_argument("--baseline", metavar="DIR", help="also time the builtin provider of the pyadr installed "
                    "under DIR (pip install --no-deps --target DIR), in a worker process")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        return worker(a.threads)
    want = {w.strip() for w in a.providers.split(",") if w.strip()}
    unknown = want - {"builtin", "onednn", "torch"}
    if unknown:
        ap.error(f"--providers: unknown {', '.join(sorted(unknown))} (expected builtin, onednn, torch)")
    import pyadr
    from pyadr import _onednn
    from pyadr.cli.bench_workloads import import_torch
    pyadr.set_num_threads(a.threads)
    providers = [p for p in ("builtin", "onednn") if p in want and (p == "builtin" or _onednn.load())]
    torch, why = import_torch() if "torch" in want else (None, "not asked for")
    if torch is not None:
        torch.set_num_threads(a.threads)
    base = BaselineCandidate(a.baseline, a.threads) if a.baseline else None
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    print(f"CPU: {cpu}, {os.cpu_count()} logical CPUs, load average {os.getloadavg()[0]:.2f}; {a.threads} threads; "
          f"batch {a.batch}; {a.repeats} interleaved repeats, medians in ms")
    print(f"pyadr conv exact: {_onednn.describe()}; simd {pyadr._native.info()['simd']}; {os.path.dirname(pyadr.__file__)}")
    if base:
        print(f"base builtin: {base.where}")
    print(f"torch: {torch.__version__ if torch else 'unavailable (' + str(why) + ')'}")
    ops = ("fwd", "dX", "dW")
    labels = [f"pyadr {p}" for p in providers] + (["base builtin"] if base else []) + (["torch"] if torch else [])
    n_pyadr = len(labels) - (1 if torch else 0)
    head = f"{'layer':<15} {'x':>18} {'w':>16}  " + "  ".join(f"{lb + ' fwd/dX/dW':>26}" for lb in labels)
    if torch:
        head += "  " + "  ".join(f"{'x torch ' + lb.split()[-2 if lb.startswith('base') else -1]:>16}"
                                 for lb in labels[:n_pyadr])
    both = base and "builtin" in providers
    if both:
        head += f"  {'new/base fwd/dX/dW, sum':>26}"
    print(head)
    print("-" * len(head))
    for name in a.layers.split(","):
        name = name.strip()
        x, w, b, s, p = workload(name, a.batch)
        dy = layer_dy(x, w, s, p, a.batch)
        cands = [PyadrCandidate(pr, x, w, b, s, p, dy) for pr in providers]
        if base:
            base.setup(name, a.batch)
            cands.append(base)
        if torch is not None:
            cands.append(TorchCandidate(torch, x, w, b, s, p, dy))
        times = {(c.label, op): [] for c in cands for op in ops}
        for r in range(a.repeats + 1):                       # the first round warms up (plans, caches)
            k = r % len(cands)
            for c in cands[k:] + cands[:k]:
                for op in ops:
                    dt = c.run(op)
                    if r:
                        times[(c.label, op)].append(dt)
        med = {key: statistics.median(v) * 1e3 for key, v in times.items()}
        cells = ["/".join(f"{med[(c.label, op)]:.1f}" for op in ops) for c in cands]
        line = f"{name:<15} {str(x.shape):>18} {str(w.shape):>16}  " + "  ".join(f"{c:>26}" for c in cells)
        total = {c.label: sum(med[(c.label, op)] for op in ops) for c in cands}
        if torch is not None:
            line += "  " + "  ".join(f"{total[c.label] / total['torch']:>16.2f}" for c in cands[:n_pyadr])
        if both:
            ratios = "/".join(f"{med[('pyadr builtin', op)] / med[('base builtin', op)]:.2f}" for op in ops)
            line += f"  {ratios + ', ' + format(total['pyadr builtin'] / total['base builtin'], '.2f'):>26}"
        print(line, flush=True)
    if base:
        base.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
