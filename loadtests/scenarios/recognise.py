"""Recognition only (the report's traffic): ``-u`` users, ``-t`` run time."""

from loadtests.users import RecogniseUser

__all__ = ["RecogniseUser"]
