"""The scenario session: options read once, one run directory, its parts, the report at the end.

Plain classes that the pytest plugin (`harness.pytest_plugin`) hands to scenario tests, testable
without pytest (nothing here imports it). A session owns one run directory, ``reports/<run-id>/``
by default: ``run.json`` (kind ``run``, the environment fingerprint, the test outcomes) and one
sub-directory per part a scenario produced, in the main job's layout (``load``, ``chaos/<fault>/
<topology>``, ``sweep``, ``capacity``), each with its own ``run.json``. `ScenarioSession.finish` compares
the run with the baseline (when one was given) and writes ``report.html``, ``report.md`` and
``summary.json`` with `harness.report.writer.write_report`, the one rendering path.

Replaying: with ``replay`` set to a saved run directory, scenarios judge the parts saved there
(copied into the new run) instead of measuring live; a part that the saved run lacks cannot be
judged (`NotApplicable`). This re-judges last night's data against another tier, or rebuilds its
report, in seconds.

Expectations raise `ScenarioFailed` (an AssertionError) whose message lists EVERY finding, so a
failed scenario shows all its SLA violations at once, not the first.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from harness.errors import ConfigError, UsageError
from harness.results import RUN_FILE, RunRecord, new_part_record, new_run_id, new_run_record, save_run

__all__ = [
    "PRESETS",
    "PLATFORMS",
    "REPORTS_ROOT",
    "ScenarioFailed",
    "NotApplicable",
    "Inconclusive",
    "expect_none",
    "ScenarioOptions",
    "validate_options",
    "Comparison",
    "ScenarioSession",
    "cuda_unavailable_reason",
    "cluster_unavailable_reason",
]

PRESETS = ("smoke", "nightly")
PLATFORMS = ("local", "kubernetes")
REPORTS_ROOT = Path("reports")
OUTCOMES = ("passed", "failed", "skipped", "xfailed", "xpassed", "error")

log = logging.getLogger("harness.scenarios")


class ScenarioFailed(AssertionError):
    """An expectation of a scenario did not hold; the message lists every finding."""

    def __init__(self, title: str, findings: Iterable[str]) -> None:
        self.title = title
        self.findings = [str(f) for f in findings]
        super().__init__(f"{title} ({len(self.findings)}):\n" + "\n".join(f"  - {f}" for f in self.findings))


class NotApplicable(Exception):
    """The scenario cannot be judged here (platform missing, part not in the replayed run); the reason says why."""


class Inconclusive(NotApplicable):
    """The data cannot support a verdict either way (`harness.measure.sla`'s "inconclusive"): the test is
    skipped with every reason, neither passed nor failed, and the report shows it as inconclusive."""

    def __init__(self, title: str, reasons: Iterable[str]) -> None:
        self.title = title
        self.reasons = [str(r) for r in reasons]
        super().__init__(f"inconclusive: {title}: " + "; ".join(self.reasons))


def expect_none(findings: Iterable[str], title: str, error: type[ScenarioFailed] = ScenarioFailed) -> None:
    """Return when ``findings`` is empty; raise ``error`` listing every finding otherwise."""
    found = [str(f) for f in findings]
    if found:
        raise error(title, found)


@dataclass(frozen=True)
class ScenarioOptions:
    """What a scenario session runs: preset, platform, where to write, what to compare with, which tier."""

    preset: str = "smoke"
    platform: str = "local"
    report_dir: Path | None = None  # the run directory itself; default REPORTS_ROOT/<run-id>
    baseline: Path | None = None
    tier: str | None = None  # default: each topology's own tier
    replay: Path | None = None
    experiments_dir: Path | None = None  # default: experiments/ here, else the one shipped with the harness
    reports_root: Path = REPORTS_ROOT
    spec: Path | None = None  # a team's own server (--harness-spec): deployed, loaded and faulted as the main job does

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}


def _directory(flag: str, value: str | Path | None) -> Path | None:
    if value is None or value == "":
        return None
    path = Path(value)
    if not path.is_dir():
        raise UsageError(f"{flag}={str(value)!r}: not a directory")
    return path


def validate_options(
    *,
    preset: str = "smoke",
    platform: str = "local",
    report_dir: str | Path | None = None,
    baseline: str | Path | None = None,
    tier: str | None = None,
    replay: str | Path | None = None,
    experiments_dir: str | Path | None = None,
    reports_root: str | Path = REPORTS_ROOT,
    spec: str | Path | None = None,
) -> ScenarioOptions:
    """Return the validated options; raise ConfigError/UsageError naming the option and its value."""
    from harness.measure.sla_config import SlaConfig

    if preset not in PRESETS:
        raise ConfigError("--harness-preset", preset, f"choose one of {', '.join(PRESETS)}")
    if platform not in PLATFORMS:
        raise ConfigError("--harness-platform", platform, f"choose one of {', '.join(PLATFORMS)}")
    if tier is not None and tier not in SlaConfig().tier_names:
        raise ConfigError("--harness-tier", tier, f"unknown tier; choose one of {', '.join(SlaConfig().tier_names)}")
    report = Path(report_dir) if report_dir else None
    if report is not None and report.exists() and not report.is_dir():
        raise UsageError(f"--harness-report-dir={str(report_dir)!r}: exists and is not a directory")
    if report is not None and (report / RUN_FILE).exists():
        raise UsageError(f"--harness-report-dir={str(report_dir)!r}: already holds a run (run.json); "
                         "name a new or empty directory so two runs never mix in one report")
    return ScenarioOptions(
        preset=preset, platform=platform, report_dir=report, baseline=_directory("--harness-baseline", baseline),
        tier=tier, replay=_directory("--harness-replay", replay), experiments_dir=_directory("--harness-experiments", experiments_dir),
        reports_root=Path(reports_root), spec=_spec_file(spec),
    )


def _spec_file(value: str | Path | None) -> Path | None:
    """Return ``--harness-spec`` as a path once it names a valid spec file; raise ConfigError naming what is wrong."""
    if value is None or value == "":
        return None
    from harness.config import load_spec

    try:
        load_spec(value)  # ConfigError naming the bad field and the file
    except ConfigError as exc:
        if exc.field != "spec":
            raise
        raise ConfigError("--harness-spec", str(value), exc.reason) from None  # the file itself: named as the option
    return Path(value)


@dataclass
class Comparison:
    """A baseline comparison (`harness.report.compare.compare_runs`): rows, regressions, warnings."""

    data: dict[str, Any]

    @property
    def rows(self) -> list[dict[str, Any]]:
        return list(self.data.get("rows") or [])

    @property
    def regressions(self) -> list[str]:
        return list(self.data.get("regressions") or [])

    @property
    def warnings(self) -> list[str]:
        return list(self.data.get("warnings") or [])

    def expect_no_regression(self) -> None:
        """Raise ScenarioFailed listing every regression beyond noise (or why nothing could be compared)."""
        if not self.rows:
            raise ScenarioFailed(f"nothing compared against the baseline {self.data.get('baseline')}", self.warnings)
        expect_none(self.regressions, f"regressions beyond run-to-run noise against the baseline {self.data.get('baseline')}")


@dataclass
class _TestOutcome:
    nodeid: str
    outcome: str
    duration_s: float
    message: str = ""


@dataclass
class ScenarioSession:
    """One run directory and its record; parts are added by scenarios, the report written by `finish`."""

    options: ScenarioOptions
    command: list[str] | None = None
    inspect_torch: bool = True
    run_dir: Path = field(init=False)
    record: RunRecord = field(init=False)
    comparisons: dict[str, Comparison] = field(init=False, default_factory=dict)
    tests: list[_TestOutcome] = field(init=False, default_factory=list)
    _before_report: list[Callable[["ScenarioSession"], Any]] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        run_id = new_run_id()
        self.run_dir = (self.options.report_dir or self.options.reports_root / run_id).resolve()
        self.record = new_run_record(
            "run", command=self.command, inspect_torch=self.inspect_torch, run_id=run_id,
            preset=self.options.preset, platform=self.options.platform, config={"scenario": self.options.to_dict()},
        )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.save()
        log.info("harness run %s writing to %s", run_id, self.run_dir)

    @property
    def replaying(self) -> bool:
        return self.options.replay is not None

    def save(self) -> Path:
        """Write run.json now (it is rewritten as parts are added); return its path."""
        return save_run(self.run_dir, self.record)

    def part_dir(self, relative: str, *, unique: bool = True) -> Path:
        """Return the directory ``relative`` (e.g. ``chaos/pod-kill/single``) registered as a part of the run.

        With ``unique`` a taken name gets ``-2``, ``-3``...; otherwise an existing directory is reused.
        The layout is the main job's (``load``, ``chaos/<fault>/<topology>``, ``sweep``, ``capacity``),
        so a `harness run` output and a scenario run are each other's baselines. When replaying, the
        saved part of the same path is copied in first; NotApplicable when the replayed run lacks it.
        """
        name, index = relative, 1
        while unique and (self.run_dir / name).exists():
            index += 1
            name = f"{relative}-{index}"
        path = self.run_dir / name
        if self.replaying:
            source = self.options.replay / relative
            if not source.is_dir():
                raise NotApplicable(f"the replayed run {self.options.replay} has no part {relative!r}")
            shutil.copytree(source, path, dirs_exist_ok=True)
        else:
            path.mkdir(parents=True, exist_ok=True)
        self.record.parts = {**self.record.parts, name: name}
        self.save()
        return path

    def save_part(self, path: Path, kind: str, *, summary: Mapping[str, Any], status: str = "completed",
                  reason: str | None = None, config: Mapping[str, Any] | None = None, topology: str | None = None) -> None:
        """Write the part's own run.json (the session's environment, its kind and summary)."""
        if self.replaying and (path / RUN_FILE).exists():
            return  # the replayed part keeps the record it was measured with
        name = (path.relative_to(self.run_dir).as_posix() if path.is_relative_to(self.run_dir) else path.name).replace("/", "-")
        record = new_part_record(self.record, kind, name, topology=topology, config=dict(config or {}), summary=dict(summary))
        record.finish(status, reason)
        save_run(path, record)

    def before_report(self, action: Callable[["ScenarioSession"], Any]) -> None:
        """Run ``action(session)`` once in `finish`, before the report is written (e.g. the chaos matrix table)."""
        if action not in self._before_report:
            self._before_report.append(action)

    def note_test(self, nodeid: str, outcome: str, duration_s: float, message: str = "") -> None:
        """Record one test's outcome (passed, failed, skipped, xfailed, xpassed, error) in run.json."""
        if outcome not in OUTCOMES:
            raise ConfigError("outcome", outcome, f"choose one of {', '.join(OUTCOMES)}")
        self.tests.append(_TestOutcome(nodeid, outcome, round(duration_s, 3), message[:500]))

    def compare_part(self, path: Path) -> Comparison:
        """Compare part ``path`` with the baseline's part of the same relative path, else the whole baseline.

        The second case lets a standalone saved run (``harness sweep --out DIR``) be the baseline of
        the matching scenario part. Raises NotApplicable without a baseline.
        """
        from harness.report.compare import compare_runs

        if self.options.baseline is None:
            raise NotApplicable("no baseline given (--harness-baseline): nothing to compare against")
        relative = path.resolve().relative_to(self.run_dir).as_posix()
        counterpart = self.options.baseline / relative
        baseline = counterpart if counterpart.is_dir() else self.options.baseline
        data = compare_runs(path, baseline)
        # metrics of the part itself are named "." by compare_runs: name them by the part instead
        label = re.compile(r"(?<![\w.])\.:")
        data["rows"] = [{**row, "metric": label.sub(f"{relative}:", row["metric"])} for row in data["rows"]]
        data["regressions"] = [label.sub(f"{relative}:", text) for text in data["regressions"]]
        comparison = Comparison(data)
        self.comparisons[relative] = comparison
        return comparison

    def _session_comparison(self) -> dict[str, Any] | None:
        from harness.report.compare import compare_runs

        if self.options.baseline is None:
            return None
        whole = compare_runs(self.run_dir, self.options.baseline)
        if whole["rows"] or not self.comparisons:
            return whole
        # the baseline is a standalone part (a sweep directory): show what the scenarios compared
        merged: dict[str, Any] = {"baseline": str(self.options.baseline), "current": str(self.run_dir),
                                  "rows": [], "regressions": [], "warnings": []}
        for comparison in self.comparisons.values():
            merged["rows"] += comparison.rows
            merged["regressions"] += comparison.regressions
            merged["warnings"] += [w for w in comparison.warnings if w not in merged["warnings"]]
        return merged

    def finish(self, status: str = "completed", reason: str | None = None) -> dict[str, Path]:
        """Close the record (completed, failed or aborted), compare with the baseline if any, write the
        report; return its paths. Raises HarnessError when the report cannot be written.
        """
        from harness.report.writer import write_report

        counts = {o: sum(1 for t in self.tests if t.outcome == o) for o in OUTCOMES}
        self.record.summary = {**self.record.summary, "tests": counts,
                               "outcomes": [t.__dict__ for t in self.tests]}
        self.record.finish(status, reason)
        self.save()
        for action in self._before_report:
            action(self)
        comparison = self._session_comparison()
        started = time.monotonic()
        paths = write_report(self.run_dir, comparison=comparison,
                             title=f"Scenario run {self.record.run_id} ({self.options.preset}, {self.options.platform})")
        self.record.add_artifact("report_html", paths["html"], self.run_dir)
        self.record.add_artifact("report_md", paths["markdown"], self.run_dir)
        self.record.add_artifact("summary", paths["summary"], self.run_dir)
        self.save()
        log.info("report written in %.1f s: %s", time.monotonic() - started, paths["html"])
        return dict(paths)



