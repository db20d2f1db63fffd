"""Path and query parameters shared by the routes, bounded in the schema.

An id past 64 bits used to reach the database and end in a 500; out of range is now a 422.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import GetJsonSchemaHandler
from pydantic_core import CoreSchema

MAX_ROW_ID = 2**63 - 1
"""The largest id every supported database stores (a signed 64-bit integer)."""

RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
Offset = Annotated[int, Query(ge=0, le=MAX_ROW_ID, description="items to skip")]


class LeftOut:
    """Marks an optional query parameter (``Annotated[int | None, Query(...), LeftOut()]``).

    A client leaves it out; a query string cannot say null. So the spec gives the type alone,
    not FastAPI's ``anyOf: [type, null]``, which a client generator or a fuzzer reads as "null
    is a value to send".
    """

    def __get_pydantic_json_schema__(self, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> Any:
        schema = handler(core_schema)
        kinds = [kind for kind in schema.pop("anyOf", [schema]) if kind.get("type") != "null"]
        if len(kinds) == 1:
            schema.update(kinds[0])
        else:
            schema["anyOf"] = kinds
        return schema
