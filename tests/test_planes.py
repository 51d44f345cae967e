"""pyadr.planes: data-aware hash planes from the principal directions of a layer's sub-vectors.

Checked against the reference im2col (the sample is a set of its rows, cut as the engine cuts
them), on planted low-rank data (the planes recover the subspace), for orthonormality,
determinism, the centred/uncentred difference, the l2 width factor and the argument errors.
"""
import numpy as np
import pytest

import pyadr
from pyadr import planes as pp
from pyadr import reference as ref


def _blocks(X, L):
    K = X.shape[1]
    nb = -(-K // L)
    return np.pad(X, ((0, 0), (0, nb * L - K))).reshape(-1, L)


@pytest.mark.parametrize("order", ["hwc", "chw"])
@pytest.mark.parametrize("geom", [dict(kernel_size=3, stride=1, padding=1, dilation=1),
                                  dict(kernel_size=(2, 3), stride=(2, 1), padding=(0, 2), dilation=(1, 2))])
@pytest.mark.parametrize("L", [4, 7, 12])
def test_sample_is_the_im2col_rows_cut_into_subvectors(rng, order, geom, L):
    x = rng.standard_normal((2, 2, 6, 7)).astype(np.float32)
    kh, kw = (geom["kernel_size"],) * 2 if np.isscalar(geom["kernel_size"]) else geom["kernel_size"]
    X = ref.im2col(x.astype(np.float64), kh, kw, geom["stride"], geom["padding"], geom["dilation"], order)
    full = pp.sample_subvectors(x, L, order=order, rows=10 ** 6, **geom)
    np.testing.assert_array_equal(full, _blocks(X, L))         # every row, in order, when rows >= N
    part = pp.sample_subvectors(x, L, order=order, rows=5, seed=3, **geom)
    nb = -(-X.shape[1] // L)
    assert part.shape == (5 * nb, L)
    rows = {r.tobytes() for r in _blocks(X, X.shape[1] + (-X.shape[1]) % L)}
    for r in part.reshape(5, nb * L):
        assert r.tobytes() in rows                              # a sampled row is an im2col row


def test_linear_input_rows_are_the_samples(rng):
    x = rng.standard_normal((9, 10))
    np.testing.assert_array_equal(pp.sample_subvectors(x, 4, rows=100), _blocks(x, 4))
    assert pp.sample_subvectors(x, 5, rows=3, seed=1).shape == (6, 5)


def _planted(rng, n, L, r, noise, mean=None):
    U, _ = np.linalg.qr(rng.standard_normal((L, r)))
    z = rng.standard_normal((n, r)) * np.linspace(3.0, 2.0, r)
    s = z @ U.T + noise * rng.standard_normal((n, L))
    if mean is not None:
        s = s + mean
    return s, U


def test_recovers_a_planted_subspace_linear(rng):
    L, r = 16, 3
    s, U = _planted(rng, 4 * 600, L, r, noise=0.05)
    x = s.reshape(600, 4 * L)                                   # 4 sub-vectors per row
    P = pp.principal_planes(x, L, r, rows=600)
    assert P.shape == (L, r)
    np.testing.assert_allclose(P.T @ P, np.eye(r), atol=1e-10)
    assert np.linalg.norm(P @ P.T - U @ U.T) < 0.05            # the same subspace


def test_recovers_a_planted_subspace_conv_1x1(rng):
    C, r = 12, 2                                                # L = C: one pixel's channels
    s, U = _planted(rng, 3 * 10 * 10, C, r, noise=0.02)
    x = s.reshape(3, 10, 10, C).transpose(0, 3, 1, 2).copy()
    P = pp.principal_planes(x, C, r, kernel_size=1, rows=300)
    assert np.linalg.norm(P @ P.T - U @ U.T) < 0.05
    P5 = pp.principal_planes(x, C, 5, kernel_size=1, rows=300)  # more planes than the rank
    np.testing.assert_allclose(P5.T @ P5, np.eye(5), atol=1e-10)
    assert np.linalg.norm(P5[:, :r] @ P5[:, :r].T - U @ U.T) < 0.05


def test_orthonormal_largest_first_and_sign_fixed(rng):
    x = np.abs(rng.standard_normal((4, 8, 9, 9)))
    fit = pp.principal_planes(x, 24, 10, kernel_size=3, padding=1, fit=True)
    P = fit.planes
    np.testing.assert_allclose(P.T @ P, np.eye(10), atol=1e-10)
    assert np.all(np.diff(fit.variances) <= 1e-12) and np.all(fit.variances >= 0)
    pivot = np.argmax(np.abs(P), axis=0)
    assert np.all(P[pivot, np.arange(10)] > 0)


def test_centred_and_uncentred_differ_as_they_should(rng):
    L = 6
    s = np.zeros((2000, L))
    s[:, 0] = 10.0 + 0.1 * rng.standard_normal(2000)            # a large mean along e0, little spread
    s[:, 1] = 2.0 * rng.standard_normal(2000)                   # the largest spread along e1
    s[:, 2:] = 0.01 * rng.standard_normal((2000, L - 2))
    unc = pp.principal_planes(s, L, 1, rows=2000)[:, 0]
    cen = pp.principal_planes(s, L, 1, rows=2000, centred=True)[:, 0]
    assert abs(unc[0]) > 0.99                                    # second moment: the mean direction
    assert abs(cen[1]) > 0.99                                    # covariance: the spread direction


def test_deterministic_for_a_seed(rng):
    x = rng.standard_normal((8, 4, 10, 10)).astype(np.float32)
    a = pp.principal_planes(x, 12, 6, kernel_size=3, rows=50, seed=7)
    b = pp.principal_planes(x, 12, 6, kernel_size=3, rows=50, seed=7)
    c = pp.sample_subvectors(x, 12, kernel_size=3, rows=50, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(pp.sample_subvectors(x, 12, kernel_size=3, rows=50, seed=7), c)


def test_usable_as_reuse_config_planes(rng):
    x = np.abs(rng.standard_normal((2, 4, 8, 8))).astype(np.float32)
    w = rng.standard_normal((5, 4, 3, 3)).astype(np.float32)
    P = pp.principal_planes(x, 12, 4, kernel_size=3, padding=1)
    for h in ("sign", "l2"):
        cfg = pyadr.ReuseConfig(planes=P, hash=h)
        assert (cfg.L, cfg.H) == (12, 4)
        y, ctx = pyadr.conv2d_forward(x, w, None, padding=1, reuse=cfg)
        np.testing.assert_allclose(np.asarray(ctx.planes, dtype=np.float64), P, rtol=1e-6)   # float32 run
        assert y.shape == (2, 5, 8, 8) and np.all(np.isfinite(y))


def test_width_factor_makes_the_l2_width_the_projection_rms(rng):
    x = np.abs(rng.standard_normal((300, 32))) + 0.5            # linear input, L divides K
    fit = pp.principal_planes(x, 8, 3, rows=300, fit=True)
    S = pp.sample_subvectors(x, 8, rows=300)
    rms = np.sqrt(np.mean((S @ fit.planes) ** 2))
    assert fit.rms == pytest.approx(rms, rel=1e-10)
    assert fit.width_factor > 1.5                                # principal directions spread more
    cfg = pyadr.ReuseConfig(planes=fit.planes, hash="l2", width_scale=2.0 * fit.width_factor)
    _, _, width = cfg.resolve(32, x)
    assert width == pytest.approx(2.0 * rms, rel=1e-9)


def test_moments_add_over_parts_and_round_trip(rng):
    x = rng.standard_normal((6, 20))
    whole = pp.subvector_moments(x, 5, rows=100)
    parts = pp.subvector_moments(x[:2], 5, rows=100).to_vector() + pp.subvector_moments(x[2:], 5, rows=100).to_vector()
    np.testing.assert_allclose(parts, whole.to_vector(), rtol=1e-12)
    back = pp.Moments.from_vector(parts, 5)
    np.testing.assert_allclose(pp.planes_from_moments(back, 3).planes,
                               pp.planes_from_moments(whole, 3).planes, atol=1e-9)
    with pytest.raises(ValueError, match="Moments vector for L=5"):
        pp.Moments.from_vector(parts[:-1], 5)


def test_all_zero_input_gives_orthonormal_planes():
    P = pp.principal_planes(np.zeros((3, 2, 5, 5)), 6, 3, kernel_size=(1, 3))
    np.testing.assert_allclose(P.T @ P, np.eye(3), atol=1e-12)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(L=4, H=5), ValueError, r"H must be in \[1, 4\]"),
    (dict(L=4, H=0), ValueError, r"H must be in \[1, 4\]"),
    (dict(L=100, H=2), ValueError, r"L must be in \[1, 36\]"),
    (dict(L=0, H=1), ValueError, r"L must be in \[1, 36\]"),
    (dict(L=4, H=2.0), TypeError, "H must be an int"),
    (dict(L=4, H=2, rows=0), ValueError, "rows must be >= 1"),
    (dict(L=4, H=2, order="cwh"), ValueError, "order must be one of"),
    (dict(L=4, H=2, kernel_size=9), ValueError, "does not fit"),
    (dict(L=4, H=2, stride=0), ValueError, "stride, dilation must be >= 1"),
    (dict(L=4, H=2, kernel_size=None), ValueError, r"\(B, K\) linear-layer input"),
])
def test_bad_arguments(rng, kwargs, exc, match):
    x = rng.standard_normal((2, 4, 5, 5))
    kw = dict(kernel_size=3)
    kw.update(kwargs)
    with pytest.raises(exc, match=match):
        pp.principal_planes(x, kw.pop("L"), kw.pop("H"), **kw)


def test_bad_inputs(rng):
    with pytest.raises(ValueError, match=r"\(B, C, H, W\) convolution input"):
        pp.principal_planes(rng.standard_normal((4, 9)), 3, 2, kernel_size=3)
    with pytest.raises(TypeError, match="float array"):
        pp.principal_planes(np.ones((2, 8), dtype=np.int32), 4, 2)
    bad = rng.standard_normal((2, 8))
    bad[1, 3] = np.nan
    with pytest.raises(ValueError, match="must be finite"):
        pp.principal_planes(bad, 4, 2)
    with pytest.raises(TypeError, match="Moments"):
        pp.planes_from_moments(np.zeros(10), 2)
