"""Shared fixtures of the pyadr test suite."""
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
