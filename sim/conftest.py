"""Engine builds shared by the engine's testbenches (built once per configuration, cached)."""

import pytest

from hw.params import EngineParams
from sim import layer as sim_layer


@pytest.fixture(scope="session")
def isg_sim():
    """The product build."""
    return sim_layer.engine_simulator(EngineParams())


@pytest.fixture(scope="session")
def small_sim():
    """The product build on SMALL_DEPTHS: layers of a few hundred pixels split into many passes."""
    return sim_layer.engine_simulator(EngineParams(), sim_layer.SMALL_DEPTHS)
