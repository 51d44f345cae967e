"""ReuseConfig.exact: which of a reusing layer's three products (forward, dW, dX) ignore the
clusters and are computed exactly, on every backend (tests/_backends.py: cpu, cuda, emulated).

- every combination against the reference (pyadr.reference honours `exact` plainly);
- a product named in `exact` equals the exact convolution's (same x, w, dy: an equality that holds
  on random data, since nothing of it depends on the clusters), and the other products are those
  of the default mode, bit for bit (same clusters, same code);
- finite differences of the layer's own forward in w where forward and dW agree in kind;
- the config: parsing, validation messages, equality/hash, repr, to_dict round trip.
"""
import itertools
import json

import numpy as np
import pytest

import pyadr
from pyadr import reference as ref

from _util import DTYPES, assert_close, check_conv_vs_reference, exact_cfg, int_data

PRODUCTS = ("forward", "dw", "dx")
# every choice but "all three" (that is reuse=None), the default () included as the baseline
CHOICES = [c for n in range(3) for c in itertools.combinations(PRODUCTS, n)]

# (B, C, H, W, M, kh, kw, stride, padding, dilation, L, nhash)
CASES = {
    "L_not_dividing_K": (2, 3, 6, 6, 4, 3, 3, 1, 1, 1, 5, 8),
    "hwc_L_divides_C": (2, 8, 7, 7, 5, 3, 3, 2, 1, 1, 4, 12),
    "strided_dilated": (2, 3, 9, 8, 6, 3, 3, (2, 3), (2, 1), (1, 2), 4, 6),
    "one_by_one": (3, 6, 4, 4, 5, 1, 1, 1, 0, 1, 3, 10),
}


def _conv(be, x, w, b, cfg, **geom):
    y, ctx = pyadr.conv2d_forward(*be.put(x, w, b), reuse=cfg, **geom)
    return be.to_numpy(y), ctx


def _grads(be, dy, ctx):
    return tuple(be.to_numpy(a) for a in pyadr.conv2d_backward(be.asarray(dy), ctx))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", ("hwc", "chw"))
@pytest.mark.parametrize("exact", CHOICES[1:], ids="-".join)
@pytest.mark.parametrize("case", sorted(CASES))
def test_exact_products_match_reference(backend, rng, case, exact, order, dtype):
    B, C, H, W, M, kh, kw, s, p, d, L, nh = CASES[case]
    x = int_data(rng, (B, C, H, W), dtype)
    w = rng.standard_normal((M, C, kh, kw)).astype(dtype)
    b = rng.standard_normal(M).astype(dtype)
    cfg = exact_cfg(rng, L, nh, order=order).replace(exact=exact)
    ctx, rctx = check_conv_vs_reference(rng, x, w, b, cfg, s, p, d, be=backend)
    assert ctx.reuse.exact == exact


@pytest.mark.parametrize("exact", CHOICES[1:], ids="-".join)
def test_exact_products_match_reference_l2_input_scope(backend, rng, exact):
    x = int_data(rng, (2, 4, 6, 6), np.float64)
    w = rng.standard_normal((3, 4, 3, 3))
    cfg = exact_cfg(rng, 6, 5, hash="l2", scope="input").replace(exact=exact)
    check_conv_vs_reference(rng, x, w, None, cfg, 1, 1, 1, be=backend)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("exact", CHOICES[1:], ids="-".join)
def test_exact_products_equal_exact_convolution_others_equal_default(backend, rng, exact, dtype):
    """Random data, coarse clusters (rc well below 1): reused and exact products really differ."""
    x = rng.standard_normal((2, 8, 9, 9)).astype(dtype)
    w = rng.standard_normal((6, 8, 3, 3)).astype(dtype)
    b = rng.standard_normal(6).astype(dtype)
    dy = rng.standard_normal((2, 6, 9, 9)).astype(dtype)
    base = pyadr.ReuseConfig(L=8, H=3, seed=3)
    ye, ce = _conv(backend, x, w, b, None, padding=1)
    exact_out = (ye,) + _grads(backend, dy, ce)                     # y, dx, dw, db of the exact path
    yr, cr = _conv(backend, x, w, b, base, padding=1)
    reuse_out = (yr,) + _grads(backend, dy, cr)
    assert cr.stats.rc < 0.5
    y, ctx = _conv(backend, x, w, b, base.replace(exact=exact), padding=1)
    out = (y,) + _grads(backend, dy, ctx)
    np.testing.assert_array_equal(ctx.stats.clusters, cr.stats.clusters)
    for name, i in (("forward", 0), ("dx", 1), ("dw", 2)):
        if name in exact:
            assert_close(out[i], exact_out[i], dtype, err_msg=name, be=backend)
            assert not np.allclose(reuse_out[i], exact_out[i], rtol=1e-2, atol=1e-2), \
                f"{name}: reused and exact agree: the test would not see a mix-up"
        else:
            np.testing.assert_array_equal(out[i], reuse_out[i], err_msg=name)
    np.testing.assert_array_equal(out[3], reuse_out[3], err_msg="db")
    held = ctx.nbytes - cr.nbytes                                    # an exact dW keeps a copy of x
    assert held == (x.nbytes if "dw" in exact else 0)


