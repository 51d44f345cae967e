"""Shared fixtures of the pyadr test suite: seeded `rng`, the `backend` / `gpu_backend` fixtures
(tests/_backends.py), restorers of global engine settings, and a tiny trainer model with probe
batches (`model_and_probes`)."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))  # makes tests/_util.py importable

try:
    from hypothesis import HealthCheck, settings

    settings.register_profile("pyadr", deadline=None, derandomize=True,
                              suppress_health_check=[HealthCheck.too_slow])
    # PYADR_HYPOTHESIS_PROFILE=explore: random (not derandomized) examples; combine with
    # PYADR_HYPOTHESIS_SCALE=10 (see test_properties.py) for a longer search.
    settings.register_profile("explore", deadline=None, derandomize=False,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile(os.environ.get("PYADR_HYPOTHESIS_PROFILE", "pyadr"))
except ImportError:  # pragma: no cover - hypothesis is a test dependency
    pass


@pytest.fixture
def rng():
    """A seeded generator: every test sees the same numbers on every run."""
    return np.random.default_rng(20190408)


@pytest.fixture
def model_and_probes():
    """A tiny model on synthetic data and two probe batches (x, y) of 16, for the schedule tests."""
    from pyadr.train.data import make_synthetic
    from pyadr.train.loader import BatchLoader
    from pyadr.train.models import build_model
    data = make_synthetic(n_train=64, n_test=16)
    model = build_model("tiny", data.image_shape, data.num_classes, width=2.0, seed=0)
    loader = BatchLoader(data.train_images, data.train_labels, 16, data.mean, data.std, shuffle=False, prefetch=0)
    return model, [(x, y) for _, x, y in loader.epoch(0)][:2]


@pytest.fixture
def restore_threads():
    """Restores the native thread count after a test that changes it."""
    import pyadr
    n = pyadr.get_num_threads()
    yield n
    pyadr.set_num_threads(n)


@pytest.fixture
def restore_gemm():
    """Restores the built-in GEMM provider after a test that switches it."""
    import pyadr
    yield
    pyadr.set_gemm_provider("builtin")


# ------------------------------------------------------------------------------------------------
# Backends (tests/_backends.py): behaviour tests take `backend`; GPU-only tests take `gpu_backend`
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def _emulator_lib(tmp_path_factory):
    """The host build of the .cu kernels, or the reason there is none (a string)."""
    import _backends
    try:
        return _backends.build_emulator(str(tmp_path_factory.mktemp("gpu_emu")))
    except Exception as exc:  # noqa: BLE001 - a compile error fails every emulated test, loudly
        return exc


def _make_backend(name, request, monkeypatch):
    import _backends
    if name == "cpu":
        return _backends.cpu_backend()
    if name == "cuda":
        be = _backends.cuda_backend()
        if isinstance(be, str):
            if os.environ.get("PYADR_REQUIRE_GPU") == "1":
                pytest.fail(f"PYADR_REQUIRE_GPU=1 but the cuda backend cannot run: {be}")
            pytest.skip(be)
        return be
    lib = request.getfixturevalue("_emulator_lib")
    if isinstance(lib, str):
        pytest.skip(lib)
    if isinstance(lib, Exception):
        detail = getattr(lib, "stderr", "") or ""      # g++'s messages, for a CalledProcessError
        raise RuntimeError(f"building the host emulator of the .cu kernels failed: {lib}\n{detail}") from lib
    return _backends.emulated_backend(lib, monkeypatch)


@pytest.fixture(params=["cpu", "cuda", "emulated"])
def backend(request, monkeypatch):
    """The public API on one backend: "cpu" (NumPy), "cuda" (CuPy), "emulated" (host .cu kernels)."""
    return _make_backend(request.param, request, monkeypatch)


@pytest.fixture(params=["cuda", "emulated"])
def gpu_backend(request, monkeypatch):
    """The GPU backends only ("cuda", "emulated"), for behaviour of pyadr.gpu alone."""
    return _make_backend(request.param, request, monkeypatch)
