"""deploy/k8s: every manifest valid for its kind and API version, and wired consistently."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from orchestrator.modelrepo.catalog import DEFAULT_MODELS
from orchestrator.modelrepo.repository import TRT_ENGINE_CACHE
from tests.conftest import unavailable
from tests.deploy.files import (
    K8S,
    ROOT,
    Manifest,
    container,
    container_environment,
    is_kustomization,
    kustomizations,
    manifests,
    one,
    pod_spec,
    workloads,
)

pytestmark = pytest.mark.unit

# The oldest Kubernetes the manifests are written for: the StatefulSet pod-index label
# (search.yaml) is on by default from 1.28, and 1.29 is the oldest release still patched by
# the large managed offerings. Also checked against the newest schemas the package ships,
# so an API removed since then shows up.
OLDEST = "1.29"

# Custom resources: kubernetes-validate ships the built-in kinds only. Each is checked field by
# field in the module named.
CUSTOM_RESOURCES = {("keda.sh/v1alpha1", "ScaledObject"): "tests/deploy/test_worker.py"}


def _custom(manifest: Manifest) -> str | None:
    """The module that checks a custom resource (no Kubernetes schema has it), or None."""
    return CUSTOM_RESOURCES.get((manifest.doc["apiVersion"], manifest.kind))


def schema_cases() -> list[Manifest]:
    return [manifest for manifest in manifests() if _custom(manifest) is None]


def test_each_custom_resource_is_checked_by_the_module_named() -> None:
    custom = [(manifest, _custom(manifest)) for manifest in manifests() if _custom(manifest)]
    assert custom, "no custom resource left: drop CUSTOM_RESOURCES"
    for manifest, checked_by in custom:
        assert checked_by is not None
        assert manifest.kind in (ROOT / checked_by).read_text(), f"{checked_by} does not check {manifest}"


@pytest.fixture(scope="module")
def kubernetes_validate() -> Any:
    try:
        import kubernetes_validate
    except ModuleNotFoundError:
        unavailable("kubernetes-validate (dev extra) ships the Kubernetes JSON schemas")
    return kubernetes_validate


@pytest.mark.parametrize("manifest", schema_cases(), ids=str)
def test_manifest_matches_its_kubernetes_schema(manifest: Manifest, kubernetes_validate) -> None:
    for version in (OLDEST, kubernetes_validate.utils.latest_version()):
        try:
            with warnings.catch_warnings():
                # The package's use of jsonschema/referencing is not ours to fix.
                warnings.simplefilter("ignore", DeprecationWarning)
                # strict: unknown fields (a misspelt probe, resources at the wrong level) fail.
                kubernetes_validate.validate(manifest.doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            pytest.fail(f"{manifest} against {version}: {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            pytest.fail(f"{manifest}: {error.message}")


def test_strict_validation_catches_a_misplaced_field(kubernetes_validate) -> None:
    doc = copy.deepcopy(one("Deployment", "orchestrator"))
    spec = container(doc, "orchestrator")
    spec["readinessProbe"]["httpGet"]["paht"] = spec["readinessProbe"]["httpGet"].pop("path")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, OLDEST, strict=True)


def test_kustomizations_list_every_manifest_once() -> None:
    listed = []
    for path, kustomization in kustomizations().items():
        assert kustomization["kind"] == "Kustomization"
        for resource in kustomization["resources"]:
            target = path.parent / resource
            assert target.is_file(), f"{path}: {resource} does not exist"
            listed.append(target)
    files = [p for p in K8S.rglob("*.yaml") if not is_kustomization(p)]
    assert sorted(listed) == sorted(files)


@pytest.mark.parametrize("workload", workloads(), ids=str)
def test_every_container_has_probes_requests_and_a_memory_limit(workload: Manifest) -> None:
    for spec in pod_spec(workload.doc)["containers"]:
        assert "readinessProbe" in spec and "livenessProbe" in spec, f"{workload}: {spec['name']}"
        resources = spec.get("resources", {})
        assert resources.get("requests") and "memory" in resources.get("limits", {}), (
            f"{workload}: {spec['name']} has no requests or memory limit"
        )


def http_probe_path(spec: dict[str, Any], probe: str) -> str:
    return str(spec[probe]["httpGet"]["path"])


def test_probes_use_the_health_endpoints() -> None:
    orchestrator = container(one("Deployment", "orchestrator"), "orchestrator")
    assert http_probe_path(orchestrator, "readinessProbe") == "/health/ready"
    assert http_probe_path(orchestrator, "livenessProbe") == "/health/live"
    triton = container(one("Deployment", "triton"), "triton")
    assert http_probe_path(triton, "readinessProbe") == "/v2/health/ready"
    assert http_probe_path(triton, "livenessProbe") == "/v2/health/live"
    search = container(one("StatefulSet", "search"), "search")
    assert http_probe_path(search, "readinessProbe") == "/health"


def test_triton_requests_a_gpu() -> None:
    resources = container(one("Deployment", "triton"), "triton")["resources"]
    assert int(resources["limits"]["nvidia.com/gpu"]) >= 1
    assert (
        resources["requests"].get("nvidia.com/gpu", resources["limits"]["nvidia.com/gpu"])
        == (resources["limits"]["nvidia.com/gpu"])
    ), "extended resources must request what they limit"


def mounts(doc: dict[str, Any], name: str) -> dict[str, dict[str, Any]]:
    """Mount path -> the pod volume behind it."""
    volumes = {v["name"]: v for v in pod_spec(doc)["volumes"]}
    return {m["mountPath"]: volumes[m["name"]] for m in container(doc, name)["volumeMounts"]}


def claim_path(doc: dict[str, Any], name: str, path: str) -> tuple[str, str]:
    """(claim name, path inside the claim) of a container path."""
    for mount_path, volume in mounts(doc, name).items():
        if PurePosixPath(path).is_relative_to(mount_path) and "persistentVolumeClaim" in volume:
            return volume["persistentVolumeClaim"]["claimName"], str(
                PurePosixPath(path).relative_to(mount_path)
            )
    raise LookupError(f"{path} is on no claim of {name}")


def test_triton_serves_the_repository_the_job_writes() -> None:
    triton = one("Deployment", "triton")
    args = container(triton, "triton")["args"]
    repository = next(a.split("=", 1)[1] for a in args if a.startswith("--model-repository="))
    job = one("Job", "models-fetch")
    command = container(job, "fetch")["command"]
    assert command[:3] == ["facerec", "models", "fetch"]
    data_dir = command[command.index("--data-dir") + 1]
    # `facerec models fetch` writes $FACEREC_DATA_DIR/models/repository/gpu.
    written = claim_path(job, "fetch", f"{data_dir}/models/repository/gpu")
    assert claim_path(triton, "triton", repository) == written
    loaded = [a.split("=", 1)[1] for a in args if a.startswith("--load-model=")]
    assert sorted(loaded) == sorted(spec.name for spec in DEFAULT_MODELS)
    assert TRT_ENGINE_CACHE in mounts(triton, "triton"), "the GPU configs cache engines there"


def test_the_engine_cache_outlives_pods_with_a_directory_per_node() -> None:
    triton = one("Deployment", "triton")
    claim = one(
        "PersistentVolumeClaim",
        mounts(triton, "triton")[TRT_ENGINE_CACHE]["persistentVolumeClaim"]["claimName"],
    )
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"], "mounted by the Triton pods of every GPU node"
    spec = container(triton, "triton")
    mount = next(m for m in spec["volumeMounts"] if m["mountPath"] == TRT_ENGINE_CACHE)
    assert mount["subPathExpr"] == "$(NODE_NAME)", "an engine fits the GPU it was built on"
    env = {e["name"]: e for e in spec["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"


def runtime_classes() -> dict[tuple[str, str], str]:
    """(kind, name) -> the RuntimeClass the top kustomization's patches give that workload."""
    classes = {}
    for patch in kustomizations()[K8S / "kustomization.yaml"].get("patches", []):
        for operation in yaml.safe_load(patch["patch"]):
            if operation["path"] == "/spec/template/spec/runtimeClassName":
                assert operation["op"] == "add"
                classes[patch["target"]["kind"], patch["target"]["name"]] = operation["value"]
    return classes


