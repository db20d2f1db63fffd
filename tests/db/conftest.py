"""The database suite runs on SQLite always, and on PostgreSQL and MariaDB/MySQL.

Each server backend gets a fresh, uniquely named database for the test session, made
through the server's ``test`` database and dropped at the end, so no test sees another
run's data. ``DATABASE_URL`` picks the one server backend to run besides SQLite;
otherwise the local defaults are tried. An unreachable server skips locally and fails
under CI=true.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, update

from orchestrator.db import Gallery, default_database_url, make_engine, migrate
from orchestrator.db.tables import GalleryState, metadata
from tests.support.databases import SERVERS, scratch_database

BACKENDS = [
    pytest.param("sqlite", marks=pytest.mark.unit),
    *(pytest.param(name, marks=pytest.mark.integration) for name in SERVERS),
]


@contextmanager
def fresh_database(backend: str, tmp_path: Path) -> Iterator[str]:
    """An empty, unmigrated database of that backend, for tests of migrate() itself."""
    if backend == "sqlite":
        yield default_database_url(tmp_path)
    else:
        with scratch_database(SERVERS[backend]) as url:
            yield url


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def database_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with fresh_database(backend, tmp_path_factory.mktemp("db")) as url:
        yield url


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    migrate(engine)
    yield engine
    engine.dispose()


def reset(engine: Engine) -> None:
    """Empty every table and put the live state back to its first-start values."""
    with engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            if table.name != GalleryState.__tablename__:
                connection.execute(table.delete())
        connection.execute(
            update(GalleryState).values(
                generation=1,
                active_model_version="1",
                active_collection="arcface-v1-g1",
                pending_model_version=None,
                pending_collection=None,
            )
        )


@pytest.fixture
def gallery(engine: Engine) -> Gallery:
    reset(engine)
    return Gallery(engine)
