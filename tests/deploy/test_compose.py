"""docker-compose.gpu.yml: valid Compose, and wired the way the services expect."""

from __future__ import annotations

import copy
import json
import re
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest

from orchestrator.modelrepo.catalog import DEFAULT_MODELS
from tests.conftest import unavailable
from tests.deploy.files import ROOT, compose, compose_environment, compose_services_running, interpolate

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def compose_validator() -> jsonschema.protocols.Validator:
    try:
        # check-jsonschema vendors the Compose Specification's own schema (Apache-2.0).
        vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    except ModuleNotFoundError:
        unavailable("check-jsonschema (dev extra) ships the Compose Specification schema")
    schema = json.loads((vendor / "compose-spec.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def test_compose_file_follows_the_compose_specification(compose_validator) -> None:
    errors = sorted(compose_validator.iter_errors(compose()), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_the_schema_rejects_a_misspelt_key(compose_validator) -> None:
    """The check above is only worth something if the schema is strict about services."""
    broken = copy.deepcopy(compose())
    broken["services"]["orchestrator"]["healthcheck"]["intervall"] = "10s"
    assert not compose_validator.is_valid(broken)


def one_shot_services() -> set[str]:
    """Services another one waits on to have exited successfully (a check before a start)."""
    return {
        name
        for service in compose()["services"].values()
        for name, wait in (service.get("depends_on") or {}).items()
        if wait.get("condition") == "service_completed_successfully"
    }


def test_every_service_restarts_and_has_a_health_check() -> None:
    for name, service in compose()["services"].items():
        if name in one_shot_services():
            assert service.get("restart") == "no", f"{name} runs once; restarted, it would never complete"
            continue
        assert service.get("restart") in ("unless-stopped", "always", "on-failure"), name
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"


def gpu_devices(service: dict[str, Any]) -> list[dict[str, Any]]:
    return service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])


def test_triton_and_the_search_shards_reserve_an_nvidia_gpu() -> None:
    services = compose()["services"]
    for name in ["triton", *compose_services_running("search.Dockerfile")]:
        devices = gpu_devices(services[name])
        assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices), name


def test_the_orchestrator_runs_several_replicas_behind_the_balancer() -> None:
    services = compose()["services"]
    assert services["orchestrator"]["deploy"]["replicas"] >= 2
    assert "ports" not in services["orchestrator"], "replicas cannot share a host port; clients use lb"
    nginx_conf = (ROOT / "deploy" / "nginx" / "nginx.conf").read_text()
    assert re.search(r"server\s+orchestrator:8000\b", nginx_conf)
    assert compose_environment("orchestrator")["FACEREC_PORT"] == "8000"


def test_triton_loads_the_catalog_models_from_the_gpu_repository() -> None:
    """The GPU configs themselves are parsed by tests/unit/test_repository.py."""
    triton = compose()["services"]["triton"]
    loaded = [arg.split("=", 1)[1] for arg in triton["command"] if arg.startswith("--load-model=")]
    assert sorted(loaded) == sorted(spec.name for spec in DEFAULT_MODELS)
    assert "--model-control-mode=explicit" in triton["command"]
    sources = dict(interpolate(v).split(":")[:2] for v in triton["volumes"])
    assert sources["./var/models/repository/gpu"] == "/models"
    assert "--model-repository=/models" in triton["command"]


def test_triton_starts_only_once_a_check_has_found_every_model(tmp_path: Path) -> None:
    """As the init container of deploy/k8s/triton.yaml: the check is run here on a fake repository."""
    services = compose()["services"]
    waits = services["triton"].get("depends_on") or {}
    (name,) = [n for n, wait in waits.items() if wait["condition"] == "service_completed_successfully"]
    check = services[name]

    def sources(service: dict[str, Any]) -> dict[str, str]:
        """Container path → host source (interpolated first: `${VAR:-default}` has a colon)."""
        return {
            target: source for source, target, *_ in (interpolate(v).split(":") for v in service["volumes"])
        }

    assert sources(check)["/models"] == sources(services["triton"])["/models"], "not where Triton loads"
    assert check["entrypoint"] == ["sh", "-c"] and len(check["command"]) == 1
    # Compose's own escaping and interpolation first, then the repository moved to tmp_path.
    script = re.sub(
        r"(?<![\w.])/models/", f"{tmp_path}/", interpolate(check["command"][0]).replace("$$", "$")
    )

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=10, check=False)

    for spec in DEFAULT_MODELS[:-1]:
        (tmp_path / spec.name).mkdir()
        (tmp_path / spec.name / "config.pbtxt").write_text("")
    missing = run()
    assert missing.returncode != 0
    assert f"no {DEFAULT_MODELS[-1].name} in ./var/models/repository/gpu" in missing.stdout
    assert "facerec models fetch" in missing.stdout
    (tmp_path / DEFAULT_MODELS[-1].name).mkdir()
    (tmp_path / DEFAULT_MODELS[-1].name / "config.pbtxt").write_text("")
    assert run().returncode == 0


