"""Mixed: 60 % recognitions, 30 % enrol + delete, 10 % listings."""

from loadtests.users import MixedUser

__all__ = ["MixedUser"]
