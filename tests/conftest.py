import os

from hypothesis import HealthCheck, settings

# Numba's first call compiles: no per-example deadline. CI runs the "ci" profile.
settings.register_profile("ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


import numpy as np
import pytest

@pytest.fixture(scope="session")
def alexnet_fc8():
    """The paper's real Alex-8 layer and input, shipped as package data: (codes, codebook, bias, activations)."""
    from eie_runtime.paper_layers import real_alex8_arrays

    d = real_alex8_arrays()
    return d["codes"], d["codebook"], d["bias"], d["activations"]
