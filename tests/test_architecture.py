"""ARCHITECTURE.md stays true: every module, package and name it points to exists, and every package
of the harness (and every module at its top level) is on the page."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "harness"
PAGE = ROOT / "ARCHITECTURE.md"
# ``harness.a.b.name`` or ``harness/a/b/``
REFERENCE = re.compile(r"\bharness(?:[./][A-Za-z_]\w*)+/?")


def _module_path(parts: list[str]) -> Path | None:
    base = ROOT.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _top_level_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def _missing(reference: str) -> str | None:
    """Return why ``reference`` does not exist, or None when it does."""
    parts = reference.rstrip("/").replace("/", ".").split(".")
    for cut in range(len(parts), 0, -1):
        path = _module_path(parts[:cut])
        if path is None:
            continue
        rest = parts[cut:]
        if not rest:
            return None
        if rest[0] not in _top_level_names(path):
            return f"{'.'.join(parts[:cut])} defines no {rest[0]}"
        return None
    return "no such module or package"


def test_every_reference_on_the_page_exists():
    references = sorted(set(REFERENCE.findall(PAGE.read_text(encoding="utf-8"))))
    assert len(references) > 40
    assert {ref: why for ref in references if (why := _missing(ref))} == {}


def test_every_package_and_top_level_module_is_on_the_page():
    text = PAGE.read_text(encoding="utf-8")
    named = {ref.rstrip("/").replace("/", ".") for ref in REFERENCE.findall(text)}
    named |= {".".join(name.split(".")[:k]) for name in named for k in range(2, name.count(".") + 2)}
    packages = {".".join(p.parent.relative_to(ROOT).parts) for p in PACKAGE.rglob("__init__.py")} - {"harness"}
    modules = {f"harness.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert sorted((packages | modules) - named) == []
