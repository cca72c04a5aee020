"""Fixtures shared by the test modules."""

import pytest


@pytest.fixture(scope="module")
def eager_kernels():
    """PYIOSO_COMPILE=0 for a module whose tests check a benchmark's bookkeeping: each cell's
    process then runs the fused kernels eagerly instead of compiling them first (compiled,
    they are checked in test_lsq.py and test_rounding.py and run in every other calibration)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYIOSO_COMPILE", "0")
        yield
