"""The patterns the OpenAPI spec gives for names are the rules the gallery applies."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.db.tables import NAME_MAX, NAME_PATTERN, NO_NUL, clean_external_id, clean_name

pytestmark = pytest.mark.unit

SPACES = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]
# Spaces, NUL and a few letters, so that blank, NUL-bearing and ordinary names all come up.
TEXT = st.text(alphabet=st.sampled_from([*SPACES, "\x00", "a", "Ω", "-"]), max_size=12) | st.text(max_size=12)


def accepted(rule: Callable[[str], object], value: str) -> bool:
    try:
        rule(value)
    except ValueError:
        return False
    return True


def test_the_pattern_knows_every_character_that_strip_removes() -> None:
    blank = re.compile(NAME_PATTERN)
    assert [c for c in SPACES if blank.search(c)] == []
    assert all(blank.search(chr(c)) for c in range(sys.maxunicode + 1) if not chr(c).isspace() and c != 0)


@settings(max_examples=300, derandomize=True)
@given(TEXT)
def test_a_name_matches_the_pattern_exactly_when_the_gallery_takes_it(text: str) -> None:
    assert len(text) <= NAME_MAX
    assert (re.search(NAME_PATTERN, text) is not None) == accepted(clean_name, text)


@settings(max_examples=300, derandomize=True)
@given(TEXT)
def test_an_external_id_matches_the_pattern_exactly_when_the_gallery_takes_it(text: str) -> None:
    assert (re.search(NO_NUL, text) is not None) == accepted(clean_external_id, text)
