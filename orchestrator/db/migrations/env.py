"""Alembic environment: runs on the connection that ``migrate()`` passes in.

For writing a new revision by hand or by autogenerate, Alembic's command line also works
with ``-x url=…`` (or DATABASE_URL) and ``script_location`` pointing here.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection

from orchestrator.db.engine import make_engine
from orchestrator.db.tables import metadata


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite alters tables by copying them; later revisions need batch mode there.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    if context.is_offline_mode():
        raise RuntimeError("offline (SQL script) migrations are not supported")
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or os.environ.get("DATABASE_URL")
    if not url:
        raise RuntimeError("no database: pass -x url=… or set DATABASE_URL")
    engine = make_engine(url)
    try:
        with engine.connect() as own_connection:
            run(own_connection)
            own_connection.commit()
    finally:
        engine.dispose()


main()
