"""`harness.slo`: the one module of SLO defaults, what meeting the SLO means, and `Slo`'s validation.

The scan below keeps the defaults written once: no other module of the harness spells 500 (ms) as a
latency bound or 0.01 as an error rate. It looks at what a literal is bound to (a parameter default,
an assignment, a keyword argument, a pydantic ``Field``), so 500 as a status code or 0.01 as a sleep
or a significance level is not mistaken for the SLO.
"""

from __future__ import annotations

import ast
import json
import math
import re
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.slo import DEFAULT_MAX_ERROR_RATE, DEFAULT_P99_MS, Slo

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "harness"
HOME = PACKAGE / "slo.py"

LATENCY_NAME = re.compile(r"p99|latency|slo|threshold_ms", re.IGNORECASE)
ERROR_RATE_NAME = re.compile(r"error_rate|error_share|failed_share", re.IGNORECASE)


def _bound_name(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> str | None:
    """The name a literal is bound to: the parameter it defaults, the target it is assigned to, or the
    keyword it is passed as, climbing through calls and expressions (``float(x or 500.0)``, ``Field(500.0)``)."""
    child, parent = node, parents.get(node)
    if isinstance(parent, (ast.Tuple, ast.List, ast.Set)):
        return None  # one of many values (histogram bounds), not a bound of its own
    while parent is not None and not isinstance(parent, ast.stmt):
        if isinstance(parent, ast.keyword):
            return parent.arg
        if isinstance(parent, ast.arguments):
            positional = parent.posonlyargs + parent.args
            if child in parent.defaults:
                return positional[len(positional) - len(parent.defaults) + parent.defaults.index(child)].arg
            if child in parent.kw_defaults:
                return parent.kwonlyargs[parent.kw_defaults.index(child)].arg
        child, parent = parent, parents.get(parent)
    if isinstance(parent, ast.AnnAssign) and isinstance(parent.target, ast.Name):
        return parent.target.id
    if isinstance(parent, ast.Assign):
        names = [t.id for t in parent.targets if isinstance(t, ast.Name)]
        return names[0] if names else None
    return None


def spelled_defaults(source: str) -> list[str]:
    """Return ``line: name = literal`` for each 500 bound to a latency name and 0.01 bound to an error-rate name."""
    tree = ast.parse(source)
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    found: list[tuple[int, int, str]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            continue
        if node.value not in (DEFAULT_P99_MS, DEFAULT_MAX_ERROR_RATE):
            continue
        name = _bound_name(node, parents) or ""
        pattern = LATENCY_NAME if node.value == DEFAULT_P99_MS else ERROR_RATE_NAME
        if pattern.search(name):
            found.append((node.lineno, node.col_offset, f"{node.lineno}: {name} = {node.value!r}"))
    return [text for _, _, text in sorted(found)]


def test_no_module_but_the_slo_module_spells_the_default_p99_or_error_rate():
    offenders = [f"{path.relative_to(ROOT)}:{line}" for path in sorted(PACKAGE.rglob("*.py")) if path != HOME
                 for line in spelled_defaults(path.read_text(encoding="utf-8"))]
    assert offenders == [], "use harness.slo.DEFAULT_P99_MS / DEFAULT_MAX_ERROR_RATE (or Slo())"


def test_the_scan_finds_every_way_a_default_was_spelled():
    source = (
        "MAX_ERROR_RATE = 0.01\n"
        "_SLO_MS = 500.0\n"
        "class S:\n    p99_ms: float = 500.0\n    max_error_rate: float = 0.01\n"
        "    p99_latency_ms: float = Field(500.0, gt=0)\n"
        "def f(p99_ms, threshold_ms: float = 500.0, *, slo_latency_ms=500): ...\n"
        "x = dict(p99_ms=500.0)\n"
        "y = g(p99_ms=float(slo.get('p99_ms') or 500.0), max_error_rate=float(slo.get('r') or 0.01))\n"
        # not the SLO: a status code, a sleep, a significance level, a message cut, histogram bounds
        "if status >= 500: pass\ntime.sleep(0.01)\nalpha = 0.01\ntext = message[:500]\nLATENCY_BOUNDS_MS = (250, 500, 1000)\n"
    )
    assert [line.split(": ", 1)[1] for line in spelled_defaults(source)] == [
        "MAX_ERROR_RATE = 0.01", "_SLO_MS = 500.0", "p99_ms = 500.0", "max_error_rate = 0.01",
        "p99_latency_ms = 500.0", "threshold_ms = 500.0", "slo_latency_ms = 500", "p99_ms = 500.0",
        "p99_ms = 500.0", "max_error_rate = 0.01",
    ]


def test_the_defaults_and_what_meeting_the_slo_means():
    import harness.slo

    assert (DEFAULT_P99_MS, DEFAULT_MAX_ERROR_RATE) == (500.0, 0.01)
    assert Slo() == Slo(DEFAULT_P99_MS, DEFAULT_MAX_ERROR_RATE)
    assert Slo().describe() == "p99 <= 500 ms, errors <= 1%"
    assert Slo(250.0, 0.005).describe() == "p99 <= 250 ms, errors <= 0.50%"
    doc = harness.slo.__doc__ or ""
    assert "Definitions" in doc and "request meets the SLO" in doc and "run meets the SLO" in doc


@pytest.mark.parametrize("field, values, shown", [
    ("p99_ms", {"p99_ms": 0}, "p99_ms=0:"),
    ("p99_ms", {"p99_ms": -5.0}, "p99_ms=-5.0:"),
    ("p99_ms", {"p99_ms": math.inf}, "p99_ms=inf:"),
    ("p99_ms", {"p99_ms": "500"}, "p99_ms='500':"),
    ("p99_ms", {"p99_ms": True}, "p99_ms=True:"),
    ("max_error_rate", {"max_error_rate": 1.5}, "max_error_rate=1.5:"),
    ("max_error_rate", {"max_error_rate": -0.01}, "max_error_rate=-0.01:"),
    ("max_error_rate", {"max_error_rate": math.nan}, "max_error_rate=nan:"),
])
def test_a_bad_slo_is_one_config_error_naming_the_field_and_value(field, values, shown):
    with pytest.raises(ConfigError) as caught:
        Slo(**values)
    assert caught.value.field == field and str(caught.value).startswith(shown)
    assert "\n" not in str(caught.value) and caught.value.exit_code == 2


def test_a_saved_slo_reads_back_with_defaults_for_what_it_lacks():
    assert Slo.from_mapping({"p99_ms": 200.0, "max_error_rate": 0.05}) == Slo(200.0, 0.05)
    assert Slo.from_mapping({"p99_ms": None}) == Slo.from_mapping(None) == Slo()
    assert Slo.from_mapping(Slo(300.0, 0.02).to_dict()) == Slo(300.0, 0.02)
    with pytest.raises(ConfigError, match="max_error_rate=2"):
        Slo.from_mapping({"max_error_rate": 2})


def test_every_experiment_file_defaults_its_latency_slo_to_the_slo_module():
    """A plain ``chaos run`` of a shipped experiment (no harness setting the variable) judges by the same bound."""
    defaults = {}
    for path in sorted((ROOT / "experiments").rglob("*.json")):
        setting = json.loads(path.read_text(encoding="utf-8")).get("configuration", {}).get("slo_latency_ms")
        if isinstance(setting, dict) and "default" in setting:
            defaults[path.relative_to(ROOT).as_posix()] = float(setting["default"])
    assert defaults, "the experiments declare their latency SLO"
    assert {name: value for name, value in defaults.items() if value != DEFAULT_P99_MS} == {}
