import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.database import DirectoryBasedExampleDatabase

# Numba's first call compiles: no per-example deadline. Both profiles draw fresh examples on every run.
# "ci" (the default) keeps no example database; "dev" (HYPOTHESIS_PROFILE=dev) replays earlier failures from
# the user's cache folder, never from a folder in the repository.
_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "eie-runtime" / "hypothesis"
set_hypothesis_home_dir(str(_CACHE / "home"))  # its own caches (constants, unicode tables) stay out of the tree too
settings.register_profile("ci", database=None, print_blob=True, **_COMMON)
settings.register_profile("dev", database=DirectoryBasedExampleDatabase(_CACHE), **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
# Kernel choices by the default costs, not this CPU's measured ones: tests that assert choices stay
# deterministic, and no test run measures or writes the user's cache (tests/test_kernel_calibration.py
# turns it on where it tests it).
os.environ["EIE_SELF_CALIBRATE"] = "0"


@pytest.fixture(scope="session")
def alexnet_fc8():
    """The paper's real Alex-8 layer and input, shipped as package data: (codes, codebook, bias, activations)."""
    from eie_runtime.paper_layers import real_alex8_arrays

    d = real_alex8_arrays()
    return d["codes"], d["codebook"], d["bias"], d["activations"]
