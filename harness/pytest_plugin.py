"""The harness's pytest plugin: options, markers, fixtures, the report.

Loaded wherever the package is installed (its ``pytest11`` entry point, named after this module, so
the root conftest.py's ``pytest_plugins`` and ``-p harness.pytest_plugin`` find it registered).

A thin shell over the plain classes of `harness.scenarios.session`, `harness.scenarios.chaos` and
`harness.scenarios.perf`, as pytest-benchmark's plugin is over its session: options are read and
validated once here (a bad value is a usage error naming the option), fixtures hand the classes
out, and the session's end writes the report. Nothing is measured, and no run directory is made,
unless a test asks for a harness fixture (or ``--harness-report-dir`` is given), so the harness's
own test suite runs with the plugin loaded and writes nothing.

Options: ``--harness-preset smoke|nightly`` (the size of the run; ``--harness-profile``, its former
name, still works), ``--harness-platform local|kubernetes``,
``--harness-report-dir DIR`` (the run directory; default ``reports/<run-id>``),
``--harness-baseline DIR`` (a saved run; compared, shown in the report, regressions fail the
performance scenario), ``--harness-tier NAME`` (the SLA tier every scenario must meet; default each
topology's own), ``--harness-replay DIR`` (judge the parts of a saved run instead of measuring),
``--harness-experiments DIR``, ``--harness-spec FILE`` (a team's own server, as ``harness run --spec``:
deployed and loaded in its protocol, faulted with the main job's cells against it, the LLM profile for an
OpenAI-compatible one; the sweep and capacity scenarios skipped with the job's reason).

Markers: ``chaos``, ``perf``, ``capacity`` (scenario kinds); ``gpu`` (skipped without CUDA) and
``kubernetes`` (skipped without a reachable cluster), each skip with its reason. With
``--harness-platform kubernetes`` every chaos/perf/capacity test needs the cluster too.

Fixtures: ``harness_options``, ``harness_run`` (the `ScenarioSession`: run record and directory),
``run_dir``, ``deploy_service`` (a factory; deployments torn down after the test), ``load``,
``chaos``, ``perf`` (the sweep, once per session), ``capacity`` (once per session), ``baseline``
(skips without one) and ``fault_case`` (parametrized with the preset's fault x topology cells;
cells that miss their tier by construction are strict xfails, see `harness.scenarios.chaos`).

A scenario raising `harness.scenarios.session.NotApplicable` is skipped with its reason. Progress is logged
on the ``harness.scenarios`` logger: ``--log-cli-level=INFO`` shows it live.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from harness.errors import HarnessError
from harness.paths import resolve_path
from harness.scenarios.session import PLATFORMS, PRESETS, NotApplicable, ScenarioOptions, ScenarioSession, validate_options

MARKERS = {
    "chaos": "a chaos scenario (fault injected under load, judged against an SLA tier)",
    "perf": "a performance scenario (load, sweep, baseline comparison)",
    "capacity": "a capacity scenario (replica plan and its check)",
    "gpu": "needs a CUDA GPU (skipped without one)",
    "kubernetes": "needs a configured Kubernetes cluster (skipped without one)",
}
SCENARIO_MARKERS = ("chaos", "perf", "capacity")
# per-test time bounds (pytest-timeout) of scenarios without their own: a chaos cell, the sweep, the capacity
# check, each with room over the main job's budgets (harness.job.presets) for a machine shared with other work
SCENARIO_TIMEOUTS_S = {
    "smoke": {"chaos": 300, "perf": 600, "capacity": 600},
    "nightly": {"chaos": 2400, "perf": 7200, "capacity": 1800},
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "chaos and performance harness")
    group.addoption("--harness-preset", "--harness-profile", dest="harness_preset", choices=PRESETS, default="smoke",
                    help="the size of the run: smoke | nightly (default smoke); --harness-profile is its former name")
    group.addoption("--harness-platform", choices=PLATFORMS, default="local", help="platform (default local)")
    group.addoption("--harness-report-dir", default=None, help="the run directory: run data and the report (default reports/<run-id>)")
    group.addoption("--harness-baseline", default=None, help="a saved run to compare against")
    group.addoption("--harness-tier", default=None, help="the SLA tier scenarios must meet (default: each topology's own)")
    group.addoption("--harness-replay", default=None, help="judge the parts of this saved run instead of measuring live")
    group.addoption("--harness-experiments", default=None, help="directory of experiment files (default experiments/)")
    group.addoption("--harness-spec", default=None, help="a team's own server's spec (a command or endpoint target): "
                    "deployed, loaded in its protocol and faulted as `harness run --spec` does (an OpenAI-compatible "
                    "one: the LLM profile); the sweep and capacity scenarios are skipped, saying why")


class _PluginState:
    """What the plugin keeps for one pytest session: options, the lazily started run, test outcomes."""

    def __init__(self, config: pytest.Config, options: ScenarioOptions) -> None:
        self.config = config
        self.options = options
        self.run: ScenarioSession | None = None
        self.outcomes: dict[str, tuple[str, float, str]] = {}
        self.report: dict[str, Path] | None = None
        self.report_error: str | None = None
        self._reasons: dict[str, str | None] = {}

    def start(self) -> ScenarioSession:
        if self.run is None:
            self.run = ScenarioSession(self.options, command=["pytest", *self.config.invocation_params.args])
        return self.run

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Keep each test's outcome (setup, call and teardown folded into one) for run.json."""
        previous = self.outcomes.get(report.nodeid, ("passed", 0.0, ""))
        message = str(report.longrepr)[-500:] if report.failed or report.skipped else ""
        if hasattr(report, "wasxfail"):
            outcome = "xfailed" if report.skipped else "xpassed"
        elif report.failed:
            outcome = "failed" if report.when == "call" else "error"
        else:
            outcome = "skipped" if report.skipped else previous[0]
        self.outcomes[report.nodeid] = (outcome, previous[1] + report.duration, message or previous[2])

    def unavailable(self, marker: str) -> str | None:
        """Return why tests with ``marker`` (gpu, kubernetes) cannot run here; asked once per session."""
        from harness.scenarios.session import cluster_unavailable_reason, cuda_unavailable_reason

        if marker not in self._reasons:
            self._reasons[marker] = cuda_unavailable_reason() if marker == "gpu" else cluster_unavailable_reason()
        return self._reasons[marker]


