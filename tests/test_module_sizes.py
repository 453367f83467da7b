"""No module of the package grows past ~400 lines: a module that does is split along a real seam, named
after what each part holds (STYLE.md: modules of roughly 100-400 lines)."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "harness"
MAX_LINES = 400


def test_no_module_is_over_the_limit():
    sizes = {path.relative_to(PACKAGE).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
             for path in PACKAGE.rglob("*.py")}
    assert {name: lines for name, lines in sorted(sizes.items()) if lines > MAX_LINES} == {}