@pytest.mark.parametrize("exact", [(), ("dx",), ("forward", "dw")], ids=lambda e: "-".join(e) or "none")
def test_dw_is_the_derivative_of_the_forward_in_w(backend, rng, exact):
    """The clusters depend on x only, so in w the layer's forward is linear and dW (reused with a
    reused forward, exact with an exact one) must match central differences of sum(y * dy)."""
    x = rng.standard_normal((2, 4, 6, 6))
    w = rng.standard_normal((3, 4, 3, 3))
    dy = rng.standard_normal((2, 3, 6, 6))
    cfg = pyadr.ReuseConfig(L=6, H=4, exact=exact)
    y, ctx = _conv(backend, x, w, None, cfg, padding=1)
    dw = _grads(backend, dy, ctx)[1]
    h = 1e-3
    for idx in [(0, 0, 0, 0), (1, 2, 1, 2), (2, 3, 2, 1)]:
        wp, wm = w.copy(), w.copy()
        wp[idx] += h
        wm[idx] -= h
        fd = (np.sum(_conv(backend, x, wp, None, cfg, padding=1)[0] * dy)
              - np.sum(_conv(backend, x, wm, None, cfg, padding=1)[0] * dy)) / (2 * h)
        assert abs(fd - dw[idx]) <= 1e-7 * max(1.0, abs(fd)), (idx, fd, dw[idx])


@pytest.mark.parametrize("exact", CHOICES[1:], ids="-".join)
def test_linear_exact_products(backend, rng, exact):
    x = rng.standard_normal((12, 10))
    w = rng.standard_normal((4, 10))
    dy = rng.standard_normal((12, 4))
    cfg = pyadr.ReuseConfig(L=5, H=2, exact=exact)
    y, ctx = pyadr.linear_forward(*backend.put(x, w), reuse=cfg)
    grads = [backend.to_numpy(a) for a in pyadr.linear_backward(backend.asarray(dy), ctx)]
    yr, rctx = ref.linear_forward(x, w, reuse=cfg)
    dxr, dwr, _ = ref.linear_backward(dy, rctx)
    assert_close(backend.to_numpy(y), yr, np.float64, be=backend)
    assert_close(grads[0], dxr, np.float64, be=backend)
    assert_close(grads[1], dwr, np.float64, be=backend)
    if "dx" in exact:
        assert_close(grads[0], dy @ w, np.float64, be=backend)


def test_nn_conv2d_passes_exact_through(rng):
    from pyadr import nn
    layer = nn.Conv2d(4, 3, 3, padding=1, reuse=pyadr.ReuseConfig(L=4, H=3, exact="dx"), rng=rng)
    x = rng.standard_normal((2, 4, 6, 6)).astype(np.float32)
    dy = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    layer.forward(x)
    dx = layer.backward(dy)
    _, ce = pyadr.conv2d_forward(x, layer.weight.data, layer.bias.data, padding=1)
    assert_close(dx, pyadr.conv2d_backward(dy, ce)[0], np.float32)
    assert layer.last_rc < 1


# ---- the config ---------------------------------------------------------------------------

def test_exact_parsing_and_canonical_order():
    assert pyadr.ReuseConfig().exact == ()
    assert pyadr.ReuseConfig().reused == PRODUCTS
    assert pyadr.ReuseConfig(exact="dx").exact == ("dx",)
    assert pyadr.ReuseConfig(exact="dx, forward").exact == ("forward", "dx")
    assert pyadr.ReuseConfig(exact=["dx", "dw", "dx"]).exact == ("dw", "dx")
    assert pyadr.ReuseConfig(exact=frozenset({"dw"})).reused == ("forward", "dx")
    assert pyadr.ReuseConfig(exact="").exact == ()


