"""Ramp to saturation: recognise-heavy traffic at 1, 2, 4, ... users (``FACEREC_LOAD_STEP_S`` each)."""

from loadtests.scenarios.shapes import StepShape
from loadtests.users import RecogniseHeavyUser

__all__ = ["RampShape", "RecogniseHeavyUser"]


class RampShape(StepShape):
    pass
