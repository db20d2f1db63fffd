"""facerec search service: an internal HTTP API over FAISS collections.

Importing this package must stay cheap and must not import FAISS: the orchestrator
imports :mod:`search_service.schema` and :mod:`search_service.checksum` from it.
The server lives in :mod:`search_service.server` (``python -m search_service``).
"""
