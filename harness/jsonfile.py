"""Strict JSON files: written atomically, read back with one error naming the file.

At the bottom of the layering (beside `harness.atomicfile`, which it writes through) so that every
layer writes its records the same way without importing the run-record module above it.

JSON written through `write_json` is strict: NaN and infinities become ``null`` (browsers and
``jq`` reject them), paths become strings, dataclasses/pydantic models/numpy scalars become plain
JSON. `read_json` raises `harness.errors.RunRecordError` naming the file when it is missing,
unreadable or not JSON.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Mapping

from pydantic import BaseModel

from harness.atomicfile import replace_text
from harness.errors import RunRecordError

__all__ = ["to_jsonable", "write_json", "read_json"]


def to_jsonable(obj: Any) -> Any:
    """Return ``obj`` as strict JSON data: NaN/inf -> None, Path -> str, models/dataclasses -> dicts."""
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj, key=repr) if isinstance(obj, (set, frozenset)) else obj
        return [to_jsonable(v) for v in items]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, BaseModel):
        return to_jsonable(obj.model_dump(mode="python"))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable({f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)})
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy arrays and scalars
        return to_jsonable(obj.tolist())
    raise TypeError(f"cannot write {type(obj).__name__} as JSON: {obj!r:.80}")


def write_json(path: str | Path, obj: Any, *, indent: int | None = 2) -> Path:
    """Write ``obj`` as strict JSON to ``path`` atomically (temp file + rename); return the path.

    Readers never see a half-written file, even if the process dies mid-write. Raises TypeError for
    values with no JSON form, OSError when the directory cannot be written.
    """
    path = Path(path)
    text = json.dumps(to_jsonable(obj), indent=indent, ensure_ascii=False, allow_nan=False)
    return replace_text(path, text + "\n")


def read_json(path: str | Path) -> Any:
    """Return the JSON value in ``path``; raise RunRecordError naming the file if missing or corrupt."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunRecordError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RunRecordError(f"{path}: cannot be read: {exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunRecordError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc
