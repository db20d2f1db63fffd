"""Who is asking: an API key or a signed-in user, with the role both kinds share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from orchestrator.db.tables import Role

PrincipalKind = Literal["key", "user"]


@dataclass(frozen=True)
class Principal:
    kind: PrincipalKind
    id: int
    role: Role
    name: str
    """The key's name or the user's username."""
    described: str
    """How an error names it: ``key frk_ab…`` or ``user ada``."""
    session_id: str | None = None
    """The session (its token's sha256) when a user signed in by cookie."""

    @property
    def tag(self) -> str:
        """What the log and jobs record: ``key:<id>`` or ``user:<id>``."""
        return f"{self.kind}:{self.id}"

    @property
    def api_key_id(self) -> int | None:
        return self.id if self.kind == "key" else None
