"""The import graph of `harness` runs one way: down the layers, never up.

Layers, bottom to top (a module may import its own layer's modules only as `PEERS` allows, and any
module of a layer below it):

0. **ground floor**: ``config`` and what it and everyone else stand on: ``errors``, ``paths``,
   ``userfiles``, ``atomicfile`` and ``jsonfile`` (atomic file and strict JSON I/O), ``validation``
   (a model validated into one ConfigError), ``quantities``, ``modelnames``, ``faultparams``,
   ``request_records`` (the per-request and prober record types), ``gpu``, ``environment`` (the
   fingerprint), ``policies``, ``extras``, ``slo`` (the SLO and its defaults) and the package itself
   (``__version__``); ``processes`` (the one spawner), ``signals`` (the one home of signal handlers)
   and ``cpus`` (the one CPU-splitting rule). Its modules may import one another, except
   ``config``: it stands on the rest, so none of them imports it.
1. **service, platforms**: the reference service, the reference generative service (``llmservice``, which
   stands on ``service``'s weights, metrics and fault hooks), the platforms that deploy it, and ``preflight``
   (is this machine fit to run them). ``platforms`` may import ``service`` (it runs the service's
   command and reads its options); ``service`` and ``preflight`` import no peer.
2. **load, chaos, measure, sweep**: the building blocks of a workflow. ``measure`` (pure
   computation over records) imports no peer; ``load`` may import ``measure``; ``chaos`` and
   ``sweep`` may import ``load`` and ``measure``, never each other.
3. **results**: the run record (``run.json``): its schema, save and load.
4. **report, workflows**: ``report`` rebuilds reports from saved runs; ``workflows`` is the one
   home of each workflow (it composes the layers below and writes run records). Neither imports
   the other.
5. **job, scenarios, bench**: the main job, the pytest scenario library and the benchmarks compose
   workflows and reports. The scenarios may import ``job`` (the main job's profiles); ``job`` and
   ``bench`` import no peer.
6. **entry points**: ``cli``, ``pytest_plugin`` and ``__main__`` parse options once and call down;
   ``__main__`` imports ``cli``.

What counts as an import: every ``import`` and ``from ... import`` in a module, at module level or
inside a function (a lazy import is still a dependency), and every module a child process is
started with (``python_argv("harness.x")``, ``[python, "-m", "harness.x"]``). Not counted: imports
under ``if TYPE_CHECKING:`` (annotations only, never run) and under ``if __name__ == "__main__":``
(that code is an entry point of its own, e.g. ``python -m harness.bench.fuzz`` calling the CLI).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "harness"

LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("ground floor", frozenset({
        "harness", "config", "errors", "paths", "userfiles", "atomicfile", "jsonfile", "modelnames", "faultparams",
        "validation", "quantities", "request_records", "gpu", "environment", "policies", "extras", "slo",
        "processes", "signals", "cpus", "targetspec", "protocolspec", "promptspec",
    })),
    ("service, platforms", frozenset({"service", "llmservice", "platforms", "preflight"})),
    ("load, chaos, measure, sweep", frozenset({"measure", "load", "chaos", "sweep"})),
    ("results", frozenset({"results"})),
    ("report, workflows", frozenset({"report", "workflows"})),
    ("job, scenarios, bench", frozenset({"job", "scenarios", "bench"})),
    ("entry points", frozenset({"cli", "pytest_plugin", "__main__"})),
)

# Imports allowed between two units of one layer (importer -> what it may import). The ground floor
# is handled by its own rule (see the module docstring).
PEERS: dict[str, frozenset[str]] = {
    "platforms": frozenset({"service"}),
    "llmservice": frozenset({"service"}),
    "load": frozenset({"measure"}),
    "chaos": frozenset({"load", "measure"}),
    "sweep": frozenset({"load", "measure"}),
    "scenarios": frozenset({"job"}),
    "__main__": frozenset({"cli"}),
}
GROUND_TOP = "config"


@dataclass(frozen=True)
class Edge:
    source: Path
    line: int
    importer: str  # dotted module names
    imported: str

    def where(self) -> str:
        return f"{self.source.name}:{self.line}" if PACKAGE not in self.source.parents else \
            f"{self.source.relative_to(PACKAGE.parent)}:{self.line}"


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def unit(module: str) -> str:
    """Return the layer unit of a dotted module name: its top-level module or package under harness."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "harness"