def test_the_tensorrt_engine_cache_is_a_named_volume() -> None:
    from orchestrator.modelrepo.repository import TRT_ENGINE_CACHE

    triton = compose()["services"]["triton"]
    named = set(compose()["volumes"])
    mounts = {v.split(":")[1]: v.split(":")[0] for v in triton["volumes"]}
    assert mounts.get(TRT_ENGINE_CACHE) in named


def bind_sources() -> list[tuple[str, str]]:
    named = set(compose().get("volumes") or {})
    found = []
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            # Interpolated first: `${VAR:-default}` has a colon of its own.
            source = (
                interpolate(volume).split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            )
            if source and source not in named:
                found.append((name, source))
    return found


@pytest.mark.parametrize(("service", "source"), bind_sources())
def test_bind_mounts_are_inside_the_repository(service: str, source: str) -> None:
    path = source
    assert path.startswith("./") and ".." not in Path(path).parts, f"{service}: {source}"
    if not path.startswith("./var/"):
        assert (ROOT / path).exists(), f"{service} mounts {path}, which is not in the repository"


def test_secrets_have_no_default_in_the_file() -> None:
    """Passwords come from .env or the shell; a default would ship a known password."""
    text = (ROOT / "docker-compose.gpu.yml").read_text()
    for secret in ("POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "FACEREC_SEARCH_TOKEN"):
        uses = re.findall(r"\$\{" + secret + r"(:?[-?])?", text)
        assert uses and all(op.endswith("?") for op in uses), secret
    assert compose_environment("orchestrator")["FACEREC_ADMIN_KEY"] is None


def test_the_orchestrator_and_every_shard_share_the_search_token() -> None:
    """The shards listen beyond loopback, where the service refuses to start without one."""
    services = ["orchestrator", *compose_services_running("search.Dockerfile")]
    for name in services:
        assert compose_environment(name)["FACEREC_SEARCH_TOKEN"] == (
            "${FACEREC_SEARCH_TOKEN:?set FACEREC_SEARCH_TOKEN in .env}"
        ), name


def test_the_orchestrator_controls_the_triton_and_writes_the_repository_it_serves() -> None:
    services = compose()["services"]
    env = compose_environment("orchestrator")
    control_urls = json.loads(str(env["FACEREC_TRITON__CONTROL_URLS"]))
    assert control_urls == [env["FACEREC_TRITON__URL"]], "one Triton: control goes where inference does"
    # A rollout drains the old version by Triton's metrics: unset, it would read its own container.
    metrics = urlsplit(str(env["FACEREC_TRITON__METRICS_URL"]))
    assert (metrics.hostname, metrics.port) == ("triton", 8002)
    assert "--metrics-port=8002" in services["triton"]["command"]

    def binds(service: str) -> dict[str, tuple[str, str]]:
        """Container path -> (host path, options) of the service's bind mounts."""
        found = {}
        for volume in services[service].get("volumes", []):
            source, target, *options = interpolate(volume).split(":")
            found[target] = (source, ",".join(options))
        return found

    repository = str(env["FACEREC_TRITON__REPOSITORY"])
    assert f"--model-repository={repository}" in services["triton"]["command"]
    assert binds("orchestrator")[repository][0] == binds("triton")[repository][0]
    assert "ro" not in binds("orchestrator")[repository][1].split(","), "the orchestrator writes it"


def reachable(services: dict[str, Any]) -> set[tuple[str, str]]:
    """Every (from, to) pair of services that share a network, as Docker connects them."""
    networks = {name: set(service.get("networks", ["default"])) for name, service in services.items()}
    return {(a, b) for a in networks for b in networks if a != b and networks[a] & networks[b]}


def test_the_networks_allow_what_the_network_policies_do() -> None:
    services = compose()["services"]
    shards = {name for name in services if name.startswith("search-")}
    backends = ("triton", "redis", "postgres", *shards)
    allowed = {
        ("lb", "orchestrator"),
        *(("orchestrator", backend) for backend in backends),
        *(("worker", backend) for backend in backends),
        *(("prometheus", scraped) for scraped in ("triton", "orchestrator", *shards)),
        ("grafana", "prometheus"),
        *((a, b) for a in shards for b in shards if a != b),  # one network for the shards
        # A network joins containers, not ports: on the backends' networks the worker meets the
        # orchestrator and Prometheus, which find no port open on it.
        ("worker", "orchestrator"),
        ("prometheus", "worker"),
    }
    assert reachable(services) == allowed | {(b, a) for a, b in allowed}
    declared = set(compose()["networks"])
    assert {n for service in services.values() for n in service.get("networks", [])} == declared
