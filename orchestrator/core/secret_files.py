"""Secrets kept in the data dir, in files readable by their owner only from the first byte.

The log stream of a service is collected, shipped and kept by others; a secret handed over
there is as good as published. These files are where a secret goes instead: the first admin
key (its plaintext exists nowhere else) and the token ``facerec up`` shares between the API
and its search service.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import sys
from pathlib import Path

log = logging.getLogger(__name__)

FIRST_ADMIN_KEY_FILE = "first-admin-key"
SEARCH_TOKEN_FILE = "search-token"
PRIVATE_MODE = 0o600
_MIN_TOKEN_CHARS = 24  # as MIN_SECRET_CHARS in settings: a shorter one would be refused there


def write_private(path: Path, text: str) -> Path:
    """Create ``path`` holding ``text``, mode 0600; FileExistsError if anything is there.

    Created with that mode by ``open(O_CREAT | O_EXCL)``, so it is never readable by others,
    not even between creation and a chmod; O_EXCL also refuses a symlink planted at ``path``.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            # The umask can only take bits away; this makes it exactly 0600 (owner can read).
            os.fchmod(file.fileno(), PRIVATE_MODE)
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def read_or_create_token(path: Path) -> str:
    """The token in ``path``; a new random one written there (0600) if there is none yet."""
    for _ in range(2):
        with contextlib.suppress(FileExistsError):  # made by an earlier run
            write_private(path, secrets.token_urlsafe(32) + "\n")
        token = path.read_text(encoding="utf-8").strip()
        if len(token) >= _MIN_TOKEN_CHARS:
            return token
        # Cut short by a crash while it was written: nobody can be relying on it.
        path.unlink(missing_ok=True)
    raise RuntimeError(f"{path} keeps holding no usable token")


def hand_over_first_admin_key(data_dir: Path, key: str) -> Path:
    """Put the first admin key where only its owner can read it; log where, never the key.

    A person at a terminal (stderr is a tty) also sees the key itself, once. Under a
    supervisor, a container runtime or ``facerec up`` piped to a file, stderr is the log
    stream and gets the path alone.
    """
    path = data_dir / FIRST_ADMIN_KEY_FILE
    # The database is new, so a key file left from an earlier one holds a dead key.
    path.unlink(missing_ok=True)
    write_private(path, key + "\n")
    log.warning(
        "first admin API key written to %s (readable by its owner only): "
        "keep it somewhere safe, then delete the file",
        path,
    )
    if sys.stderr.isatty():
        print(f"\nFirst admin API key (shown once, keep it): {key}\n", file=sys.stderr, flush=True)
    return path