def cuda_unavailable_reason() -> str | None:
    """Return why CUDA cannot be used here (None when it can): no GPU seen by NVML, or torch without CUDA.

    NVML is asked first so that a machine without a GPU answers without importing torch.
    """
    from harness.environment import torch_info
    from harness.gpu import GpuError, query_gpus

    try:
        inventory = query_gpus()
    except GpuError as exc:
        return f"no usable CUDA GPU: {exc}"
    if not inventory.present:
        return f"no CUDA GPU: {inventory.reason}"
    info = torch_info()
    if not info.get("cuda_available"):
        detail = info.get("cuda_error") or f"torch {info.get('version')} built without CUDA {info.get('cuda_runtime') or ''}".rstrip()
        return f"a GPU is present but torch cannot use CUDA: {detail}"
    return None


def cluster_unavailable_reason(request_timeout_s: float = 5.0) -> str | None:
    """Return why no Kubernetes cluster can be used (None when the configured one answers)."""
    from harness.errors import HarnessError
    from harness.platforms.kubernetes import KubernetesClient

    try:
        client = KubernetesClient(request_timeout_s=request_timeout_s)
    except HarnessError as exc:
        return str(exc)
    try:
        client.api.configuration.retries = 0  # one try: a missing cluster must not stall collection
        client.server_version()
    except HarnessError as exc:
        return f"Kubernetes cluster configured but not reachable: {exc}"
    finally:
        client.close()
    return None
