"""Environment given to the services in compose and Kubernetes: real setting names, values that parse."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import AliasChoices, BaseModel

from orchestrator.core.settings import Settings
from search_service.settings import SearchSettings
from tests.deploy.files import (
    compose,
    compose_environment,
    compose_services_running,
    container_environment,
    interpolate,
    one,
)

pytestmark = pytest.mark.unit

# Read by the shard's own command line (--shard "$(SHARD_INDEX)/$(SHARD_COUNT)"), not by settings.
SHARD_ARGUMENTS = {"SHARD_INDEX", "SHARD_COUNT"}
# What the operator's .env holds for the compose file's required secrets that settings check.
DOT_ENV = {"FACEREC_SEARCH_TOKEN": "a-generated-search-token-of-43-characters-x"}


def env_names(model: type[BaseModel], prefix: str, delimiter: str | None) -> set[str]:
    """Every environment name pydantic-settings reads for ``model`` (nested groups with ``delimiter``)."""
    names: set[str] = set()
    for field_name, field in model.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {choice for choice in alias.choices if isinstance(choice, str)}
            continue
        name = f"{prefix}{field_name}".upper()
        names.add(name)
        annotation = field.annotation
        if delimiter and isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names |= env_names(annotation, f"{name}{delimiter}", None)
    return names


ORCHESTRATOR_NAMES = env_names(Settings, "FACEREC_", "__")
SEARCH_NAMES = env_names(SearchSettings, "FACEREC_SEARCH_", None)


def test_the_name_map_knows_the_documented_settings() -> None:
    assert {"FACEREC_TRITON__URL", "FACEREC_SEARCH_URLS", "DATABASE_URL", "REDIS_URL"} <= ORCHESTRATOR_NAMES
    assert {"FACEREC_API__MAX_CONCURRENT_IMAGES", "FACEREC_ADMIN_KEY"} <= ORCHESTRATOR_NAMES
    assert {"FACEREC_AUTH__OPEN_REGISTRATION", "FACEREC_AUTH__COOKIE_SECURE"} <= ORCHESTRATOR_NAMES
    assert {"FACEREC_SEARCH_DEVICE", "FACEREC_SEARCH_SHARD"} <= SEARCH_NAMES
    # One name, so one Secret key feeds the shards and the orchestrator that calls them.
    assert "FACEREC_SEARCH_TOKEN" in ORCHESTRATOR_NAMES & SEARCH_NAMES


def test_every_account_setting_is_in_the_readme_s_configuration_table() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme[readme.index("## Configuration") : readme.index("## Command line")]
    accounts = {name for name in ORCHESTRATOR_NAMES if name.startswith("FACEREC_AUTH__")}
    assert len(accounts) == 6
    assert {name for name in accounts if f"`{name}`" not in table} == set()


def orchestrator_environments() -> dict[str, dict[str, str | None]]:
    return {
        "compose": compose_environment("orchestrator"),
        "k8s": container_environment(one("Deployment", "orchestrator"), "orchestrator"),
    }


def search_environments() -> dict[str, dict[str, str | None]]:
    found = {
        f"compose {name}": compose_environment(name) for name in compose_services_running("search.Dockerfile")
    }
    found["k8s"] = container_environment(one("StatefulSet", "search"), "search")
    return found


def build(settings_class: type[Any], env: dict[str, str | None], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The settings object the service would build from ``env`` (and nothing of this machine)."""
    import os

    for name in list(os.environ):
        if name.startswith("FACEREC_") or name in ("DATABASE_URL", "REDIS_URL"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        if value is not None:
            monkeypatch.setenv(name, interpolate(value, DOT_ENV))
    return settings_class()


@pytest.mark.parametrize("where", ["compose", "k8s"])
def test_orchestrator_environment_uses_setting_names(where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = orchestrator_environments()[where]
    unknown = set(env) - ORCHESTRATOR_NAMES
    assert not unknown, f"not orchestrator settings: {sorted(unknown)}"
    settings = build(Settings, env, monkeypatch)
    assert settings.host == "0.0.0.0", "a container must listen beyond its loopback"
    assert settings.triton.url and settings.search_urls and settings.redis_url


@pytest.mark.parametrize("where", ["compose", "k8s"])
def test_worker_environment_uses_setting_names(where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`facerec worker` reads the orchestrator's settings, its FACEREC_JOBS__ group included."""
    env = {
        "compose": compose_environment("worker"),
        "k8s": container_environment(one("Deployment", "worker"), "worker"),
    }[where]
    unknown = set(env) - ORCHESTRATOR_NAMES
    assert not unknown, f"not orchestrator settings: {sorted(unknown)}"
    settings = build(Settings, env, monkeypatch)
    assert settings.triton.url and settings.search_urls and settings.redis_url
    assert settings.jobs.alive_file and settings.jobs.alive_file.is_absolute()


def test_orchestrator_secrets_are_settings_fields() -> None:
    env = container_environment(one("Deployment", "orchestrator"), "orchestrator")
    assert {"DATABASE_URL", "FACEREC_ADMIN_KEY", "FACEREC_SEARCH_TOKEN"} <= set(env) & ORCHESTRATOR_NAMES


@pytest.mark.parametrize("where", list(search_environments()))
def test_search_environment_uses_setting_names(where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = search_environments()[where]
    unknown = set(env) - SEARCH_NAMES - SHARD_ARGUMENTS
    assert not unknown, f"not search settings: {sorted(unknown)}"
    build(SearchSettings, {k: v for k, v in env.items() if k not in SHARD_ARGUMENTS}, monkeypatch)


def test_compose_shards_match_the_orchestrator_shard_list(monkeypatch: pytest.MonkeyPatch) -> None:
    shards = compose_services_running("search.Dockerfile")
    settings = build(Settings, compose_environment("orchestrator"), monkeypatch)
    assert len(settings.search_urls) == len(shards) >= 1
    for index, url in enumerate(settings.search_urls):
        service = url.split("//", 1)[1].split(":", 1)[0]
        command = shards[service]["command"]
        assert command[command.index("--shard") + 1] == f"{index}/{len(shards)}", service
        assert f":{command[command.index('--port') + 1]}" in url
    assert "orchestrator" in compose()["services"]