def requests_a_gpu(doc: dict[str, Any]) -> bool:
    return any(
        "nvidia.com/gpu" in c.get("resources", {}).get("limits", {}) for c in pod_spec(doc)["containers"]
    )


def test_gpu_pods_and_only_they_run_under_the_nvidia_runtime_class() -> None:
    gpu = {(w.kind, w.name) for w in workloads() if requests_a_gpu(w.doc)}
    assert gpu == {("Deployment", "triton"), ("StatefulSet", "search")}
    classes = runtime_classes()
    assert classes.keys() == gpu
    assert set(classes.values()) == {"nvidia"}, "one value, set in kustomization.yaml"
    for workload in workloads():
        assert "runtimeClassName" not in pod_spec(workload.doc), f"{workload}: set it in kustomization.yaml"


def test_autoscalers_target_existing_deployments_and_adapter_metrics() -> None:
    adapter = yaml.safe_load(one("ConfigMap", "adapter-config")["data"]["config.yaml"])
    served = {
        "External": {r["name"]["as"] for r in adapter.get("externalRules", [])},
        "Pods": {r["name"]["as"] for r in adapter.get("rules", [])},
    }
    autoscalers = {m.name: m.doc for m in manifests() if m.kind == "HorizontalPodAutoscaler"}
    assert autoscalers["orchestrator"]["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "orchestrator",
    }
    for name, hpa in autoscalers.items():
        assert hpa["apiVersion"] == "autoscaling/v2"
        target = hpa["spec"]["scaleTargetRef"]
        one(target["kind"], target["name"])
        for metric in hpa["spec"]["metrics"]:
            kind = metric["type"]
            if kind in served:
                metric_name = metric[kind.lower()]["metric"]["name"]
                assert metric_name in served[kind], f"{name}: no adapter rule serves {metric_name}"
    orchestrator_metrics = [m["type"] for m in autoscalers["orchestrator"]["spec"]["metrics"]]
    assert "External" in orchestrator_metrics, "the orchestrator scales on Triton queue time"
    assert "nv_inference_queue_duration_us" in adapter["externalRules"][0]["metricsQuery"]


