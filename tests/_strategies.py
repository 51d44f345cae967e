"""Hypothesis strategies shared by test_properties.py and test_cpu_engine.py: random conv layers
(shapes, strides, paddings, dilations, L, H, orders, hashes, scopes, dtypes) with exact data."""
import os

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from _util import exact_cfg, int_data


def n_examples(examples):
    """max_examples, scaled by PYADR_HYPOTHESIS_SCALE (default 1: the suite stays fast)."""
    return examples * int(os.environ.get("PYADR_HYPOTHESIS_SCALE", "1"))


@st.composite
def layers(draw, max_hw=8):
    B = draw(st.integers(1, 3))
    C = draw(st.integers(1, 6))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    H = draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), max_hw))
    W = draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), max_hw))
    assume(dh * (kh - 1) + 1 <= H + 2 * ph and dw * (kw - 1) + 1 <= W + 2 * pw)
    M = draw(st.integers(1, 5))
    K = C * kh * kw
    # L: any of 1..K, with extra weight on divisors of C (the hwc per-pixel path)
    L = draw(st.one_of(st.integers(1, K), st.sampled_from([d for d in range(1, C + 1) if C % d == 0])))
    nh = draw(st.one_of(st.integers(1, 64), st.sampled_from([1, 8, 16, 17, 64])))
    order = draw(st.sampled_from(["hwc", "chw"]))
    hash_ = draw(st.sampled_from(["sign", "l2"]))
    scope = draw(st.sampled_from(["batch", "input"]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    return dict(B=B, C=C, H=H, W=W, M=M, kh=kh, kw=kw, stride=(sh, sw), padding=(ph, pw),
                dilation=(dh, dw), L=L, nh=nh, order=order, hash=hash_, scope=scope, dtype=dtype, seed=seed)


def make_layer(p, lo=-2, hi=2):
    """(rng, x, w, b, cfg) of layer p: integer x, Gaussian w and b, an exact_cfg."""
    rng = np.random.default_rng(p["seed"])
    x = int_data(rng, (p["B"], p["C"], p["H"], p["W"]), p["dtype"], lo, hi)
    w = rng.standard_normal((p["M"], p["C"], p["kh"], p["kw"])).astype(p["dtype"])
    b = rng.standard_normal(p["M"]).astype(p["dtype"])
    cfg = exact_cfg(rng, p["L"], p["nh"], hash=p["hash"], order=p["order"], scope=p["scope"],
                    width=rng.choice([1.0, 2.0, 4.0]))
    return rng, x, w, b, cfg


def geometry(p):
    """stride/padding/dilation keyword arguments of layer p."""
    return dict(stride=p["stride"], padding=p["padding"], dilation=p["dilation"])