_STATE = pytest.StashKey[_PluginState]()


def _state(config: pytest.Config) -> _PluginState:
    return config.stash[_STATE]


def pytest_configure(config: pytest.Config) -> None:
    known = {line.split(":", 1)[0].strip() for line in config.getini("markers")}
    for name, text in MARKERS.items():
        if name not in known:
            config.addinivalue_line("markers", f"{name}: {text}")
    try:
        paths = {name: _path_option(config, name) for name in ("report_dir", "baseline", "replay", "experiments", "spec")}
        options = validate_options(
            preset=config.getoption("harness_preset"), platform=config.getoption("harness_platform"),
            report_dir=paths["report_dir"], baseline=paths["baseline"], tier=config.getoption("harness_tier"),
            replay=paths["replay"], experiments_dir=paths["experiments"], spec=paths["spec"],
        )
    except HarnessError as exc:
        raise pytest.UsageError(str(exc)) from None
    state = _PluginState(config, options)
    config.stash[_STATE] = state
    config.pluginmanager.register(state, "harness-scenario-state")


def _path_option(config: pytest.Config, name: str) -> Path | None:
    """Return option ``--harness-<name>`` resolved against the directory pytest was started in (None if not given)."""
    value = config.getoption(f"harness_{name}")
    return None if value is None else resolve_path(value, f"--harness-{name.replace('_', '-')}")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "fault_case" not in metafunc.fixturenames:
        return
    from harness.scenarios.chaos import SlaNotMet, resilience_cases

    options = _state(metafunc.config).options
    params = []
    for case in resilience_cases(options.preset, options.experiments_dir, options.platform, spec=options.spec):
        marks = [pytest.mark.xfail(strict=True, raises=SlaNotMet, reason=case.expected_miss)] if case.expected_miss else []
        params.append(pytest.param(case, id=case.id, marks=marks))
    metafunc.parametrize("fault_case", params)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    state = _state(config)
    timeouts = SCENARIO_TIMEOUTS_S[state.options.preset] if config.pluginmanager.hasplugin("timeout") else {}
    for item in items:
        uses_harness = "harness_run" in getattr(item, "fixturenames", ())
        kind = next((m for m in SCENARIO_MARKERS if item.get_closest_marker(m)), None) if uses_harness else None
        if kind in timeouts and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(timeouts[kind]))
        needs = [m for m in ("gpu", "kubernetes") if item.get_closest_marker(m)]
        if state.options.platform == "kubernetes" and kind is not None:
            needs.append("kubernetes")
        for marker in dict.fromkeys(needs):
            reason = state.unavailable(marker)
            if reason is not None:
                item.add_marker(pytest.mark.skip(reason=f"{marker}: {reason}"))
                break


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Iterator[Any]:
    try:
        return (yield)
    except NotApplicable as exc:
        pytest.skip(str(exc))


