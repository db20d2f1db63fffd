"""The database layer: engine and migrations, tables, and the gallery over them."""

from orchestrator.db.engine import default_database_url, make_engine, migrate
from orchestrator.db.gallery import Gallery

__all__ = ["Gallery", "default_database_url", "make_engine", "migrate"]
