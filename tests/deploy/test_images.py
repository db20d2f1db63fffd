"""The Dockerfiles, their build context and the requirements they install."""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.files import (
    DEPLOY_TEXT_FILES,
    DOCKER,
    DOCKERFILES,
    ROOT,
    dockerfile_instructions,
    dockerignore_patterns,
    ignored,
    requirements_call,
    stages,
)

pytestmark = pytest.mark.unit

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# A path of somebody's machine, not of a container: home directories, this workspace, drives.
HOST_PATH = re.compile(r"(?<![\w.$-])(/home/|/Users/|/work/|/root/|/mnt/[a-z]/|[A-Za-z]:\\\\)")


def load_requirements_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("image_requirements", DOCKER / "requirements.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_are_two_images() -> None:
    assert [p.name for p in DOCKERFILES] == ["orchestrator.Dockerfile", "search.Dockerfile"]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_is_multi_stage_pinned_non_root_and_health_checked(path: Path) -> None:
    grouped = stages(dockerfile_instructions(path))
    assert len(grouped) >= 2, "build stage apart from the runtime stage"
    names = set()
    python = PYPROJECT["project"]["requires-python"]  # ">=3.11,<3.12"
    minor = re.search(r">=(\d+\.\d+)", python)
    assert minor
    for stage in grouped:
        words = stage[0].args.split()
        image = words[0]
        if image not in names:
            repository, _, tag = image.rpartition(":")
            assert repository and tag and tag != "latest" and "$" not in image, (
                f"{path.name}: {image} unpinned"
            )
            if repository == "python":
                assert tag.startswith(f"{minor.group(1)}.") and "slim" in tag, f"{image} vs {python}"
        if len(words) == 3 and words[1].upper() == "AS":
            names.add(words[2])
    final = grouped[-1]
    users = [i.args for i in final if i.keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), f"{path.name} runs as root"
    assert users[-1].split(":")[0].isdigit(), "numeric uid, so Kubernetes' runAsNonRoot can verify it"
    assert any(i.keyword == "HEALTHCHECK" and i.args != "NONE" for i in final), f"{path.name}: no HEALTHCHECK"
    assert any(i.keyword in ("CMD", "ENTRYPOINT") for i in final)


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_copied_files_exist_and_reach_the_build_context(path: Path) -> None:
    patterns = dockerignore_patterns()
    for instruction in dockerfile_instructions(path):
        if instruction.keyword != "COPY" or "--from=" in instruction.args:
            continue
        sources = [w for w in instruction.args.split()[:-1] if not w.startswith("--")]
        for source in sources:
            assert (ROOT / source).exists(), f"{path.name}:{instruction.line}: {source} missing"
            assert not ignored(source, patterns), (
                f"{path.name}:{instruction.line}: .dockerignore drops {source}"
            )


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    patterns = dockerignore_patterns()
    for local in (".venv", "var/search/index", ".pytest_cache", "orchestrator/__pycache__/x.pyc", ".git"):
        assert ignored(local, patterns), local
    assert not ignored("orchestrator/core/settings.py", patterns)


@pytest.mark.parametrize("path", DEPLOY_TEXT_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_path_of_a_developer_machine(path: Path) -> None:
    for number, line in enumerate(path.read_text().splitlines(), 1):
        assert not HOST_PATH.search(line), f"{path.relative_to(ROOT)}:{number}: {line.strip()}"


def pinned_direct() -> dict[str, str]:
    pins = {}
    for text in PYPROJECT["project"]["dependencies"]:
        requirement = Requirement(text)
        (specifier,) = requirement.specifier
        pins[canonicalize_name(requirement.name)] = specifier.version
    return pins


def constraints(name: str) -> dict[str, str]:
    found = {}
    for line in (DOCKER / name).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", line
            found[canonicalize_name(requirement.name)] = specifier.version
    return found


def test_constraints_agree_with_the_project_pins() -> None:
    frozen = constraints("constraints.txt")
    stale = {
        name: (version, frozen.get(name))
        for name, version in pinned_direct().items()
        if frozen.get(name) != version
    }
    assert not stale, f"pyproject vs deploy/docker/constraints.txt: {stale}; regenerate (deploy/README.md)"


def image_requirements(dockerfile: str, extras: list[str]) -> list[Requirement]:
    args = requirements_call(DOCKER / dockerfile)
    assert args[0] == "pyproject.toml"
    tool = load_requirements_tool()
    only = (
        args[args.index("--only") + 1 : next((i for i, a in enumerate(args) if a == "--extra"), None)]
        if "--only" in args
        else None
    )
    exclude = args[args.index("--exclude") + 1 :] if "--exclude" in args else None
    return [Requirement(r) for r in tool.requirements(PYPROJECT, only, exclude, extras)]


IMAGES = [
    ("orchestrator.Dockerfile", [], "orchestrator"),
    ("search.Dockerfile", [], "search_service"),
    ("search.Dockerfile", ["gpu"], "search_service"),
]


@pytest.mark.parametrize(
    ("dockerfile", "extras", "package"), IMAGES, ids=["orchestrator", "search", "search-gpu"]
)
def test_image_requirements_are_pinned(dockerfile: str, extras: list[str], package: str) -> None:
    gpu_pins = constraints("constraints-gpu.txt")
    for requirement in image_requirements(dockerfile, extras):
        pinned = any(s.operator == "==" for s in requirement.specifier)
        assert pinned or canonicalize_name(requirement.name) in gpu_pins, (
            f"{dockerfile}: {requirement} unpinned"
        )


def closure(requirements: list[Requirement]) -> set[str]:
    """Distributions installed for ``requirements``, following this environment's metadata."""
    seen: set[str] = set()
    todo = [(r, frozenset(r.extras)) for r in requirements]
    while todo:
        requirement, extras = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        for text in metadata.requires(requirement.name) or []:
            child = Requirement(text)
            environments = [{"extra": e} for e in extras] or [{"extra": ""}]
            if child.marker is None or any(child.marker.evaluate(env) for env in environments):
                todo.append((child, frozenset(child.extras)))
    return seen


def third_party_imports(package: str) -> dict[str, Path]:
    """Top-level modules imported anywhere in ``package``, except code that never runs in an image."""
    skipped = {
        # `facerec up` only: in an image REDIS_URL names a real server.
        ROOT / "orchestrator" / "runtime" / "local_valkey.py",
        # Run inside Triton (CPU target).
        ROOT / "orchestrator" / "modelrepo" / "triton_backend" / "model.py",
        ROOT / "orchestrator" / "modelrepo" / "triton_backend" / "face_chain.py",
        # `facerec models import-pth`: PyTorch is the optional `pth` extra, which no image
        # installs; without it the command says how to install it.
        ROOT / "orchestrator" / "modelrepo" / "iresnet.py",
        ROOT / "orchestrator" / "modelrepo" / "pth.py",
        # `facerec calibrate --plot`: matplotlib is the optional `plot` extra, likewise.
        ROOT / "orchestrator" / "cli" / "calibration_plot.py",
    }
    first_party = {"orchestrator", "search_service"}
    found: dict[str, Path] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        if path in skipped:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top not in sys.stdlib_module_names and top not in first_party:
                    found.setdefault(top, path)
    return found


@pytest.mark.parametrize(("dockerfile", "extras", "package"), IMAGES[:2], ids=["orchestrator", "search"])
def test_image_requirements_cover_what_the_package_imports(
    dockerfile: str, extras: list[str], package: str
) -> None:
    installed = closure(image_requirements(dockerfile, extras))
    providers = metadata.packages_distributions()
    missing = {
        module: str(path.relative_to(ROOT))
        for module, path in third_party_imports(package).items()
        if not {canonicalize_name(d) for d in providers.get(module, [])} & installed
    }
    assert not missing, f"{dockerfile} would lack: {missing}"


def test_the_gpu_extra_replaces_faiss_cpu() -> None:
    names = {canonicalize_name(r.name) for r in image_requirements("search.Dockerfile", ["gpu"])}
    assert "faiss-gpu" in names and "faiss-cpu" not in names


def test_requirements_tool_refuses_unknown_names() -> None:
    tool = load_requirements_tool()
    with pytest.raises(ValueError, match="not a dependency"):
        tool.requirements(PYPROJECT, only=["no-such-package"])
