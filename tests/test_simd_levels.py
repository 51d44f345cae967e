"""Every GEMM kernel the CPU can run (PYADR_SIMD=avx512|avx2|baseline, one subprocess each) gives
the exact convolution's forward, dW and dX of pyadr.reference, on sizes that cut the micro-kernel's
tiles at their edges: M not a multiple of MR, K not a multiple of NR and above the GEMM's column
block (512), more rows than one weight-gradient tile (256), strided and dilated layers."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import pyadr
from pyadr import reference as ref

from _util import DTYPES, assert_close

LEVELS = ("avx512", "avx2", "baseline")

# (B, C, H, W, M, kh, kw, stride, padding, dilation)
GEOMS = [
    (2, 19, 20, 18, 13, 5, 3, 1, 2, 1),    # P = 360 > 256 rows, K = 285, M = 13
    (1, 37, 9, 11, 7, 3, 5, 1, 1, 1),      # K = 555 > 512: two column blocks
    (2, 6, 12, 10, 33, 3, 3, 1, 3, 2),     # dilated, padding > 1, M = 33
    (2, 5, 11, 9, 17, 3, 3, 2, 1, 1),      # stride 2
    (3, 4, 6, 6, 5, 5, 5, 1, 0, 1),        # valid padding, P = 4 < one tile
]

_CHILD = r"""
import json, sys
import numpy as np
import pyadr
from pyadr import _native
geoms, dtypes, out = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
res = {"simd": _native.info()["simd"]}
rng = np.random.default_rng(0)
for gi, (B, C, H, W, M, kh, kw, s, p, d) in enumerate(geoms):
    for dt in dtypes:
        x = rng.standard_normal((B, C, H, W)).astype(dt)
        w = rng.standard_normal((M, C, kh, kw)).astype(dt)
        b = rng.standard_normal(M).astype(dt)
        y, ctx = pyadr.conv2d_forward(x, w, b, stride=s, padding=p, dilation=d)
        dy = rng.standard_normal(y.shape).astype(dt)
        dx, dw, db = pyadr.conv2d_backward(dy, ctx)
        _, dw_only, _ = pyadr.conv2d_backward(dy, ctx, input_grad=False)  # dW alone: deeper tiles
        for name, a in (("x", x), ("w", w), ("b", b), ("y", y), ("dy", dy), ("dx", dx), ("dw", dw), ("db", db),
                        ("dwonly", dw_only)):
            np.save(f"{out}/{gi}_{dt}_{name}.npy", a)
print(json.dumps(res))
"""


def _run_level(level, tmp_path):
    env = dict(os.environ, PYADR_SIMD=level)
    dtypes = [np.dtype(t).name for t in DTYPES]
    proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(GEOMS), json.dumps(dtypes), str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), dtypes


@pytest.mark.parametrize("level", LEVELS)
def test_exact_conv_at_each_simd_level(level, tmp_path):
    info, dtypes = _run_level(level, tmp_path)
    order = {"baseline": 0, "avx2": 1, "avx512": 2}
    env = {k: v for k, v in os.environ.items() if k != "PYADR_SIMD"}
    native = subprocess.run([sys.executable, "-c", "from pyadr import _native; print(_native.info()['simd'])"],
                            env=env, capture_output=True, text=True, timeout=120, check=True).stdout.strip()
    # The override only lowers: a level above the CPU's runs the CPU's own.
    expect = level if order[level] <= order[native] else native
    assert info["simd"] == expect
    for gi, (B, C, H, W, M, kh, kw, s, p, d) in enumerate(GEOMS):
        for dt in dtypes:
            ld = {n: np.load(tmp_path / f"{gi}_{dt}_{n}.npy") for n in ("x", "w", "b", "y", "dy", "dx", "dw", "db", "dwonly")}
            yr, rctx = ref.conv2d_forward(ld["x"], ld["w"], ld["b"], s, p, d)
            dxr, dwr, dbr = ref.conv2d_backward(ld["dy"], rctx)
            msg = f"{level} geom {GEOMS[gi]} {dt}"
            assert_close(ld["y"], yr, np.dtype(dt), err_msg=msg + " y")
            assert_close(ld["dx"], dxr, np.dtype(dt), err_msg=msg + " dx")
            assert_close(ld["dw"], dwr, np.dtype(dt), err_msg=msg + " dw")
            assert_close(ld["db"], dbr, np.dtype(dt), err_msg=msg + " db")
            assert_close(ld["dwonly"], dwr, np.dtype(dt), err_msg=msg + " dw without dx")


def test_unknown_simd_value_is_reported_not_fatal():
    env = dict(os.environ, PYADR_SIMD="sse9")
    proc = subprocess.run([sys.executable, "-c", "from pyadr import _native; print(_native.info()['simd'])"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "PYADR_SIMD ignored" in proc.stdout
    assert "sse9" in proc.stderr and "avx512, avx2 or baseline" in proc.stderr