def _skipped_blocks(tree: ast.AST) -> set[int]:
    """Ids of the nodes under ``if TYPE_CHECKING:`` and ``if __name__ == "__main__":``."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.If):
            continue
        test = ast.unparse(node.test)
        if "TYPE_CHECKING" in test or test.replace("'", '"') == '__name__ == "__main__"':
            for child in node.body:
                skipped.update(id(n) for n in ast.walk(child))
    return skipped


def _child_modules(node: ast.AST) -> list[str]:
    """Modules a child process is started with: ``python_argv("harness.x")`` or ``[..., "-m", "harness.x"]``."""
    if isinstance(node, ast.Call):
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
        first = node.args[0] if node.args else None
        if name == "python_argv" and isinstance(first, ast.Constant) and isinstance(first.value, str):
            return [first.value]
    if isinstance(node, (ast.List, ast.Tuple)):
        values = [e.value if isinstance(e, ast.Constant) else None for e in node.elts]
        return [values[i + 1] for i, value in enumerate(values[:-1])
                if value == "-m" and isinstance(values[i + 1], str)]
    return []


def imports(path: Path, root: Path = PACKAGE) -> list[Edge]:
    """Return every harness module ``path`` imports or starts as a child process (see the module docstring)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    importer = module_name(path, root)
    package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
    skipped = _skipped_blocks(tree)
    edges = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # ``from harness.chaos import activities`` imports harness.chaos.activities
            targets = [_resolve(module, alias.name, root) for alias in node.names]
        else:
            targets = _child_modules(node)
        edges += [Edge(path, node.lineno, importer, t) for t in targets if t == "harness" or t.startswith("harness.")]
    return sorted(edges, key=lambda edge: edge.line)


def _resolve(module: str, name: str, root: Path) -> str:
    """``from module import name``: the submodule ``module.name`` where there is one, else ``module``."""
    candidate = root.parent / Path(*f"{module}.{name}".split("."))
    return f"{module}.{name}" if candidate.with_suffix(".py").is_file() or (candidate / "__init__.py").is_file() else module


def _layer_of() -> dict[str, int]:
    return {name: index for index, (_, units) in enumerate(LAYERS) for name in units}


def all_edges() -> list[Edge]:
    return [edge for path in sorted(PACKAGE.rglob("*.py")) for edge in imports(path)]


def violations(edges: list[Edge]) -> list[str]:
    """Return one line per import that points up the layers or to a peer the rules do not allow."""
    layer = _layer_of()
    found = []
    for edge in edges:
        source, target = unit(edge.importer), unit(edge.imported)
        if source == target:
            continue
        mine, theirs = layer.get(source), layer.get(target)
        what = f"{edge.where()}: {edge.importer} imports {edge.imported}"
        if mine is None or theirs is None:
            found.append(f"{what}: {source if mine is None else target} has no layer (LAYERS)")
            continue
        if theirs > mine:
            found.append(f"{what}: up from {LAYERS[mine][0]} to {LAYERS[theirs][0]}")
        elif theirs == mine and source != target:
            if mine == 0:
                if target == GROUND_TOP:
                    found.append(f"{what}: {GROUND_TOP} stands on the rest of the ground floor, not under it")
            elif target not in PEERS.get(source, frozenset()):
                found.append(f"{what}: {source} may not import its peer {target} ({LAYERS[mine][0]})")
    return found


def test_every_module_has_a_layer():
    layer = _layer_of()
    units = {unit(module_name(path)) for path in PACKAGE.rglob("*.py")}
    assert sorted(units - set(layer)) == [], "place these in LAYERS (tests/test_layers.py)"


def test_every_unit_named_in_the_layers_exists():
    units = {unit(module_name(path)) for path in PACKAGE.rglob("*.py")}
    named = {name for _, names in LAYERS for name in names}
    assert sorted(named - units) == []
    assert all(source in units and set(targets) <= units for source, targets in PEERS.items())


def test_no_import_points_up_the_layers():
    assert violations(all_edges()) == []


def test_the_graph_sees_function_level_imports_child_modules_and_skips_type_checking(tmp_path):
    root = tmp_path / "harness"
    module = root / "measure" / "probe.py"
    module.parent.mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "measure" / "__init__.py").write_text("")
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from harness.report import writer\n"
        "def f():\n    from harness.results import save_run\n"
        "    return python_argv('harness.cli', '-v'), ['python', '-m', 'harness.job']\n"
        "from ..chaos import loadgen\n"
        "if __name__ == '__main__':\n    from harness.cli import main\n"
    )
    found = violations(imports(module, root))
    assert [line.split(": ", 1)[1] for line in found] == [
        "harness.measure.probe imports harness.results: up from load, chaos, measure, sweep to results",
        "harness.measure.probe imports harness.cli: up from load, chaos, measure, sweep to entry points",
        "harness.measure.probe imports harness.job: up from load, chaos, measure, sweep to job, scenarios, bench",
        "harness.measure.probe imports harness.chaos: measure may not import its peer chaos (load, chaos, measure, sweep)",
    ]


@pytest.mark.parametrize("name", ["config", "results", "cli"])
def test_a_layer_unit_is_its_top_level_module(name):
    assert unit(f"harness.{name}") == name and unit(f"harness.{name}.inner") == name
