"""The deployment files as data: the compose file, the Kubernetes manifests, the Dockerfiles.

Shared by the tests of this package; nothing here asserts.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.gpu.yml"
K8S = ROOT / "deploy" / "k8s"
DOCKER = ROOT / "deploy" / "docker"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
DOCKERIGNORE = ROOT / ".dockerignore"

# Files that could carry a path of the machine they were written on.
DEPLOY_TEXT_FILES = sorted(
    path
    for path in [
        COMPOSE,
        DOCKERIGNORE,
        *K8S.rglob("*"),
        *DOCKER.rglob("*"),
        *(ROOT / "deploy" / "nginx").rglob("*"),
    ]
    if path.is_file() and "__pycache__" not in path.parts
)

INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(text: str, env: dict[str, str] | None = None) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}``, with ``env`` as the shell.

    A required variable that is unset becomes ``<VAR>`` so the value stays recognisable.
    """
    env = env or {}

    def one(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if env.get(name):
            return env[name]
        if op in (":-", "-"):
            return arg
        return f"<{name}>"

    return INTERPOLATION.sub(one, text)


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def compose_environment(service: str) -> dict[str, str | None]:
    env = compose()["services"][service].get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {k: None if v is None else str(v) for k, v in env.items()}


def compose_services_running(module_or_command: str) -> dict[str, dict[str, Any]]:
    """Services whose image's entry point is ``module_or_command`` (by build file or command)."""
    found = {}
    for name, service in compose()["services"].items():
        dockerfile = (service.get("build") or {}).get("dockerfile", "")
        command = service.get("command") or []
        if module_or_command in dockerfile or (command and command[0] == module_or_command):
            found[name] = service
    return found


@dataclass(frozen=True)
class Manifest:
    path: Path
    index: int
    doc: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.doc["kind"])

    @property
    def name(self) -> str:
        return str(self.doc["metadata"]["name"])

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}#{self.index} {self.kind}/{self.name}"


def is_kustomization(path: Path) -> bool:
    return path.name == "kustomization.yaml"


@cache
def manifests() -> tuple[Manifest, ...]:
    found = []
    for path in sorted(K8S.rglob("*.yaml")):
        if is_kustomization(path):
            continue
        for index, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if doc:
                found.append(Manifest(path, index, doc))
    return tuple(found)


def kustomizations() -> dict[Path, dict[str, Any]]:
    return {path: yaml.safe_load(path.read_text()) for path in sorted(K8S.rglob("kustomization.yaml"))}


def one(kind: str, name: str) -> dict[str, Any]:
    matches = [m.doc for m in manifests() if m.kind == kind and m.name == name]
    if len(matches) != 1:
        raise LookupError(f"{len(matches)} manifests of {kind}/{name}")
    return matches[0]


def workloads() -> list[Manifest]:
    return [m for m in manifests() if m.kind in ("Deployment", "StatefulSet")]


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["template"]["spec"]


def container(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in pod_spec(doc)["containers"] if c["name"] == name)


def container_environment(doc: dict[str, Any], name: str) -> dict[str, str | None]:
    """Names (and literal values) a container gets: env entries and every envFrom ConfigMap."""
    spec = container(doc, name)
    env: dict[str, str | None] = {}
    for source in spec.get("envFrom", []):
        config_map = one("ConfigMap", source["configMapRef"]["name"])
        env.update(config_map["data"])
    for item in spec.get("env", []):
        env[item["name"]] = item.get("value")
    return env


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    args: str


def dockerfile_instructions(path: Path) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped (no heredocs used)."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction are dropped by Docker too
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1])
            continue
        pending.append(stripped)
        text = " ".join(part.strip() for part in pending if part.strip())
        keyword, _, args = text.partition(" ")
        instructions.append(Instruction(start, keyword.upper(), args.strip()))
        pending = []
    return instructions


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """Instructions grouped by build stage; global ARGs before the first FROM are dropped."""
    grouped: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            grouped.append([])
        if grouped:
            grouped[-1].append(instruction)
    return grouped


def requirements_call(path: Path) -> list[str]:
    """The arguments the Dockerfile gives ``requirements.py`` (shell variables dropped)."""
    for instruction in dockerfile_instructions(path):
        if instruction.keyword == "RUN" and "requirements.py" in instruction.args:
            words = shlex.split(instruction.args)
            start = next(i for i, w in enumerate(words) if w.endswith("requirements.py")) + 1
            end = next(i for i, w in enumerate(words) if w == ">" or w.startswith(">"))
            return [w for w in words[start:end] if not w.startswith("$")]
    raise LookupError(f"{path.name} does not run requirements.py")


def dockerignore_patterns() -> list[str]:
    lines = (line.strip() for line in DOCKERIGNORE.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def ignored(relative: str, patterns: list[str]) -> bool:
    """Whether .dockerignore drops ``relative`` from the build context (last match wins)."""
    parts = Path(relative).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.strip("/")
        variants = {body, body.removeprefix("**/")}
        if any(fnmatch.fnmatchcase(c, v) for c in candidates for v in variants):
            verdict = not negate
    return verdict