def test_exact_equality_hash_repr_and_round_trip():
    a = pyadr.ReuseConfig(L=9, H=4, exact="dx")
    assert a == pyadr.ReuseConfig(L=9, H=4, exact=("dx",))
    assert hash(a) == hash(pyadr.ReuseConfig(L=9, H=4, exact=["dx"]))
    assert a != pyadr.ReuseConfig(L=9, H=4)
    assert len({a, pyadr.ReuseConfig(L=9, H=4), pyadr.ReuseConfig(L=9, H=4, exact="dw")}) == 3
    assert "exact='dx'" in repr(a)
    assert "exact" not in repr(pyadr.ReuseConfig(L=9, H=4))
    d = json.loads(json.dumps(a.to_dict()))
    assert d["exact"] == ["dx"]
    assert pyadr.ReuseConfig(**d) == a
    assert a.replace(exact=()).exact == ()
    with pytest.raises(Exception):
        a.exact = ()                                     # frozen


@pytest.mark.parametrize("value,exc,match", [
    ("dy", ValueError, r"ReuseConfig\.exact must name products among \('forward', 'dw', 'dx'\).*got 'dy'"),
    (["forward", "DX"], ValueError, r"got 'DX'"),
    ("forward,dw,dx", ValueError, r"must not name all of forward, dw and dx.*reuse=None"),
    (4, TypeError, r"ReuseConfig\.exact must name products.*got int"),
    ([1], TypeError, r"an element of type int"),
])
def test_exact_bad_values(value, exc, match):
    with pytest.raises(exc, match=match):
        pyadr.ReuseConfig(exact=value)


# ---- the trainer: --reuse-exact sets it on every reusing layer; the cost model counts it --------

def test_cost_model_counts_exact_products():
    from pyadr.train.reuse_schedule import predicted_speedup
    full = predicted_speedup(64, 25, 20, 0.1)
    assert full == pytest.approx(64 / (20 + 6.4 + 2.56))
    reused = (20 + 6.4 + 2.56) / 64                      # cost of one reused product / exact
    assert predicted_speedup(64, 25, 20, 0.1, ("dx",)) == pytest.approx(3 / (2 * reused + 1))
    assert 1 < predicted_speedup(64, 25, 20, 0.1, ("dx",)) < full


def test_schedule_sets_exact_on_every_reusing_layer():
    from pyadr.train.data import make_synthetic
    from pyadr.train.loader import BatchLoader
    from pyadr.train.models import build_model
    from pyadr.train.reuse_schedule import ReuseSchedule, Rung
    data = make_synthetic(n_train=64, n_test=16)
    model = build_model("tiny", data.image_shape, data.num_classes, width=2.0, seed=0)
    loader = BatchLoader(data.train_images, data.train_labels, 16, data.mean, data.std, shuffle=False, prefetch=0)
    probes = [(x, y) for _, x, y in loader.epoch(0)][:2]
    sched = ReuseSchedule("fixed", rungs=[Rung(4, 4)], min_speedup=0.0, exact=("dx",))
    sched.setup(model, probes, steps_per_epoch=10, total_steps=20)
    reusing = [layer for layer in model if getattr(layer, "reuse", None) is not None]
    assert reusing and all(layer.reuse.exact == ("dx",) for layer in reusing)


def test_cli_reuse_exact_flag(tmp_path, capsys):
    from pyadr.cli import train as cli
    small = ["--model", "tiny", "--dataset", "synthetic", "--batch-size", "32", "--no-progress"]
    out = str(tmp_path / "run")
    assert cli.main(["train", *small, "--epochs", "1", "--reuse", "fixed", "--L", "4", "--H", "6",
                     "--reuse-layers", "conv2", "--reuse-exact", "dx", "--stop-after-steps", "2", "--out", out]) == 0
    assert json.load(open(f"{out}/config.json"))["reuse_exact"] == ["dx"]
    assert cli.main(["train", *small, "--reuse-exact", "dy", "--out", out]) != 0
    assert "expected comma-separated products among forward, dw, dx, got 'dy'" in capsys.readouterr().err
    assert cli.main(["train", *small, "--reuse-exact", "forward,dw,dx", "--out", out]) != 0
    assert "reuse_exact must be a list of products" in capsys.readouterr().err
