"""Smoke test of pyadr.cli.bench (the `python -m pyadr bench` table) on tiny synthetic layers.

No timing assertions: only that it runs, returns 0 and prints the expected tables and columns.
"""
import io

import pytest

pytest.importorskip("pyadr._native")

from pyadr.cli import bench as bench_table  # noqa: E402


def _run(argv):
    buf = io.StringIO()
    rc = bench_table.main(argv, file=buf)
    return rc, buf.getvalue()


def test_import_has_no_side_effects():
    import os
    import subprocess
    import sys
    code = ("import sys, pyadr.cli.bench; "
            "bad = [m for m in ('torch', 'pyadr._native', 'scipy') if m in sys.modules]; "
            "assert not bad, bad")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""


def test_table_columns_synthetic():
    rc, out = _run(["--synthetic", "--quick", "--repeats", "1", "--layers", "conv2,conv1", "--grid", "small",
                    "--no-torch"])
    assert rc == 0
    assert "pyadr configuration" in out and "simd" in out
    for col in ("candidate", "rc", "err(y)", "err(dX)", "err(dW)", "fwd ms", "bwd ms", "fwd+bwd ms",
                "x exact", "x torch", "ctx MB", "mem/exact", "peak dRSS MB"):
        assert col in out, col
    assert out.count("== conv2:") == 1 and out.count("== conv1:") == 1
    for label, _ in bench_table.REUSE_POINTS:
        assert label.split(" (")[0].split(" L=")[0] in out
    assert "pyadr exact" in out and "sign L=25 H=24" in out and "l2 L=25 H=8" in out
    assert "L clamped to K=27" in out  # the coarse L=64 point on a K=27 layer
    # error grid
    assert "error vs rc" in out
    for col in ("hash", "order", "scope", "H=10", "H=20"):
        assert col in out, col
    assert "l2 w=1s" in out and "chw" in out and "hwc" in out
    assert "skipped L > K=27: [64]" in out
    assert "best error within an rc budget" in out
    assert "torch: not used" in out


def test_grid_widths_and_scopes_synthetic():
    x, w, b, s, p = bench_table.synthetic_layer("conv2", B=2)
    buf = io.StringIO()
    grid = dict(L=(5, 64), H=(8,), variants=(("sign", None, ("hwc",)), ("l2", 0.5, ("hwc",)), ("l2", 2.0, ("hwc",))))
    res = bench_table.error_grid("syn", x, w, b, s, p, grid, scopes=("batch", "input"), file=buf)
    out = buf.getvalue()
    assert "l2 w=0.5s" in out and "l2 w=2s" in out and "input" in out
    # (sign + 2 widths) x 1 order x 1 valid L x 1 H x 2 scopes
    assert len(res) == 6 == bench_table.grid_size(grid, 27, ("batch", "input"))
    assert all(0 < r["rc"] <= 1 and r["err"] >= 0 for r in res)


def test_bad_arguments():
    assert _run(["--synthetic", "--layers", "nope"])[0] == 2
    assert _run(["--synthetic", "--scopes", "everything"])[0] == 2
    assert _run(["--synthetic", "--repeats", "0"])[0] == 2


def test_format_table():
    s = bench_table.format_table(["a", "bb"], [["x", 1.5], ["yyy", 22]])
    lines = s.splitlines()
    assert lines[0].startswith("a") and "bb" in lines[0] and set(lines[1]) <= {"-", " "}
    assert len(lines) == 4
