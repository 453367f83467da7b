"""`harness.errors`: a ConfigError is one line with the value quoted, however long or large the value."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from harness.errors import EXIT_USAGE, MAX_SHOWN_CHARS, ConfigError, shown_value


@pytest.mark.parametrize("value", ["weekly", "", -7, 1.5, None, True, ["a", 1], {"b": 1, "a": 2}, Path("/x")])
def test_a_short_value_is_quoted_as_repr_quotes_it(value):
    assert shown_value(value) == repr(value)
    assert str(ConfigError("field", value, "why")) == f"field={value!r}: why"


def test_a_long_string_is_cut_to_the_limit():
    error = ConfigError("name", "x" * 5000, "too long")
    shown = shown_value("x" * 5000)
    assert len(shown) <= MAX_SHOWN_CHARS and shown.startswith("'xxx") and "..." in shown
    assert str(error) == f"name={shown}: too long" and error.value == "x" * 5000  # the value itself is kept


def test_a_huge_or_self_similar_structure_is_shown_quickly_and_briefly():
    value: list = ["lol"]
    for _ in range(30):  # 9**30 elements expanded: repr() would never finish
        value = [value] * 9
    started = time.monotonic()
    text = str(ConfigError("name", value, "refused"))
    assert time.monotonic() - started < 1.0 and len(text) < MAX_SHOWN_CHARS + 50
    assert len(shown_value(list(range(1_000_000)))) <= MAX_SHOWN_CHARS


def test_an_integer_too_long_for_text_is_described():
    assert shown_value(10**10_000) == "<an integer of about 10,000 digits>"


def test_the_reason_is_one_line_and_bounded():
    error = ConfigError("field", 1, "first line\n  second line\n" + "y" * 3000, source="spec.yaml")
    text = str(error)
    assert "\n" not in text and text.startswith("spec.yaml: field=1: first line second line yyy")
    assert len(text) < 1100 and error.exit_code == EXIT_USAGE
