"""Path and query parameters shared by the routes, bounded in the schema.

An id past 64 bits used to reach the database and end in a 500; out of range is now a 422.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

MAX_ROW_ID = 2**63 - 1
"""The largest id every supported database stores (a signed 64-bit integer)."""

RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
Offset = Annotated[int, Query(ge=0, le=MAX_ROW_ID, description="items to skip")]
