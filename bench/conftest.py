"""pytest-benchmark suite of pyadr (run: python -m pytest bench [--benchmark-disable]).

- Collects bench_*.py here (the project's pytest config only collects test_*.py).
- Pins pyadr (and torch, when importable) to PYADR_BENCH_THREADS threads (default 2).
- Skips everything when Fashion-MNIST is not installed; torch comparisons skip cleanly without torch.
- `python -m pytest bench --benchmark-disable -q` executes every benchmark body once: a smoke test.
"""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

import workloads  # noqa: E402

THREADS = int(os.environ.get("PYADR_BENCH_THREADS", "2"))
ROUNDS = int(os.environ.get("PYADR_BENCH_ROUNDS", "3"))


def pytest_collect_file(file_path, parent):
    # a bench_*.py named on the command line is already collected by pytest itself
    if (file_path.suffix == ".py" and file_path.name.startswith("bench_")
            and file_path.parent == parent.path and not parent.session.isinitpath(file_path)):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


@pytest.fixture(scope="session")
def torch_mod():
    """The torch module (threads set), or skip."""
    torch, why = workloads.import_torch()
    if torch is None:
        pytest.skip(f"torch not available: {why}")
    torch.set_num_threads(THREADS)
    return torch


@pytest.fixture(scope="session", autouse=True)
def bench_threads():
    import pyadr
    pyadr.set_num_threads(THREADS)
    torch, _ = workloads.import_torch()
    if torch is not None:
        torch.set_num_threads(THREADS)
    return THREADS


@pytest.fixture(scope="session")
def fashion():
    if not workloads.available():
        pytest.skip(f"Fashion-MNIST not installed in {workloads.data_dir()} (dataset-fashion-mnist)")
    return workloads


class Workload:
    """A layer with its exact pyadr results (y, dx, dw for a fixed dy), computed once."""

    def __init__(self, name):
        import pyadr
        self.name = name
        self.x, self.w, self.b, self.stride, self.padding = workloads.layer(name)
        self.y, ctx = pyadr.conv2d_forward(self.x, self.w, self.b, self.stride, self.padding)
        self.dy = np.random.default_rng(7).standard_normal(self.y.shape).astype(self.y.dtype)
        self.dx, self.dw, self.db = pyadr.conv2d_backward(self.dy, ctx)
        self.exact_nbytes = ctx.nbytes
        C, kh, kw = self.w.shape[1:]
        self.K = C * kh * kw

    @property
    def args(self):
        return self.x, self.w, self.b, self.stride, self.padding


_WORKLOADS = {}


@pytest.fixture(scope="session")
def get_workload(fashion, bench_threads):
    def get(name):
        if name not in _WORKLOADS:
            _WORKLOADS[name] = Workload(name)
        return _WORKLOADS[name]
    return get


def pedantic(benchmark, fn, setup=None, rounds=None):
    """benchmark.pedantic with a few rounds (one warm-up); with --benchmark-disable: one call."""
    kw = dict(rounds=rounds or ROUNDS, iterations=1, warmup_rounds=1)
    if setup is not None:
        return benchmark.pedantic(fn, setup=setup, **kw)
    return benchmark.pedantic(fn, **kw)
