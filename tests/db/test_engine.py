"""Engines, migrations and durability."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from threading import Barrier

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

from orchestrator.db import Gallery, default_database_url, make_engine, migrate
from orchestrator.db.engine import alembic_config, normalize_url
from orchestrator.db.tables import PersonCreate, metadata
from tests.db.conftest import BACKENDS, fresh_database

ROOT = Path(__file__).resolve().parents[2]
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()
TABLES = {
    "person",
    "face",
    "face_embedding",
    "face_score",
    "api_key",
    "app_user",
    "user_session",
    "login_failure",
    "recognition_log",
    "recognition_match",
    "request_minute",
    "job",
    "job_item",
    "job_image",
    "job_worker",
    "rollout",
    "gallery_state",
    "alembic_version",
}


@pytest.mark.unit
@pytest.mark.parametrize(
    ("typed", "driver"),
    [
        ("postgresql://u:p@db:5432/facerec", "postgresql+psycopg"),
        ("postgres://u@db/facerec", "postgresql+psycopg"),
        ("postgresql+psycopg://u@db/facerec", "postgresql+psycopg"),
        ("mysql://u@db/facerec", "mysql+pymysql"),
        ("mariadb://u@db/facerec", "mariadb+pymysql"),
        ("sqlite:////data/facerec.db", "sqlite"),
    ],
)
def test_plain_urls_map_to_the_shipped_drivers(typed: str, driver: str) -> None:
    url = normalize_url(typed)
    assert url.drivername == driver
    if url.get_backend_name() in ("mysql", "mariadb"):
        assert url.query["charset"] == "utf8mb4"


@pytest.mark.unit
def test_default_url_is_a_sqlite_file_in_the_data_dir(tmp_path: Path) -> None:
    url = default_database_url(tmp_path / "new")
    assert url == f"sqlite:///{tmp_path / 'new' / 'facerec.db'}"
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            pragmas = {
                name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            }
    finally:
        engine.dispose()
    assert pragmas == {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1, "busy_timeout": 30_000}
    assert (tmp_path / "new" / "facerec.db").exists()


def test_migrate_twice_is_a_no_op(engine: Engine, gallery: Gallery) -> None:
    person = gallery.create_person(PersonCreate(name="Survives a second migrate"))
    generation = gallery.bump_generation()
    migrate(engine)
    with engine.connect() as connection:
        assert set(inspect(connection).get_table_names()) == TABLES
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [HEAD]
    assert gallery.get_person(person.id) == person
    assert gallery.state().generation == generation


def test_migration_matches_the_models(engine: Engine) -> None:
    """The shipped revision creates exactly what the SQLModel tables describe."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, metadata)
    assert diff == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_migrations_on_a_new_database(backend: str, tmp_path: Path) -> None:
    """Replicas starting together: every one migrates, the schema is made once."""
    with fresh_database(backend, tmp_path) as url:
        starters = 4
        barrier = Barrier(starters)
        engines = [make_engine(url) for _ in range(starters)]

        def start(engine: Engine) -> None:
            barrier.wait()
            migrate(engine)

        try:
            with ThreadPoolExecutor(starters) as pool:
                list(pool.map(start, engines))
            gallery = Gallery(engines[0])
            assert gallery.state().generation == 1
            assert gallery.ensure_first_admin(None) is not None
        finally:
            for engine in engines:
                engine.dispose()


KILLED_WRITER = """
import os, signal, sys
import numpy as np
from orchestrator.db import Gallery, make_engine
from orchestrator.db.tables import PersonCreate

gallery = Gallery(make_engine(sys.argv[1]))
person = gallery.create_person(PersonCreate(name="acknowledged"))
face = gallery.add_face(
    person.id, embedding=np.ones(8, np.float32), model_version="1", crop_png=b"png",
    image_sha256="f" * 64, quality=1.0, det_score=1.0, box=[0, 0, 1, 1],
)
print(person.id, face.face_id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.unit
def test_acknowledged_write_survives_sigkill(tmp_path: Path) -> None:
    url = default_database_url(tmp_path)
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    done = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, url],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    person_id, face_id = map(int, done.stdout.split())
    engine = make_engine(url)
    try:
        gallery = Gallery(engine)
        assert gallery.get_person(person_id).name == "acknowledged"
        assert gallery.face_ids("1").tolist() == [face_id]
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_rollouts_of_the_first_schema_survive_the_lease_columns(backend: str, tmp_path: Path) -> None:
    """A rollout row written before revision 0002 reads back, finished and with no owner."""
    from alembic import command

    with fresh_database(backend, tmp_path) as url:
        engine = make_engine(url)
        try:
            config = alembic_config()
            with engine.begin() as connection:
                config.attributes["connection"] = connection
                command.upgrade(config, "0001")
                connection.execute(
                    text(
                        "INSERT INTO rollout (from_version, to_version, collection, state, progress,"
                        " created_at, updated_at) VALUES ('1', '2', 'c2', 'done', 1.0, :t, :t)"
                    ),
                    {"t": "2026-01-01 00:00:00"},
                )
            migrate(engine)
            gallery = Gallery(engine)
            assert gallery.unfinished_rollouts() == []
            old = gallery.get_rollout(1)
            assert (old.kind, old.from_collection, old.owner, old.lease_expires_at) == (
                "rollout",
                "",
                None,
                None,
            )
            assert old.state == "done"
        finally:
            engine.dispose()
