"""Engines for SQLite (the default), PostgreSQL and MySQL/MariaDB, and the migrations.

Nothing here runs at import: the app's lifespan or the command line calls
:func:`make_engine` and :func:`migrate` with the URL from its settings.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.pool import StaticPool

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
WRITE = "facerec_write"
"""Execution option marking a connection that will write: on SQLite it begins with
``BEGIN IMMEDIATE``, taking the write lock up front. A deferred transaction that reads
and then writes fails at once with "database is locked" when another writer committed
in between (the busy timeout does not apply to that case)."""
SQLITE_BUSY_TIMEOUT_MS = 30_000
MIGRATION_LOCK_TIMEOUT_S = 300
_PG_MIGRATION_LOCK = 0x66616365726563  # "facerec": any constant shared by all processes
_DRIVERS = {
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}


def default_database_url(data_dir: Path) -> str:
    """The SQLite file ``facerec.db`` in the data dir, as an absolute URL."""
    return f"sqlite:///{(data_dir / 'facerec.db').resolve()}"


def normalize_url(url: str) -> URL:
    """Map the plain ``postgresql://`` / ``mysql://`` forms onto the drivers we ship."""
    parsed = make_url(url)
    driver = _DRIVERS.get(parsed.drivername)
    if driver:
        parsed = parsed.set(drivername=driver)
    if parsed.get_backend_name() in ("mysql", "mariadb") and "charset" not in parsed.query:
        # Names and attributes are Unicode; MySQL's "utf8" is a 3-byte subset.
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return parsed


def _json_dumps(value: Any) -> str:
    # Keep non-ASCII as is: the search on attributes compares the stored JSON text.
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def make_engine(url: str) -> Engine:
    """An engine for ``url`` (``sqlite:///…``, ``postgresql://…``, ``mysql://…``)."""
    parsed = normalize_url(url)
    options: dict[str, Any] = {"pool_pre_ping": True, "json_serializer": _json_dumps}
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed, options)
    if backend in ("mysql", "mariadb"):
        options["pool_recycle"] = 3600  # under the server's wait_timeout of 8 h
    return create_engine(parsed, **options)


def _sqlite_engine(url: URL, options: dict[str, Any]) -> Engine:
    database = url.database or ""
    if database in ("", ":memory:"):
        # One shared connection, or every connection would see its own empty database.
        options["poolclass"] = StaticPool
    elif not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False}, **options)
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own implicit BEGIN is turned off so _sqlite_begin decides the kind.
    dbapi_connection.isolation_level = None
    # SQLite's lower() folds ASCII only; the search must fold "É" like the servers do.
    dbapi_connection.create_function("lower", 1, _lower, deterministic=True)
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        _use_wal(cursor)
        cursor.execute("PRAGMA synchronous=FULL")  # an acknowledged commit is on disk
        cursor.execute("PRAGMA foreign_keys=ON")  # off by default: no cascades without it
    finally:
        cursor.close()


def _use_wal(cursor: Any) -> None:
    """Put the database in WAL mode (it stays so: only a new database changes).

    The switch needs the database to itself, and SQLite answers "locked" at once instead
    of waiting out the busy timeout when another connection holds it, as when replicas
    start together on a new database: so wait here.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _sqlite_begin(connection: Connection) -> None:
    write = connection.get_execution_options().get(WRITE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def alembic_config() -> Config:
    """The Alembic configuration, built in code: no alembic.ini is needed at run time."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    return config


def migrate(engine: Engine) -> None:
    """Upgrade the database to the newest revision; a no-op when it is there already.

    Safe to call at every start and from several processes at once: the upgrade runs
    under a lock (PostgreSQL advisory lock, MySQL GET_LOCK, SQLite's write lock), so
    the second process waits and then finds nothing to do.
    """
    config = alembic_config()
    with engine.connect() as connection:
        connection.execution_options(**{WRITE: True})
        with _migration_lock(connection), connection.begin():
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    log.info("database at the newest revision", extra={"backend": engine.dialect.name})


@contextmanager
def _migration_lock(connection: Connection) -> Iterator[None]:
    backend = connection.dialect.name
    if backend == "postgresql":
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
        connection.commit()
        try:
            yield
        finally:
            connection.rollback()
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _PG_MIGRATION_LOCK})
            connection.commit()
    elif backend in ("mysql", "mariadb"):
        # GET_LOCK names are server-wide: include the database so tests in parallel
        # databases of one server do not wait for each other.
        name = f"facerec_migrate.{connection.engine.url.database}"[:64]
        got = connection.execute(
            text("SELECT GET_LOCK(:name, :timeout)"), {"name": name, "timeout": MIGRATION_LOCK_TIMEOUT_S}
        ).scalar()
        connection.commit()
        if got != 1:
            raise TimeoutError(f"could not take the migration lock {name!r}")
        try:
            yield
        finally:
            connection.rollback()
            connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": name})
            connection.commit()
    else:
        # SQLite: the migration's transaction begins IMMEDIATE and holds the write lock.
        yield
