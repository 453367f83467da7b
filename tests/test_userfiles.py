"""`harness.userfiles`: one reader for user files, every way a file is wrong one `ConfigError` line."""

from __future__ import annotations

import time

import pytest

import harness.userfiles
from harness.errors import EXIT_USAGE, ConfigError
from harness.userfiles import MAX_YAML_VALUES, load_mapping, read_text


def _error(path, **kwargs) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_mapping(path, "--spec", **kwargs)
    assert info.value.exit_code == EXIT_USAGE and info.value.field == "--spec" and info.value.value == str(path)
    assert "\n" not in str(info.value)
    return info.value


def test_the_public_surface():
    assert sorted(harness.userfiles.__all__) == ["EMPTY_NEEDS", "MAX_FILE_BYTES", "MAX_YAML_VALUES", "load_mapping",
                                                 "read_text"]


def test_a_mapping_is_read_from_yaml_and_json(tmp_path):
    (tmp_path / "a.yaml").write_text("\ufefftopology: single\nprobes: &p {a: 1}\nother: *p\n", encoding="utf-8")
    assert load_mapping(tmp_path / "a.yaml", "spec") == {"topology": "single", "probes": {"a": 1}, "other": {"a": 1}}
    (tmp_path / "a.json").write_text('{"title": "caf\u00e9"}', encoding="utf-8")
    assert load_mapping(tmp_path / "a.json", "experiment", syntax="json") == {"title": "caf\u00e9"}


def test_not_utf8_names_the_byte_offset_and_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"a: 1\nname: caf\xe9\n")
    error = _error(path)
    assert "not UTF-8: byte 0xe9 at offset 14 (line 2)" in str(error)
    assert isinstance(error.__cause__, UnicodeDecodeError)  # translated where it entered, chained


@pytest.mark.parametrize("text, where", [
    ("a: 1\nb: [1, 2\nc: 3\n", "at line 3, column 2: expected ',' or ']', but got ':' (while parsing a flow sequence "
                               "started at line 2, column 4)"),
    ("a: 1\n  b: 2\n", "at line 2, column 4: mapping values are not allowed here"),
    ("a: *nowhere\n", "at line 1, column 4: found undefined alias 'nowhere'"),
    ("a: b\x07\n", "at line 1, column 5: character '\\x07' is not allowed"),
])
def test_a_yaml_syntax_error_is_one_line_with_line_and_column(tmp_path, text, where):
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    assert f"not valid YAML {where}" in str(_error(path))


def test_a_json_syntax_error_names_line_and_column(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{\n  "a": 1,\n}', encoding="utf-8")
    assert "not valid JSON at line 3, column 1: Expecting property name" in str(_error(path, syntax="json"))


def test_an_alias_bomb_is_refused_quickly_in_one_short_line(tmp_path):
    lines = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for previous, name in zip("abcdefghi", "bcdefghij"):
        lines.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    started = time.monotonic()
    error = _error(path)
    assert time.monotonic() - started < 2.0
    assert f"more than {MAX_YAML_VALUES:,} values" in str(error) and len(str(error)) < 300


def test_many_aliases_within_the_limit_are_read(tmp_path):
    path = tmp_path / "shared.yaml"
    path.write_text("base: &b {period: 1, timeout: 2}\n" + "".join(f"p{i}: *b\n" for i in range(200)), encoding="utf-8")
    assert len(load_mapping(path, "spec")) == 201


def test_a_recursive_alias_is_refused(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("a: 1\nb: &x {c: [*x]}\n", encoding="utf-8")
    assert "anchored at line 2 holds an alias to itself" in str(_error(path))


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n  # and another\n"])
def test_an_empty_or_comment_only_file_is_refused_saying_what_to_give(tmp_path, text):
    path = tmp_path / "empty.yaml"
    path.write_text(text, encoding="utf-8")
    assert "is empty (nothing but blank lines or comments): give at least one setting" in str(_error(path))
    assert "give at least a title" in str(_error(path, needs="a title"))


@pytest.mark.parametrize("text, kind", [("- a\n", "a list"), ("just text\n", "a str"), ("~\n", "nothing")])
def test_the_top_level_must_be_a_mapping(tmp_path, text, kind):
    path = tmp_path / "x.yaml"
    path.write_text(text, encoding="utf-8")
    assert f"expected a mapping (key: value) at the top level, not {kind}" in str(_error(path))


def test_unreadable_files(tmp_path, monkeypatch):
    assert "cannot read: no such file" in str(_error(tmp_path / "missing.yaml"))
    assert "cannot read: a directory" in str(_error(tmp_path))
    monkeypatch.setattr(harness.userfiles, "MAX_FILE_BYTES", 8)
    (tmp_path / "big.yaml").write_text("a: 123456789\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="larger than"):
        read_text(tmp_path / "big.yaml", "--spec")


def test_nesting_too_deep_is_refused(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    assert "nested too deeply" in str(_error(path))
