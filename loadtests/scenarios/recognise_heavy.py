"""Recognise-heavy: 90 % recognitions, some enrolments and listings."""

from loadtests.users import RecogniseHeavyUser

__all__ = ["RecogniseHeavyUser"]
