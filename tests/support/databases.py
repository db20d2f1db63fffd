"""Database servers for tests: the local PostgreSQL and MariaDB, or the one DATABASE_URL names.

``scratch_database`` makes a uniquely named database on a server and drops it afterwards,
so no run ever sees another's rows.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import OperationalError

from orchestrator.db import make_engine
from orchestrator.db.engine import normalize_url
from tests.conftest import unavailable

LOCAL_SERVERS = {
    "postgresql": "postgresql://postgres@127.0.0.1:5432/test",
    "mysql": "mysql://root@127.0.0.1:3306/test",
}
CONNECT_TIMEOUT_S = "5"


def _backend(url: str) -> str:
    backend = normalize_url(url).get_backend_name()
    return "mysql" if backend == "mariadb" else backend


def server_urls() -> dict[str, str]:
    """Backend name → URL of an existing database on that server, to create ours from."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return {} if _backend(url) == "sqlite" else {_backend(url): url}
    return dict(LOCAL_SERVERS)


SERVERS = server_urls()


@contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """A new database named facerec_test_<random> on that server; dropped afterwards."""
    url = normalize_url(server_url)
    url = url.update_query_dict({"connect_timeout": CONNECT_TIMEOUT_S})
    name = f"facerec_test_{secrets.token_hex(5)}"
    mysql = url.get_backend_name() in ("mysql", "mariadb")
    admin = make_engine(url.render_as_string(hide_password=False)).execution_options(
        isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(
                f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
                if mysql
                else f"CREATE DATABASE {name}"
            )
    except OperationalError as exc:
        admin.engine.dispose()
        unavailable(f"{url.get_backend_name()} at {url.host}:{url.port}: {exc.orig}")
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            # FORCE: a connection a failed test left open must not keep the database.
            connection.exec_driver_sql(
                f"DROP DATABASE IF EXISTS {name}" if mysql else f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )
        admin.engine.dispose()
