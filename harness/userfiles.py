"""Reading the files a user hands the harness: one reader, so every bad file is one clear line.

Spec, SLA and service-config YAML, experiment JSON/YAML: each is read here, and whatever is wrong
with it becomes a `ConfigError` (exit 2) naming the field (the flag or the file's role) and the
file, in one line:

- unreadable (missing, a directory, no permission) or larger than `MAX_FILE_BYTES`;
- not UTF-8: the byte offset (and line) of the first byte that cannot be decoded;
- a YAML or JSON syntax error: the line and column, one line, not PyYAML's five to seven;
- a YAML document whose aliases expand to more than `MAX_YAML_VALUES` values (an "alias bomb":
  ten lines can expand to billions of values, and printing one of them in an error would take
  gigabytes), or whose alias refers to itself;
- empty, or only comments: refused rather than read as "all defaults" (leaving the file out
  means the defaults);
- not a mapping at the top level (`load_mapping`).

PyYAML's and json's exceptions are translated here, where they enter, chained with ``from``.
"""

from __future__ import annotations

import codecs
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml

from harness.errors import ConfigError

__all__ = ["MAX_FILE_BYTES", "MAX_YAML_VALUES", "EMPTY_NEEDS", "read_text", "load_mapping"]

MAX_FILE_BYTES = 16 * 2**20  # a spec is a few hundred bytes; an experiment a few kilobytes
MAX_YAML_VALUES = 100_000  # values after alias expansion; a real spec has under 200

EMPTY_NEEDS = "one setting, or leave the file out for the defaults"

Syntax = Literal["yaml", "json"]


def read_text(path: str | os.PathLike[str], field: str) -> str:
    """Return the UTF-8 text of the file at ``path`` (a leading byte-order mark dropped).

    Raises ConfigError naming ``field`` and the path: the file cannot be read (missing, a directory,
    no permission), is larger than `MAX_FILE_BYTES`, or is not UTF-8 (with the byte offset and line).
    """
    file = Path(path)
    try:
        with open(file, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError as exc:
        raise ConfigError(field, str(file), "cannot read: no such file") from exc
    except IsADirectoryError as exc:
        raise ConfigError(field, str(file), "cannot read: a directory, not a file") from exc
    except OSError as exc:
        raise ConfigError(field, str(file), f"cannot read: {exc.strerror or exc}") from exc
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(field, str(file), f"larger than {MAX_FILE_BYTES // 2**20} MiB: not a configuration file")
    skipped = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[skipped:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = skipped + exc.start
        line = data.count(b"\n", 0, offset) + 1
        raise ConfigError(field, str(file), f"not UTF-8: byte 0x{data[offset]:02x} at offset {offset} (line {line}) "
                                            "cannot be decoded; save the file as UTF-8") from exc


def load_mapping(path: str | os.PathLike[str], field: str, *, syntax: Syntax = "yaml",
                 needs: str = EMPTY_NEEDS) -> dict[str, Any]:
    """Return the mapping at the top level of a YAML (or, with ``syntax="json"``, JSON) file.

    ``needs`` completes the message for an empty file: "give at least {needs}".
    Raises ConfigError naming ``field`` and the path for every way the file can be wrong (module
    docstring), each in one line.
    """
    file = Path(path)
    text = read_text(file, field)
    if not _has_content(text, syntax):
        raise ConfigError(field, str(file), f"is empty (nothing but blank lines or comments): give at least {needs}")
    data = _parse_json(text, field, file) if syntax == "json" else _parse_yaml(text, field, file)
    if not isinstance(data, dict):
        kind = "nothing" if data is None else f"a {type(data).__name__}"
        raise ConfigError(field, str(file), f"expected a mapping (key: value) at the top level, not {kind}")
    return data


def _has_content(text: str, syntax: Syntax) -> bool:
    if syntax == "json":
        return bool(text.strip())
    return any(line.strip() and not line.lstrip().startswith("#") for line in text.splitlines())


def _parse_json(text: str, field: str, file: Path) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(field, str(file), f"not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
    except RecursionError as exc:
        raise ConfigError(field, str(file), "not valid JSON: nested too deeply") from exc


def _parse_yaml(text: str, field: str, file: Path) -> Any:
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # checks every character at once: a ReaderError
        node = loader.get_single_node()
        if node is None:
            return None
        _validate_expanded_size(node, field, file)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        raise ConfigError(field, str(file), _yaml_problem(exc)) from exc
    except yaml.reader.ReaderError as exc:  # a control character: a position in the text, no mark
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise ConfigError(field, str(file), f"not valid YAML at line {line}, column {column}: character "
                                            f"{chr(exc.character)!r} is not allowed") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(field, str(file), f"not valid YAML: {' '.join(str(exc).split())}") from exc
    except RecursionError as exc:
        raise ConfigError(field, str(file), "not valid YAML: nested too deeply") from exc
    finally:
        if loader is not None:
            loader.dispose()


def _yaml_problem(exc: yaml.MarkedYAMLError) -> str:
    """One line from PyYAML's multi-line message: where, what, and what it was inside of."""
    mark = exc.problem_mark or exc.context_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = exc.problem or exc.context or "a syntax error"
    inside = ""
    if exc.context and exc.problem and exc.context_mark is not None:
        inside = f" ({exc.context} started at line {exc.context_mark.line + 1}, column {exc.context_mark.column + 1})"
    return f"not valid YAML{where}: {problem}{inside}"


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _validate_expanded_size(root: yaml.Node, field: str, file: Path) -> None:
    """Raise ConfigError when the document, aliases expanded, holds more than `MAX_YAML_VALUES` values.

    An alias is the same node object as its anchor, so the composed graph is small however large
    its expansion; each node's expanded size is computed once (memoised), without recursion.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()  # on the current path: meeting one again is an alias to itself
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            open_nodes.discard(key)
            size = 1 + sum(sizes[id(child)] for child in _children(node))
            if size > MAX_YAML_VALUES:
                raise ConfigError(field, str(file), f"refused: its aliases expand to more than {MAX_YAML_VALUES:,} "
                                                    "values (a YAML alias bomb?)")
            sizes[key] = size
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            mark = node.start_mark
            raise ConfigError(field, str(file), f"refused: the value anchored at line {mark.line + 1} holds an alias "
                                                "to itself (a recursive YAML alias)")
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node))
