"""Alembic migrations, shipped inside the package and run by ``orchestrator.db.migrate``."""
