"""Spike: 2 users, then 48 at once, then 2 again (``FACEREC_LOAD_PHASE_S`` per phase)."""

from loadtests.scenarios.shapes import SpikeShape
from loadtests.users import RecogniseHeavyUser

__all__ = ["RecogniseHeavyUser", "Spike"]


class Spike(SpikeShape):
    pass
