"""Enrol-heavy: 80 % enrol + delete of a face, 20 % recognitions (writes serialise in the index)."""

from loadtests.users import EnrolHeavyUser

__all__ = ["EnrolHeavyUser"]
