"""pyadr.torch layers inside torch.nn.parallel.DistributedDataParallel (gloo, CPU): gradients
synchronise (both ranks end with the same weights) and a 2-process run matches the 1-process run
of the same global batch. Each process is tests/ddp_worker.py, run with a timeout."""
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("torch")
import torch.distributed  # noqa: E402

if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
    pytest.skip("this torch build has no gloo backend", allow_module_level=True)

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ddp_worker.py")


def run_world(tmp_path, world, reuse=False):
    init = str(tmp_path / f"init-{world}-{reuse}")
    outs = [str(tmp_path / f"w{world}-r{r}-{reuse}.npz") for r in range(world)]
    env = dict(os.environ, GLOO_SOCKET_IFNAME=os.environ.get("GLOO_SOCKET_IFNAME", "lo"))
    procs = [subprocess.Popen([sys.executable, WORKER, str(r), str(world), init, outs[r]]
                              + (["--reuse"] if reuse else []),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for r in range(world)]
    try:
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    return [np.load(o) for o in outs]


def params(npz):
    return {k: npz[k] for k in npz.files if k.startswith("param/")}


def test_ddp_two_processes_match_one_process_of_the_global_batch(tmp_path):
    (one,) = run_world(tmp_path, 1)
    r0, r1 = run_world(tmp_path, 2)
    for k, v in params(r0).items():
        np.testing.assert_array_equal(v, r1[k], err_msg=f"{k}: ranks differ")
        np.testing.assert_allclose(v, one[k], rtol=1e-5, atol=1e-6, err_msg=f"{k}: 2 ranks vs 1")
    np.testing.assert_allclose(r0["losses"], one["losses"], rtol=1e-5)
    assert one["losses"][-1] < one["losses"][0]


def test_ddp_with_reuse_keeps_the_ranks_in_sync(tmp_path):
    r0, r1 = run_world(tmp_path, 2, reuse=True)
    assert 0 < float(r0["rc"]) < 1 and 0 < float(r1["rc"]) < 1       # reuse did cluster
    p0, p1 = params(r0), params(r1)
    for k in p0:
        np.testing.assert_array_equal(p0[k], p1[k], err_msg=f"{k}: ranks differ")
    assert np.isfinite(r0["losses"]).all() and r0["losses"][-1] < r0["losses"][0]
