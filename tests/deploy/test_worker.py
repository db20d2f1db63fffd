"""The batch workers (issue 14) in compose and Kubernetes: the API's image and backends, the
heartbeat probe, the grace period, Redis kept as a queue, and KEDA's ScaledObject."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest

from orchestrator.jobs.queue import QUEUES
from tests.deploy.files import (
    compose,
    compose_environment,
    container,
    container_environment,
    kustomizations,
    manifests,
    one,
    pod_spec,
)

pytestmark = pytest.mark.unit

# The worker's queues, highest priority first. Celery's Redis transport keeps each in a list
# of that name (messages carry no priority of their own), which is what KEDA measures.
JOB_QUEUES = tuple(QUEUES)
# The API's alone: its listener, its first admin key, its door, and model control and drains
# during rollouts. Every other setting shapes recognition or names a backend: a worker needs it.
API_ONLY = {
    "FACEREC_HOST",
    "FACEREC_PORT",
    "FACEREC_ADMIN_KEY",
    "FACEREC_TRITON__CONTROL_URLS",
    "FACEREC_TRITON__METRICS_URL",
    "FACEREC_TRITON__REPOSITORY",
    "FACEREC_API__MAX_CONCURRENT_IMAGES",
    "FACEREC_API__MAX_BODY_BYTES",
    "FACEREC_API__SHUTDOWN_DRAIN_S",
    "FACEREC_API__WORKERS",
}
HEARTBEAT = "FACEREC_JOBS__ALIVE_FILE"


def test_the_queue_names_are_the_interfaces() -> None:
    """What operators, dashboards and the ScaledObject below call them."""
    assert JOB_QUEUES == ("facerec.jobs.high", "facerec.jobs.normal", "facerec.jobs.low")


def worker() -> dict[str, Any]:
    return one("Deployment", "worker")


def scaled_object() -> dict[str, Any]:
    return one("ScaledObject", "worker")


def k8s_sources(doc: dict[str, Any], name: str) -> dict[str, tuple[str, Any]]:
    """Environment name -> where the container gets it: a ConfigMap key, a literal or a Secret key."""
    spec = container(doc, name)
    found: dict[str, tuple[str, Any]] = {}
    for source in spec.get("envFrom", []):
        config_map = source["configMapRef"]["name"]
        found.update({key: ("configMap", config_map) for key in one("ConfigMap", config_map)["data"]})
    for item in spec.get("env", []):
        kind = "value" if "value" in item else "valueFrom"
        found[item["name"]] = (kind, item[kind])
    return found


def test_the_worker_runs_the_api_image_and_serves_no_port() -> None:
    services = compose()["services"]
    assert services["worker"]["build"] == services["orchestrator"]["build"]
    assert services["worker"]["image"] == services["orchestrator"]["image"]
    assert services["worker"]["command"] == ["facerec", "worker"]
    assert "ports" not in services["worker"] and "expose" not in services["worker"]
    spec = container(worker(), "worker")
    assert spec["image"] == container(one("Deployment", "orchestrator"), "orchestrator")["image"]
    assert spec["command"] == ["facerec", "worker"]
    assert "ports" not in spec
    labels = worker()["spec"]["template"]["metadata"]["labels"]
    for service in (m for m in manifests() if m.kind == "Service"):
        assert not service.doc["spec"]["selector"].items() <= labels.items(), f"{service} selects the workers"


def test_compose_workers_share_the_apis_settings() -> None:
    api, jobs = compose_environment("orchestrator"), compose_environment("worker")
    shared = {name: value for name, value in api.items() if name not in API_ONLY}
    assert {"FACEREC_TRITON__URL", "FACEREC_SEARCH_URLS", "FACEREC_SEARCH_TOKEN"} <= shared.keys()
    assert {"DATABASE_URL", "REDIS_URL"} <= shared.keys()
    assert {name: jobs.get(name) for name in shared} == shared
    assert not {"FACEREC_HOST", "FACEREC_PORT", "FACEREC_ADMIN_KEY"} & jobs.keys()
    services = compose()["services"]
    assert services["worker"]["depends_on"] == services["orchestrator"]["depends_on"]


def test_kubernetes_workers_share_the_apis_settings() -> None:
    api = k8s_sources(one("Deployment", "orchestrator"), "orchestrator")
    jobs = k8s_sources(worker(), "worker")
    shared = {name: source for name, source in api.items() if name not in API_ONLY}
    # The two secrets come from the Secret, the addresses from the shared ConfigMap.
    assert shared["DATABASE_URL"][0] == shared["FACEREC_SEARCH_TOKEN"][0] == "valueFrom"
    assert shared["REDIS_URL"] == shared["FACEREC_TRITON__URL"] == ("configMap", "facerec-config")
    assert {name: jobs.get(name) for name in shared} == shared
    assert "FACEREC_ADMIN_KEY" not in jobs


def heartbeat_scripts() -> dict[str, tuple[str, str]]:
    """Where -> (the probe's shell script, the alive file it is given), as the shell sees them."""
    test = compose()["services"]["worker"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "sh", "-c"] and len(test) == 4
    found = {"compose": (test[3].replace("$$", "$"), str(compose_environment("worker")[HEARTBEAT]))}
    spec = container(worker(), "worker")
    alive = str(container_environment(worker(), "worker")[HEARTBEAT])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        command = spec[probe]["exec"]["command"]
        assert command[:2] == ["sh", "-c"] and len(command) == 3, probe
        found[f"k8s {probe}"] = (command[2], alive)
    return found


@pytest.mark.parametrize("where", list(heartbeat_scripts()))
def test_the_health_check_fails_once_the_heartbeat_stops(where: str, tmp_path: Path) -> None:
    """Run as the container would, on a file of this machine in place of the worker's."""
    script, alive = heartbeat_scripts()[where]
    assert alive.startswith("/"), alive
    heartbeat = tmp_path / PurePosixPath(alive).name

    def healthy() -> bool:
        env = {**os.environ, HEARTBEAT: str(heartbeat)}
        done = subprocess.run(["sh", "-c", script], env=env, capture_output=True, timeout=10, check=False)
        return done.returncode == 0

    assert not healthy(), "no heartbeat yet"
    heartbeat.touch()
    assert healthy()
    stale = time.time() - 90
    os.utime(heartbeat, (stale, stale))
    assert not healthy(), "a worker silent for 90 s is not alive"


def test_the_heartbeat_is_written_where_the_container_can_write() -> None:
    """The root filesystem is read-only in Kubernetes: the file must sit on a volume."""
    spec = container(worker(), "worker")
    assert spec["securityContext"]["readOnlyRootFilesystem"]
    alive = PurePosixPath(str(container_environment(worker(), "worker")[HEARTBEAT]))
    scratch = {v["name"] for v in pod_spec(worker())["volumes"] if "emptyDir" in v}
    writable = [
        m["mountPath"] for m in spec["volumeMounts"] if m["name"] in scratch and not m.get("readOnly")
    ]
    assert any(alive.is_relative_to(path) for path in writable), f"{alive} is on no writable volume"


def seconds(duration: str) -> int:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, duration
    return int(match[1])


def test_stopping_a_worker_leaves_its_items_time_to_finish() -> None:
    """SIGTERM is Celery's warm shutdown; the platform's kill must not come first."""
    grace = pod_spec(worker())["terminationGracePeriodSeconds"]
    assert grace >= 60
    assert seconds(compose()["services"]["worker"]["stop_grace_period"]) == grace
    assert grace > pod_spec(one("Deployment", "orchestrator"))["terminationGracePeriodSeconds"]


def redis_eviction_policies() -> dict[str, str]:
    compose_command = compose()["services"]["redis"]["command"]
    k8s_args = container(one("Deployment", "redis"), "redis")["args"]
    return {
        where: args[args.index("--maxmemory-policy") + 1]
        for where, args in (("compose", compose_command), ("k8s", k8s_args))
    }


@pytest.mark.parametrize("where", ["compose", "k8s"])
def test_redis_never_evicts_a_queued_job(where: str) -> None:
    """The job lists have no TTL: only a volatile-* policy (or none) spares them."""
    policy = redis_eviction_policies()[where]
    assert policy == "noeviction" or policy.startswith("volatile-"), policy


# The fields of keda.sh/v1alpha1 ScaledObject this file uses or could misspell, from KEDA 2.x's
# CRD; its trigger metadata is a map of strings, so an unquoted number is refused by the API server.
SCALED_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": {"type": "string"},
                        "envSourceContainerName": {"type": "string"},
                    },
                },
                **{
                    field: {"type": "integer", "minimum": 0}
                    for field in (
                        "minReplicaCount",
                        "maxReplicaCount",
                        "idleReplicaCount",
                        "pollingInterval",
                        "cooldownPeriod",
                        "initialCooldownPeriod",
                    )
                },
                "advanced": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "horizontalPodAutoscalerConfig": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {"name": {"type": "string"}, "behavior": {"type": "object"}},
                        },
                        "restoreToOriginalReplicaCount": {"type": "boolean"},
                        "scalingModifiers": {"type": "object"},
                    },
                },
                "fallback": {"type": "object"},
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                            "authenticationRef": {"type": "object"},
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            "useCachedMetrics": {"type": "boolean"},
                        },
                    },
                },
            },
        },
    },
}
# The redis (lists) scaler's metadata keys, from KEDA's scaler documentation.
REDIS_SCALER_KEYS = {
    "address", "host", "port", "addressFromEnv", "hostFromEnv", "portFromEnv", "usernameFromEnv",
    "passwordFromEnv", "listName", "listLength", "activationListLength", "enableTLS", "unsafeSsl",
    "databaseIndex",
}  # fmt: skip


