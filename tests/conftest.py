import os

from hypothesis import HealthCheck, settings

# Numba's first call compiles: no per-example deadline. CI runs the "ci" profile.
settings.register_profile("ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def alexnet_fc8():
    """The paper's real Alex-8 layer and input: (codes, codebook, bias, activations)."""
    path = SHARED_DATA / "alexnet_fc8_real.npz"
    if not path.exists():
        pytest.skip(f"real Alex-8 data not found at {path} (it ships in shared/data beside the repo)")
    d = np.load(path)
    return d["codes"], d["codebook"], d["bias"], d["activations"]
