"""The Milvus variant of the deployment: docker-compose.milvus.yml over the GPU compose file, and
the deploy/k8s-milvus overlay over deploy/k8s, valid and wired to the milvus backend."""

from __future__ import annotations

import json
import shutil
import subprocess
import warnings
from importlib import resources
from typing import Any

import jsonschema
import pytest
import yaml

from orchestrator.core.settings import Settings
from tests.conftest import unavailable
from tests.deploy.files import ROOT, compose, interpolate
from tests.deploy.test_k8s import CUSTOM_RESOURCES, OLDEST
from tests.deploy.test_settings_names import DOT_ENV, ORCHESTRATOR_NAMES, build

pytestmark = pytest.mark.unit

OVERRIDE = ROOT / "docker-compose.milvus.yml"
OVERLAY = ROOT / "deploy" / "k8s-milvus"
MILVUS_DOT_ENV = {
    **DOT_ENV,
    "MILVUS_ROOT_PASSWORD": "a-milvus-root-password",
    "MINIO_ROOT_PASSWORD": "minio-pw-1",
}


class _Replace(dict[str, Any]):
    """A mapping tagged ``!override``: it replaces the base file's value instead of merging."""


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!override", lambda loader, node: _Replace(loader.construct_mapping(node, deep=True)))


def merged(base: Any, override: Any) -> Any:
    """Compose's merge of an override file: mappings merge key by key, ``!override`` replaces."""
    if isinstance(override, _Replace):
        return dict(override)
    if isinstance(base, dict) and isinstance(override, dict):
        return {**base, **{k: merged(base.get(k), v) for k, v in override.items()}}
    return override


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    return merged(compose(), yaml.load(OVERRIDE.read_text(), Loader=_Loader))


def test_the_merged_file_follows_the_compose_specification(stack: dict[str, Any]) -> None:
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads((vendor / "compose-spec.json").read_text())
    errors = list(jsonschema.validators.validator_for(schema)(schema).iter_errors(stack))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_the_shards_stay_down_and_nothing_waits_for_them(stack: dict[str, Any]) -> None:
    services = stack["services"]
    shards = [name for name in services if name.startswith("search-")]
    assert shards and all(services[name]["profiles"] == ["faiss-shards"] for name in shards)
    for name, service in services.items():
        if "profiles" not in service:
            assert not set(service.get("depends_on") or {}) & set(shards), name
    assert services["milvus"]["depends_on"].keys() == {"etcd", "minio"}
    for name in ("milvus", "etcd", "minio"):
        assert services[name]["restart"] == "unless-stopped" and services[name]["healthcheck"]["test"]
    devices = services["milvus"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" for d in devices)


@pytest.mark.parametrize("service", ["orchestrator", "worker"])
def test_the_api_and_workers_use_milvus(
    stack: dict[str, Any], service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {k: None if v is None else str(v) for k, v in stack["services"][service]["environment"].items()}
    assert not set(env) - ORCHESTRATOR_NAMES
    settings = build(Settings, {k: v and interpolate(v, MILVUS_DOT_ENV) for k, v in env.items()}, monkeypatch)
    assert settings.search.backend == "milvus" and settings.search.milvus_gpu_index
    assert settings.milvus_uri == "http://milvus:19530"
    assert settings.milvus_token == "root:a-milvus-root-password"
    assert (
        "milvus" in stack["services"][service]["networks"]
        or "search" in stack["services"]["milvus"]["networks"]
    )


def test_milvus_sets_the_root_password_it_is_called_with(stack: dict[str, Any]) -> None:
    user = yaml.safe_load(interpolate(stack["configs"]["milvus-user"]["content"], MILVUS_DOT_ENV))
    assert user["common"]["security"] == {
        "authorizationEnabled": True,
        "defaultRootPassword": "a-milvus-root-password",
    }


@pytest.fixture(scope="module")
def overlay() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        unavailable("kubectl builds the kustomize overlay")
    built = subprocess.run(
        [kubectl, "kustomize", str(OVERLAY)], capture_output=True, text=True, timeout=60, check=True
    )
    return [doc for doc in yaml.safe_load_all(built.stdout) if doc]


def test_the_overlay_builds_valid_manifests_without_the_shards(overlay: list[dict[str, Any]]) -> None:
    import kubernetes_validate

    for doc in overlay:
        assert (
            doc["metadata"]["name"] != "search"
            or doc["kind"] == "ConfigMap"
            or doc["kind"] == "NetworkPolicy"
        )
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_RESOURCES:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            kubernetes_validate.validate(doc, OLDEST, strict=True)


@pytest.mark.parametrize("name", ["orchestrator", "worker"])
def test_the_overlay_points_the_api_and_workers_at_milvus(
    overlay: list[dict[str, Any]], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployment = next(d for d in overlay if d["kind"] == "Deployment" and d["metadata"]["name"] == name)
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["FACEREC_SEARCH__MILVUS_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "facerec-secrets"
    plain = {k: e["value"] for k, e in env.items() if "value" in e}
    assert not set(env) - ORCHESTRATOR_NAMES
    settings = build(Settings, {**plain, "FACEREC_SEARCH__MILVUS_TOKEN": "root:pw"}, monkeypatch)
    assert (settings.search.backend, settings.milvus_uri) == ("milvus", "http://milvus.milvus.svc:19530")


def test_the_helm_values_run_gpu_query_nodes_with_authentication() -> None:
    values = yaml.safe_load((OVERLAY / "milvus-values.yaml").read_text())
    assert values["image"]["all"]["tag"].endswith("-gpu") and values["cluster"]["enabled"]
    assert "nvidia.com/gpu" in values["queryNode"]["resources"]["limits"]
    assert yaml.safe_load(values["extraConfigFiles"]["user.yaml"])["common"]["security"][
        "authorizationEnabled"
    ]