# ----- fixtures ----------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def harness_options(pytestconfig: pytest.Config) -> ScenarioOptions:
    """The validated harness options of this pytest session."""
    return _state(pytestconfig).options


@pytest.fixture(scope="session")
def harness_run(pytestconfig: pytest.Config, record_testsuite_property: Any) -> ScenarioSession:
    """The session's run (record and directory); started by the first test that needs it."""
    run = _state(pytestconfig).start()
    record_testsuite_property("harness_run_dir", str(run.run_dir))
    record_testsuite_property("harness_report", str(run.run_dir / "report.html"))
    return run


@pytest.fixture(scope="session")
def run_dir(harness_run: ScenarioSession) -> Path:
    """The run directory every part of this session is written under."""
    return harness_run.run_dir


@pytest.fixture
def deploy_service(harness_run: ScenarioSession) -> Iterator[Any]:
    """A factory: ``deploy_service(topology=None, spec=None)`` returns a Ready deployment (default: --harness-spec in
    its own topology, else the reference service on one replica), torn down after the test."""
    from harness.scenarios.perf import DeploymentFactory

    factory = DeploymentFactory(harness_run)
    try:
        yield factory
    finally:
        errors = factory.close()
    if errors:
        pytest.fail("deployments not torn down cleanly:\n" + "\n".join(errors))


@pytest.fixture
def load(harness_run: ScenarioSession) -> Any:
    """``load.run(deployment, kind=None, duration_s=None, users=None, tier=None)`` -> `LoadOutcome`."""
    from harness.scenarios.perf import LoadScenarios

    return LoadScenarios(harness_run)


@pytest.fixture
def chaos(harness_run: ScenarioSession) -> Any:
    """``chaos.prepare(experiment, topology=..., tier=None).inject()`` -> `ChaosOutcome`."""
    from harness.scenarios.chaos import ChaosScenarios, write_matrix

    harness_run.before_report(write_matrix)
    return ChaosScenarios(harness_run)


@pytest.fixture(scope="session")
def perf(harness_run: ScenarioSession) -> Any:
    """``perf.sweep()`` -> `SweepResult` (measured on first use, shared by the session's tests)."""
    from harness.scenarios.perf import PerfScenario

    return PerfScenario(harness_run)


@pytest.fixture(scope="session")
def capacity(harness_run: ScenarioSession) -> Any:
    """``capacity.plan_and_check()`` -> `CapacityResult` (measured on first use, shared by the session's tests)."""
    from harness.scenarios.perf import CapacityScenario

    return CapacityScenario(harness_run)


@pytest.fixture(scope="session")
def baseline(harness_options: ScenarioOptions) -> Path:
    """The baseline run directory (``--harness-baseline``); the test is skipped without one."""
    if harness_options.baseline is None:
        pytest.skip("no --harness-baseline given: nothing to compare against")
    return harness_options.baseline


# ----- the end of the session: the report ------------------------------------------------------------

def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = _state(session.config)
    if state.run is None and state.options.report_dir is None:
        return  # no harness fixture was used: nothing to report
    try:
        run = state.start()
        for nodeid, (outcome, duration_s, message) in state.outcomes.items():
            run.note_test(nodeid, outcome, duration_s, message)
        if exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            state.report = run.finish("completed")
        else:
            status = "aborted" if exitstatus == pytest.ExitCode.INTERRUPTED else "failed"
            state.report = run.finish(status, reason=f"pytest exit status {int(exitstatus)}")
    except HarnessError as exc:  # the tests' own verdicts stand; a missing report is an error of its own
        state.report_error = f"{type(exc).__name__}: {exc}"
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = _state(config)
    if state.report is None and state.report_error is None:
        return
    terminalreporter.write_sep("-", "harness report")
    if state.report_error is not None:
        terminalreporter.write_line(f"the report could not be written: {state.report_error}", red=True)
        return
    comparisons = state.run.comparisons if state.run is not None else {}
    regressions = sum(len(c.regressions) for c in comparisons.values())
    if state.options.baseline is not None:
        terminalreporter.write_line(f"baseline: {state.options.baseline} ({regressions} regression(s) in the compared parts)")
    from harness.jsonfile import read_json

    verdict = str(read_json(state.report["summary"]).get("verdict") or "")
    terminalreporter.write_line(f"verdict: {verdict[:300]}{'...' if len(verdict) > 300 else ''}")
    terminalreporter.write_line(f"run directory: {state.run.run_dir if state.run else ''}")
    terminalreporter.write_line(f"report: {state.report['html']}")
