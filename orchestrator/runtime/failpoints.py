"""Named crash points for durability tests: ``FACEREC_FAILPOINTS=name[,name]`` kills the process there.

The process dies with SIGKILL's exit code and no clean-up, exactly like a power cut
between two writes. Unset (the default) it costs one dictionary lookup.
"""

from __future__ import annotations

import os

_ENV = "FACEREC_FAILPOINTS"


def hit(name: str) -> None:
    armed = os.environ.get(_ENV)
    if armed and name in armed.split(","):
        os._exit(137)
