"""Print the pinned requirements an image installs, read from the project's pyproject.toml.

    python requirements.py pyproject.toml [--only NAME ...] [--exclude NAME ...] [--extra gpu]

The images install these, then the project itself with ``--no-deps``, so the pins in
pyproject.toml stay the one place where versions are chosen. ``--only`` keeps a subset
(the search service needs a fraction of the orchestrator's libraries), ``--exclude``
drops what no container runs (Locust, the local Valkey of ``facerec up``). ``--extra gpu``
swaps faiss-cpu for the gpu extra: both wheels ship the same ``faiss`` package, and
installing both leaves whichever came last, half overwritten.

Standard library only: it runs in the build stage before anything is installed.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
REPLACED_BY_EXTRA = {"gpu": {"faiss-cpu"}}


def normalize(name: str) -> str:
    """PEP 503 name: lower case, runs of ``-_.`` become ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = NAME.match(requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return normalize(match.group(1))


def requirements(
    pyproject: dict[str, object],
    only: list[str] | None = None,
    exclude: list[str] | None = None,
    extras: list[str] | None = None,
) -> list[str]:
    """The selected requirement strings, in pyproject order, extras last."""
    project = pyproject["project"]
    assert isinstance(project, dict)
    base: list[str] = list(project["dependencies"])
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    names = {requirement_name(r) for r in base}
    for given in (only or []) + (exclude or []):
        if normalize(given) not in names:
            # A renamed or dropped dependency must not silently widen or narrow an image.
            raise ValueError(f"{given!r} is not a dependency in pyproject.toml")
    keep = {normalize(n) for n in only} if only else names
    keep -= {normalize(n) for n in exclude or []}
    selected = [r for r in base if requirement_name(r) in keep]
    for extra in extras or []:
        if extra not in optional:
            raise ValueError(f"no extra {extra!r} in pyproject.toml")
        replaced = REPLACED_BY_EXTRA.get(extra, set())
        selected = [r for r in selected if requirement_name(r) not in replaced] + optional[extra]
    return selected


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pyproject", type=Path)
    parser.add_argument("--only", nargs="+", metavar="NAME")
    parser.add_argument("--exclude", nargs="+", metavar="NAME")
    parser.add_argument("--extra", action="append", choices=["gpu"], default=[])
    args = parser.parse_args(argv)
    data = tomllib.loads(args.pyproject.read_text())
    try:
        lines = requirements(data, args.only, args.exclude, args.extra)
    except ValueError as error:
        print(f"requirements.py: {error}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
