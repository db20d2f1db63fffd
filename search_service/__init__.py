"""facerec search service: an internal HTTP API over FAISS collections.

Importing this package must stay cheap and must not import FAISS: the orchestrator
imports :mod:`search_service.schema` and :mod:`search_service.checksum` from it.
The server lives in :mod:`search_service.server` (``python -m search_service``).
"""

import os

# FAISS parallelises batch searches with OpenMP, whose idle threads spin by default: on
# cores shared with the models that spinning cost more CPU than the searches (measured:
# 4.8 → 0.8 ms per recognition at 32 users). libgomp reads this once, when FAISS loads,
# which is after this package's import; an operator's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
