"""``promtool`` accepts the Prometheus config and rules, and the rules compute what they claim."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import unavailable
from tests.monitoring.promql import PROMETHEUS_DIR

pytestmark = pytest.mark.unit


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        unavailable("promtool is not installed (Debian package prometheus)")
    assert binary is not None
    return subprocess.run([binary, *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=60)


def test_config_is_valid() -> None:
    done = _promtool("check", "config", "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_rules_are_valid() -> None:
    done = _promtool("check", "rules", "rules.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_rules_unit_tests_pass() -> None:
    done = _promtool("test", "rules", "rules_test.yml")
    assert done.returncode == 0, done.stdout + done.stderr
