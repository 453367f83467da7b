"""Generic HTTP JSON: any method and path, a body from a template or a JSONL file, a success rule.

- **Bodies**: ``body_template`` is JSON text where ``$n`` (or ``${n}``) becomes the request's index
  (0, 1, 2, ...; ``$$`` is a literal ``$``), checked once by filling in ``n = 0``; ``bodies_file`` is a
  JSONL file, one JSON body a line (blank lines skipped), request n taking line ``n % lines``; neither
  sends no body.
- **Success**: the status is one of ``success_status`` (default 200) and, when ``success_field`` is set,
  the answer is JSON holding that dotted path (``outputs.0.data``: keys of objects, indexes of lists).

Bad settings raise one ConfigError naming the field and the value (a JSONL file's bad line by
``path:line``), when the adapter is built: the harness builds it once before any child starts.
"""

from __future__ import annotations

import json
from pathlib import Path
from string import Template
from typing import Any, Sequence

from harness.errors import ConfigError
from harness.load.protocols.base import Adapter, HttpRequest, Piece, Reading

__all__ = ["HttpJsonAdapter", "fill_template", "read_bodies", "find_field"]

JSON_HEADERS = {"Content-Type": "application/json"}
MAX_BODIES = 1_000_000


def fill_template(template: str, n: int) -> bytes:
    """Return ``template`` with ``$n`` set to ``n``, as bytes; raise ConfigError naming ``body_template``
    for an unknown or malformed placeholder or a result that is not JSON."""
    try:
        text = Template(template).substitute(n=n)
    except KeyError as exc:
        raise ConfigError("body_template", template, f"unknown placeholder ${exc.args[0]}; "
                          "only $n (the request's index) is filled in ($$ for a literal $)") from None
    except ValueError as exc:
        raise ConfigError("body_template", template, f"malformed placeholder ({exc}); use $n, ${{n}} or $$") from None
    try:
        json.loads(text)
    except ValueError as exc:
        raise ConfigError("body_template", template, f"not JSON once $n is filled in: {exc}") from None
    return text.encode()


def read_bodies(path: str | Path) -> list[bytes]:
    """Return the JSON bodies of a JSONL file, one a line (blank lines skipped); raise ConfigError naming
    ``bodies_file`` (with ``path:line`` for a line that is not JSON) for a missing, empty or bad file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("bodies_file", str(path), f"cannot be read: {exc}") from None
    bodies = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            json.loads(line)
        except ValueError as exc:
            raise ConfigError("bodies_file", f"{path}:{number}", f"line {number} is not JSON: {exc}") from None
        bodies.append(line.strip().encode())
        if len(bodies) > MAX_BODIES:
            raise ConfigError("bodies_file", str(path), f"more than {MAX_BODIES} bodies")
    if not bodies:
        raise ConfigError("bodies_file", str(path), "holds no body (one JSON document a line)")
    return bodies


def find_field(document: Any, dotted: str) -> bool:
    """Return True when ``document`` holds the dotted path (object keys, list indexes)."""
    node = document
    for part in dotted.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return True


class HttpJsonAdapter(Adapter):
    """Requests of one method and path with bodies from a template or a JSONL file; see the module docs."""

    name = "http-json"

    def __init__(self, *, method: str, path: str, body_template: str | None = None, bodies_file: str | None = None,
                 success_status: Sequence[int] = (200,), success_field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        if body_template is not None and bodies_file is not None:
            raise ConfigError("body_template", body_template, "give a body template or a bodies file, not both")
        self.method, self.path = method, path
        self.template = Template(body_template) if body_template is not None else None
        self.bodies = read_bodies(bodies_file) if bodies_file is not None else None
        if body_template is not None:
            fill_template(body_template, 0)  # checked here, before any child starts
        self.success_status = frozenset(success_status)
        self.success_field = success_field
        has_body = body_template is not None or bodies_file is not None
        self.headers = {**(JSON_HEADERS if has_body else {}), **(headers or {})}

    def request(self, n: int) -> HttpRequest:
        if self.bodies is not None:
            body = self.bodies[n % len(self.bodies)]
        elif self.template is not None:
            body = self.template.substitute(n=n).encode()  # checked in __init__: the same placeholders every time
        else:
            body = b""
        return HttpRequest(self.method, self.path, self.headers, body)

    def read(self, status: int, pieces: Sequence[Piece], latency_ms: float, error: str = "") -> Reading:
        if error:
            return Reading(False, status, error)
        if status not in self.success_status:
            return Reading(False, status, f"HTTP {status}")
        if self.success_field is not None:
            body = b"".join(data for _, data in pieces)
            try:
                answer = json.loads(body)
            except ValueError:
                return Reading(False, status, f"the answer is not JSON: {body[:60]!r}")
            if not find_field(answer, self.success_field):
                return Reading(False, status, f"the answer has no field {self.success_field}")
        return Reading(True, status)
