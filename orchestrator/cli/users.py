"""``facerec users add``: create a user straight in the database, such as the first admin.

The password is read from a prompt (twice) on a terminal, else from the first line of
stdin; never from the command line, where other users of the machine can read it.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import TextIO

from pydantic import TypeAdapter, ValidationError

from orchestrator.accounts.users import add_user
from orchestrator.cli.common import settings_from
from orchestrator.core.errors import InvalidRequest
from orchestrator.db import Gallery, default_database_url, make_engine, migrate
from orchestrator.db.account_tables import Password, Username


def read_password(stdin: TextIO) -> str:
    if stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise InvalidRequest("the two passwords differ")
        return password
    return stdin.readline().rstrip("\r\n")


def _valid(adapter: TypeAdapter[str], value: str, what: str) -> str:
    try:
        return adapter.validate_python(value)
    except ValidationError as error:
        raise InvalidRequest(f"{what}: {error.errors()[0]['msg']}") from None


def cmd_add(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    username = _valid(TypeAdapter(Username), args.username, "username")
    password = _valid(TypeAdapter(Password), read_password(sys.stdin), "password")
    engine = make_engine(settings.database_url or default_database_url(settings.data_dir))
    try:
        migrate(engine)
        user = add_user(Gallery(engine), username, password, args.role)
    finally:
        engine.dispose()
    print(f"user {user.username} created (id {user.id}, role {user.role})")
    return 0