def test_the_scaled_object_has_the_fields_keda_reads() -> None:
    validator = jsonschema.Draft202012Validator(SCALED_OBJECT_SCHEMA)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(scaled_object())]
    assert not errors, "\n".join(errors)
    for trigger in scaled_object()["spec"]["triggers"]:
        assert trigger["type"] == "redis"
        assert trigger["metadata"].keys() <= REDIS_SCALER_KEYS, trigger
        assert {"listName", "listLength"} <= trigger["metadata"].keys()
        assert int(trigger["metadata"]["listLength"]) > 0


def test_the_schema_here_rejects_what_the_api_server_would() -> None:
    """As for the built-in kinds: the check is only worth something if it is strict."""
    validator = jsonschema.Draft202012Validator(SCALED_OBJECT_SCHEMA)
    doc = scaled_object()
    misspelt = {**doc, "spec": {**doc["spec"], "minReplicas": 1}}
    assert not validator.is_valid(misspelt)
    trigger = doc["spec"]["triggers"][0]
    unquoted = {**trigger, "metadata": {**trigger["metadata"], "listLength": 8}}
    assert not validator.is_valid({**doc, "spec": {**doc["spec"], "triggers": [unquoted]}})


def test_the_scaled_object_scales_the_workers_on_the_three_job_lists() -> None:
    spec = scaled_object()["spec"]
    target = spec["scaleTargetRef"]
    # KEDA's defaults for a missing apiVersion and kind.
    assert target.get("apiVersion", "apps/v1") == "apps/v1"
    assert target.get("kind", "Deployment") == "Deployment"
    assert target["name"] == worker()["metadata"]["name"]
    assert "replicas" not in worker()["spec"], "the ScaledObject owns the count; apply would reset it"
    assert spec["minReplicaCount"] == 1, "one worker always up: a job never waits for a cold start"
    assert spec["maxReplicaCount"] > spec["minReplicaCount"]
    lists = [t["metadata"]["listName"] for t in spec["triggers"]]
    assert sorted(lists) == sorted(JOB_QUEUES) and len(set(lists)) == len(lists)
    # Fewer waiting items per worker for higher priorities: they get workers sooner.
    targets = {t["metadata"]["listName"]: int(t["metadata"]["listLength"]) for t in spec["triggers"]}
    assert [targets[q] for q in JOB_QUEUES] == sorted(targets[q] for q in JOB_QUEUES)


@pytest.mark.parametrize("queue", JOB_QUEUES)
def test_keda_reads_the_lists_on_the_redis_the_workers_use(queue: str) -> None:
    """KEDA's operator runs in its own namespace: the address must name this one."""
    (trigger,) = [t for t in scaled_object()["spec"]["triggers"] if t["metadata"]["listName"] == queue]
    broker = urlsplit(str(container_environment(worker(), "worker")["REDIS_URL"]))
    address = urlsplit(f"//{trigger['metadata']['address']}")
    (namespace,) = {k["namespace"] for k in kustomizations().values() if "namespace" in k}
    assert address.hostname == f"{broker.hostname}.{namespace}.svc"
    service = one("Service", str(broker.hostname))
    assert address.port == broker.port in {p["port"] for p in service["spec"]["ports"]}
    assert trigger["metadata"].get("databaseIndex", "0") == (broker.path.strip("/") or "0")
