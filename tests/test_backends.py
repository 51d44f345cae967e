"""The backend fixture itself (tests/_backends.py, conftest.py): the emulated backend really runs
pyadr.* through pyadr.gpu and the host kernels, results come back as NumPy, and
PYADR_REQUIRE_GPU=1 turns the cuda skip into a failure."""
import os
import subprocess
import sys

import numpy as np
import pytest

import pyadr

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_public_api_runs_on_the_backend(backend, rng):
    x, w = backend.put(rng.standard_normal((1, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3)))
    backend.launched.clear()
    y, ctx = pyadr.conv2d_forward(x, w, reuse=pyadr.ReuseConfig(L=6, H=4))
    assert ctx.device == ("gpu" if backend.is_gpu else "cpu")
    assert isinstance(y, backend.xp.ndarray)
    assert type(backend.to_numpy(y)) is np.ndarray
    if backend.name == "emulated":
        assert {"im2col_blocks", "segment_sum", "gather_add"} <= set(backend.launched)
    if backend.is_gpu:       # a host array must not be taken for a device one, nor the reverse
        with pytest.raises(AssertionError, match="not a device array"):
            backend.to_numpy(np.zeros(3))


def test_require_gpu_turns_the_cuda_skip_into_a_failure(tmp_path):
    import _backends
    if not isinstance(_backends.cuda_backend(), str):
        pytest.skip("a CUDA device is present: the cuda backend runs")
    env = dict(os.environ, PYADR_REQUIRE_GPU="1")
    # cwd is not ROOT: `python -m` would then import the checkout's pyadr instead of the installed one
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "cuda",
                        os.path.join(ROOT, "tests", "test_gpu_errors.py")],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert r.returncode != 0, r.stdout
    assert "PYADR_REQUIRE_GPU=1 but the cuda backend cannot run" in r.stdout
