"""The orchestrator's HTTP API (API.md): app factory, routes, errors, metrics."""
