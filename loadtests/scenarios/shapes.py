"""Load shapes shared by the scenarios; durations come from the environment so runs stay bounded."""

from __future__ import annotations

import os

from locust import LoadTestShape


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


class StepShape(LoadTestShape):
    """1, 2, 4, ... users, each step ``FACEREC_LOAD_STEP_S`` seconds, up to ``FACEREC_LOAD_MAX_USERS``.

    The doubling finds the saturation point in few steps: throughput stops growing while
    latency keeps growing (watch the CSV history or the HTML report's charts).
    """

    abstract = True

    def tick(self) -> tuple[int, float] | None:
        step_s = _env_float("FACEREC_LOAD_STEP_S", 30.0)
        max_users = int(_env_float("FACEREC_LOAD_MAX_USERS", 64))
        steps = [1]
        while steps[-1] * 2 <= max_users:
            steps.append(steps[-1] * 2)
        index = int(self.get_run_time() // step_s)
        if index >= len(steps):
            return None
        return steps[index], float(steps[index])


class SpikeShape(LoadTestShape):
    """A calm base, a sudden spike (all users at once), and the calm again to see recovery."""

    abstract = True

    def tick(self) -> tuple[int, float] | None:
        phase_s = _env_float("FACEREC_LOAD_PHASE_S", 20.0)
        base = int(_env_float("FACEREC_LOAD_BASE_USERS", 2))
        spike = int(_env_float("FACEREC_LOAD_SPIKE_USERS", 48))
        run_time = self.get_run_time()
        if run_time < phase_s:
            return base, float(base)
        if run_time < 2 * phase_s:
            return spike, float(spike)  # the whole spike arrives within one second
        if run_time < 3 * phase_s:
            return base, float(spike)
        return None


class ConstantShape(LoadTestShape):
    """``FACEREC_LOAD_USERS`` users for ``FACEREC_LOAD_SOAK_S`` seconds."""

    abstract = True

    def tick(self) -> tuple[int, float] | None:
        users = int(_env_float("FACEREC_LOAD_USERS", 8))
        if self.get_run_time() >= _env_float("FACEREC_LOAD_SOAK_S", 600.0):
            return None
        return users, float(users)