def test_every_workload_has_a_disruption_budget() -> None:
    budgets = [
        m.doc["spec"]["selector"]["matchLabels"] for m in manifests() if m.kind == "PodDisruptionBudget"
    ]
    for workload in workloads():
        labels = workload.doc["spec"]["template"]["metadata"]["labels"]
        assert any(b.items() <= labels.items() for b in budgets), f"{workload} has no PodDisruptionBudget"


def test_search_shards_match_the_orchestrator_shard_list() -> None:
    shards = one("StatefulSet", "search")
    service = one("Service", shards["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None", "shards are addressed by pod name: headless"
    count = shards["spec"]["replicas"]
    env = container_environment(shards, "search")
    assert env["SHARD_COUNT"] == str(count)
    spec = container(shards, "search")
    assert "$(SHARD_INDEX)/$(SHARD_COUNT)" in spec["args"]
    assert "volumeClaimTemplates" in shards["spec"]
    urls = json.loads(
        str(container_environment(one("Deployment", "orchestrator"), "orchestrator")["FACEREC_SEARCH_URLS"])
    )
    assert len(urls) == count
    port = next(p["containerPort"] for p in spec["ports"] if p["name"] == "http")
    for ordinal, url in enumerate(urls):
        parts = urlsplit(url)
        assert parts.hostname == f"{shards['metadata']['name']}-{ordinal}.{service['metadata']['name']}"
        assert parts.port == port


def secret_refs(doc: dict[str, Any], name: str) -> dict[str, dict[str, Any]]:
    """Environment name -> its secretKeyRef, for the container ``name``."""
    return {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in container(doc, name).get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }


def test_secrets_come_from_a_secret() -> None:
    env = secret_refs(one("Deployment", "orchestrator"), "orchestrator")
    for name in ("DATABASE_URL", "FACEREC_ADMIN_KEY", "FACEREC_SEARCH_TOKEN"):
        assert env[name]["name"] == "facerec-secrets"
    for manifest in manifests():
        assert manifest.kind != "Secret", f"{manifest}: secrets are created in the cluster, not committed"


def test_no_host_path_volumes() -> None:
    for manifest in manifests():
        if "template" in manifest.doc.get("spec", {}):
            for volume in pod_spec(manifest.doc).get("volumes", []):
                assert "hostPath" not in volume, f"{manifest}: {volume['name']}"


def test_orchestrator_and_shards_read_the_same_required_search_token() -> None:
    """The shards listen on 0.0.0.0, where the service refuses to start without a token."""
    orchestrator = secret_refs(one("Deployment", "orchestrator"), "orchestrator")["FACEREC_SEARCH_TOKEN"]
    search = secret_refs(one("StatefulSet", "search"), "search")["FACEREC_SEARCH_TOKEN"]
    assert orchestrator == search == {"name": "facerec-secrets", "key": "search-token"}
    assert "--from-literal=search-token=" in (K8S / "orchestrator.yaml").read_text()


def test_model_control_reaches_every_triton_pod_through_a_headless_service() -> None:
    """A load through the Service `triton` would reach one pod; the headless name resolves to each."""
    triton = one("Deployment", "triton")
    headless = one("Service", "triton-headless")
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"] == one("Service", "triton")["spec"]["selector"]
    assert headless["spec"]["selector"].items() <= triton["spec"]["template"]["metadata"]["labels"].items()
    # A headless name leads to the pods themselves: no port mapping, so the ports must be theirs.
    ports = {p["name"]: p["containerPort"] for p in container(triton, "triton")["ports"]}
    for port in headless["spec"]["ports"]:
        assert port["port"] == ports[port["targetPort"]], port
    env = container_environment(one("Deployment", "orchestrator"), "orchestrator")
    control = [urlsplit(f"//{url}") for url in json.loads(str(env["FACEREC_TRITON__CONTROL_URLS"]))]
    assert [(u.hostname, u.port) for u in control] == [("triton-headless", ports["grpc"])]
    metrics = urlsplit(str(env["FACEREC_TRITON__METRICS_URL"]))
    assert (metrics.hostname, metrics.port) == ("triton-headless", ports["metrics"])


def test_the_orchestrator_writes_the_repository_triton_serves() -> None:
    """Rollouts keep the version policy on the claim, where a restarted Triton reads it."""
    orchestrator, triton = one("Deployment", "orchestrator"), one("Deployment", "triton")
    args = container(triton, "triton")["args"]
    served = next(a.split("=", 1)[1] for a in args if a.startswith("--model-repository="))
    repository = str(container_environment(orchestrator, "orchestrator")["FACEREC_TRITON__REPOSITORY"])
    assert repository == served, "one path in both pods, so logs and docs name one place"
    assert claim_path(orchestrator, "orchestrator", repository) == claim_path(triton, "triton", served)
    mount = next(
        m
        for m in container(orchestrator, "orchestrator")["volumeMounts"]
        if m["mountPath"] == "/facerec-data"
    )
    volume = mounts(orchestrator, "orchestrator")["/facerec-data"]["persistentVolumeClaim"]
    assert not mount.get("readOnly") and not volume.get("readOnly"), "the orchestrator writes it"
    claim = one("PersistentVolumeClaim", volume["claimName"])
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"], "mounted by pods on many nodes, written by some"
    orchestrator_user = pod_spec(orchestrator)["securityContext"]["runAsUser"]
    job_user = pod_spec(one("Job", "models-fetch"))["securityContext"]["runAsUser"]
    assert orchestrator_user == job_user, "the files the Job writes must be the orchestrator's to rewrite"
