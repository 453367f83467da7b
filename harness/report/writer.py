"""Report sections -> `report.html` (one self-contained file, charts embedded), `report.md`, `summary.json`.

This is the one rendering path: `harness report DIR` and the end of a live run both call
`write_report`, which reads only what is saved under DIR.
"""

from __future__ import annotations

import base64
import html
import math
import time
from pathlib import Path
from typing import Any, Mapping

from harness import __version__
from harness.errors import HarnessError
from harness.jsonfile import read_json, write_json
from harness.report.section import Section
from harness.report.sections import collect_sections
from harness.results import RUN_FILE, load_run

__all__ = ["write_report", "ReportPaths", "verdict_text"]

STYLE = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em;margin-bottom:.2em} h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
.verdict{padding:.8em 1em;border-radius:6px;margin:1em 0}.pass{background:#e8f5e9;border:1px solid #2e7d32}
.fail{background:#ffebee;border:1px solid #c62828} table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .55em;text-align:left} th{background:#f5f5f5}
td.good{background:#c8e6c9} td.bad{background:#ffcdd2} td.unsure{background:#fff3c4}
.verdict.unsure{background:#fff8e1;border:1px solid #f9a825} pre.definitions{white-space:pre-wrap;font-size:.85em;background:#fafafa;padding:.6em} figure{margin:1em 0} figure img{max-width:100%}
figcaption{font-size:.85em;color:#555} .env td:first-child{font-weight:600} .findings li{color:#b71c1c}
small{color:#666}
"""

_GOOD_WORDS = {"true", "yes", "pass", "passed", "met"}
_BAD_WORDS = {"false", "no", "fail", "failed", "not met", "none"}


class ReportPaths(dict):
    """{"html": Path, "markdown": Path, "summary": Path}"""


def _cell_class(column: str, value: Any) -> str:
    text = str(value).strip().lower()
    if column in ("tier_met", "met", "passed", "recovered", "behaviour_seen"):
        return "good" if text in _GOOD_WORDS else "bad"
    if column == "outcome":
        return {"met": "good", "inconclusive": "unsure"}.get(text, "bad")
    if column == "highest_tier_met":
        return "bad" if text in _BAD_WORDS or text in ("", "nan", "n/a") else "good"
    return ""


def _text(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else _plain(value)
    if value is None:
        return "n/a"
    return str(value)


EPOCH_AFTER_S = 1e8  # a seconds figure this large is a wall-clock time (1973 onwards), not a duration
_UNITS = (  # column-name endings -> how their numbers read (units as the frames and sections name them)
    (("_s", "(s)", " s"), "s"), (("_ms", "(ms)"), "ms"), (("_mb", "(mb)", "(mib)", "_mib"), "mb"),
    (("_rps", "(req/s)", "req/s", "rps"), "rps"), (("_percent", "(%)", "%"), "percent"),
)


def _unit(column: str) -> str | None:
    name = column.strip().lower()
    for endings, unit in _UNITS:
        if name.endswith(endings):
            return unit
    return None


def _plain(value: float) -> str:
    """Return a number without an exponent where people read it as one: 4 significant digits, whole
    numbers from 10,000 up; tiny magnitudes (errors of 1e-05) keep theirs."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    if abs(value) >= 1e4:
        return f"{value:.0f}"
    return f"{value:.4g}"


def format_cell(column: str, value: Any) -> str:
    """Return a table cell for people, by its column's unit: wall-clock seconds as UTC times, seconds,
    milliseconds, megabytes, rates and percentages in fixed point (never scientific notation)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _text(value)
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    unit = _unit(str(column))
    if unit == "s" and abs(value) >= EPOCH_AFTER_S:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(value))
        return f"{stamp}.{int(round((value % 1) * 1000)) % 1000:03d} UTC"
    if isinstance(value, int):
        return str(value)
    if unit in ("s", "ms"):
        return f"{value:.2f}" if unit == "s" or abs(value) < 10 else f"{value:.1f}"
    if unit in ("mb", "rps", "percent"):
        return f"{value:.1f}"
    return _plain(value)


COMPARISON_COLUMNS = ("metric", "baseline", "current", "change", "verdict", "reason")


def _html_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p><small>(no rows)</small></p>"
    columns = list(dict.fromkeys(key for row in rows for key in row))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column)
            css = _cell_class(str(column), value)
            text = html.escape(format_cell(str(column), value))
            cells.append(f"<td class=\"{css}\">{text}</td>" if css else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _md_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "_(no rows)_\n"
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(str(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(format_cell(str(c), row.get(c)).replace("|", "\\|") for c in columns) + " |")
    return "\n".join(lines) + "\n"


def _cell_name(section: Section) -> str:
    return f"{section.summary.get('experiment') or section.summary.get('fault')} on {section.summary.get('topology')}"


def verdict_text(sections: list[Section], comparison: Mapping[str, Any] | None = None,
                 job: Mapping[str, Any] | None = None) -> tuple[bool, str]:
    """Return (passed, the report's first paragraph): the verdict, then every failure with its one reason,
    what was inconclusive and why, and the headline figures. Inconclusive is not a failure; a job stage
    that could not run (``job``'s stages) is."""
    broken = [s for s in (job or {}).get("stages") or [] if isinstance(s, Mapping) and s.get("status") == "failed"]
    if not sections:
        if broken:
            return False, "FAIL. " + " ".join(f"Stage {s.get('name')} could not run: {s.get('reason')}." for s in broken)
        return False, "No results were found in this run directory: nothing was measured."
    chaos = [s for s in sections if s.kind == "chaos"]
    others = [s for s in sections if s.kind != "chaos"]
    failed_cells = [s for s in chaos if s.failed]
    unsure_cells = [s for s in chaos if s.inconclusive]
    # a matrix fails through its cells: name each failure once, with its reason
    failed_other = [s for s in others if s.failed and not (s.kind == "matrix" and chaos)]
    regressions = list((comparison or {}).get("regressions") or [])
    passed = not failed_cells and not failed_other and not regressions and not broken
    parts = [f"Stage {s.get('name')} could not run: {s.get('reason')}." for s in broken]
    if chaos:
        met = len(chaos) - len(failed_cells) - len(unsure_cells)
        parts.append(f"Chaos: {met} of {len(chaos)} cells met their SLA tier, {len(failed_cells)} did not, "
                     f"{len(unsure_cells)} inconclusive.")
    for section in failed_cells:
        parts.append(f"Not met: {_cell_name(section)}: {section.findings[0] if section.findings else 'see its section'}.")
    for section in unsure_cells:
        parts.append(f"Inconclusive (not a failure): {_cell_name(section)}: "
                     f"{section.findings[0] if section.findings else 'see its section'}.")
    for section in failed_other:
        parts.append(f"Failed: {section.title}: {section.findings[0] if section.findings else 'see its section'}.")
    for section in [s for s in others if s.kind == "load"][:1]:
        summary = section.summary
        parts.append(f"Load: {_text(summary.get('requests'))} requests, {_text(summary.get('throughput_rps'))} req/s, "
                     f"p99 {_text(summary.get('p99_ms'))} ms.")
    ttrs = [(s.summary.get("ttr_s"), _cell_name(s)) for s in chaos if isinstance(s.summary.get("ttr_s"), (int, float))]
    if ttrs:
        worst = max(ttrs)
        parts.append(f"Worst time to recover: {worst[0]:.2f} s ({worst[1]}).")
    burns = [(s.summary.get("projected_burn"), _cell_name(s)) for s in chaos
             if isinstance(s.summary.get("projected_burn"), (int, float))]
    if burns:
        worst = max(burns)
        parts.append(f"Largest projected error-budget burn: {worst[0]:.2%} ({worst[1]}).")
    for section in [s for s in others if s.kind == "capacity"][:1]:
        bound = "" if section.summary.get("per_replica_converged", True) is not False else "at most "
        parts.append(f"Capacity: {bound}{section.summary.get('replicas', 'n/a')} replicas for "
                     f"{_text(section.summary.get('target_rps'))} req/s"
                     + (" (one replica's search did not converge: its rate is a lower bound)." if bound else "."))
    if regressions:
        parts.append(f"{len(regressions)} regression(s) against the baseline beyond run-to-run noise: {regressions[0]}.")
    word = "PASS" if passed else "FAIL"
    if passed and unsure_cells:
        word = "PASS (with inconclusive cells)"
    return passed, f"{word}. " + " ".join(parts)


def _definitions(generative: bool = False) -> list[tuple[str, str]]:
    """Return (module, its Definitions block) for every module a verdict in this report depends on: the
    report quotes them rather than restating them (with ``generative``, a load with token figures: the
    per-request token figures and their statistics too)."""
    import importlib

    quoted = []
    names = ("harness.slo", "harness.measure.load_verdict", "harness.measure.recovery", "harness.measure.sla",
             "harness.measure.regression")
    generative_names = ("harness.load.protocols.openai", "harness.measure.tokens", "harness.measure.token_timeline")
    for name in names + (generative_names if generative else ()):
        doc = importlib.import_module(name).__doc__ or ""
        marker = doc.find("Definitions")
        block = doc[marker:] if marker >= 0 else doc
        quoted.append((name, block.strip()))
    return quoted


def _verdict_class(passed: bool, sections: list[Section]) -> str:
    if not passed:
        return "fail"
    return "unsure" if any(s.inconclusive for s in sections) else "pass"


def _run_record(run_dir: Path, errors: list[str]) -> Any:
    """Return the run.json record of ``run_dir``; None when there is none or it cannot be read (said in ``errors``)."""
    if not (run_dir / RUN_FILE).exists():
        return None
    try:
        return load_run(run_dir)
    except HarnessError as exc:
        errors.append(str(exc))  # names the file
        return None


def _environment(run_dir: Path, record: Any) -> dict[str, Any]:
    if record is not None:
        env = dict(record.environment or {})
        env.setdefault("run_id", record.run_id)
        return env
    for candidate in sorted(run_dir.rglob("result.json"))[:20]:
        data = read_json(candidate)
        if isinstance(data, dict):
            for key in ("environment", "machine"):
                if isinstance(data.get(key), dict):
                    return data[key]
    return {}


def _job(record: Any, job: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """Return the main job's target and stage rows: ``job`` as the report stage passes it (the job is
    still running), else what a finished `harness run` saved in run.json; None for other runs."""
    if job is None and record is not None:
        stages = (record.summary or {}).get("stages") if record.kind == "run" else None
        if isinstance(stages, Mapping):
            job = {"target": (record.config or {}).get("target"), "stages": list(stages.values())}
    return job


def _job_paragraph_and_rows(job: Mapping[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    target = job.get("target") or {}
    where = "the local platform (deployed and torn down by the harness)"
    if target.get("platform") == "kubernetes":
        where = (f"Kubernetes, attached to the applied Deployment in namespace {target.get('namespace')} "
                 f"(service {target.get('endpoint') or 'at its cluster DNS name'}, spec {target.get('spec')})")
    rows = [{"stage": s.get("name"), "status": s.get("status"), "verdict": s.get("verdict"),
             "elapsed (s)": s.get("elapsed_s"), "budget (s)": s.get("budget_s"),
             "why": s.get("reason") or "; ".join((s.get("findings") or [])[:3]) or ""}
            for s in job.get("stages") or [] if isinstance(s, Mapping)]
    not_run = [f"{r['stage']} ({r['status']})" for r in rows if r["status"] not in ("completed", None)]
    text = f"Ran on {where}." + (f" Not run to the end: {', '.join(not_run)}; the table says why." if not_run else "")
    return text, rows


def _flatten(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            rows.extend(_flatten(value, name + "."))
        elif isinstance(value, list):
            rows.append((name, ", ".join(_text(v) if not isinstance(v, Mapping) else str(dict(v)) for v in value)))
        else:
            rows.append((name, _text(value)))
    return rows


def write_report(run_dir: str | Path, *, comparison: Mapping[str, Any] | None = None,
                 title: str | None = None, job: Mapping[str, Any] | None = None) -> ReportPaths:
    """Rebuild report.html, report.md and summary.json in ``run_dir`` from its saved data; return their paths.

    ``job`` ({"target": PlatformTarget.describe(), "stages": [StageResult.to_dict()...]}) is the main
    job's stage table while it runs; a finished job's is read from its run.json. Raises HarnessError
    when a saved file cannot be read.
    """
    root = Path(run_dir)
    errors: list[str] = []
    sections = collect_sections(root, on_error=lambda path, exc: errors.append(f"{path}: {exc}"))
    record = _run_record(root, errors)
    job = _job(record, job)
    passed, verdict = verdict_text(sections, comparison, job)
    environment = _environment(root, record)
    heading = title or f"Resilience and performance report: {root.resolve().name}"
    generated = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())

    out_html = [f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{html.escape(heading)}</title>",
                f"<style>{STYLE}</style></head><body>", f"<h1>{html.escape(heading)}</h1>",
                f"<small>generated {generated} by harness {__version__} from saved data in {html.escape(str(root))}</small>",
                f"<div class=\"verdict {_verdict_class(passed, sections)}\">{html.escape(verdict)}</div>"]
    out_md = [f"# {heading}\n", f"_generated {generated} by harness {__version__}_\n", f"**Verdict:** {verdict}\n"]
    if errors:
        out_html.append("<ul class=\"findings\">" + "".join(f"<li>unreadable: {html.escape(e)}</li>" for e in errors) + "</ul>")
        out_md.extend(f"- unreadable: {e}\n" for e in errors)
    if comparison:
        rows = [{k: row.get(k) for k in COMPARISON_COLUMNS} for row in comparison.get("rows") or []]
        rule = f"A regression is a change beyond run-to-run noise: {comparison['rule']}." if comparison.get("rule") else ""
        out_html.append(f"<h2>Comparison with the baseline</h2><p>{html.escape(rule)}</p>")
        if comparison.get("warnings"):
            out_html.append("<ul>" + "".join(f"<li>{html.escape(str(w))}</li>" for w in comparison["warnings"]) + "</ul>")
        out_html.append(_html_table(rows))
        out_md.append(f"## Comparison with the baseline\n\n{rule}\n")
        out_md.extend(f"- {w}\n" for w in comparison.get("warnings") or [])
        out_md.append(_md_table(rows))
    if job:
        text, rows = _job_paragraph_and_rows(job)
        out_html.append(f"<h2>Job stages</h2><p>{html.escape(text)}</p>{_html_table(rows)}")
        out_md.append(f"## Job stages\n\n{text}\n\n{_md_table(rows)}")
    for section in sections:
        out_html.append(f"<h2>{html.escape(section.title)}</h2><small>{html.escape(section.path or '.')}</small>")
        out_md.append(f"## {section.title}\n\n_{section.path or '.'}_\n")
        for paragraph in section.paragraphs:
            out_html.append(f"<p>{html.escape(paragraph)}</p>")
            out_md.append(paragraph + "\n")
        if section.findings:
            out_html.append("<ul class=\"findings\">" + "".join(f"<li>{html.escape(f)}</li>" for f in section.findings) + "</ul>")
            out_md.extend(f"- {f}\n" for f in section.findings)
        for caption, rows in section.tables:
            out_html.append(f"<h3>{html.escape(caption)}</h3>{_html_table(rows)}")
            out_md.append(f"**{caption}**\n\n{_md_table(rows)}")
        for caption, png in section.figures:
            data = base64.b64encode(png).decode("ascii")
            out_html.append(f"<figure><img alt=\"{html.escape(caption)}\" src=\"data:image/png;base64,{data}\">"
                            f"<figcaption>{html.escape(caption)}</figcaption></figure>")
            out_md.append(f"_chart: {caption} (embedded in report.html)_\n")
    out_html.append("<h2>How the verdicts are judged</h2><p>Quoted from the modules that compute them.</p>")
    out_md.append("## How the verdicts are judged\n\nQuoted from the modules that compute them.\n")
    generative = any(isinstance(s.summary, dict) and ("tokens" in s.summary or "token_phases" in s.summary) for s in sections)
    for module, block in _definitions(generative):
        out_html.append(f"<h3>{html.escape(module)}</h3><pre class=\"definitions\">{html.escape(block)}</pre>")
        out_md.append(f"### {module}\n\n```text\n{block}\n```\n")
    env_rows = _flatten(environment)
    out_html.append("<h2>Environment</h2>")
    out_md.append("## Environment\n")
    if env_rows:
        out_html.append("<table class=\"env\">" + "".join(
            f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in env_rows) + "</table>")
        out_md.append(_md_table([{"field": k, "value": v} for k, v in env_rows]))
    else:
        out_html.append("<p>The environment was not recorded with this run.</p>")
        out_md.append("The environment was not recorded with this run.\n")
    out_html.append("</body></html>")

    paths = ReportPaths(html=root / "report.html", markdown=root / "report.md", summary=root / "summary.json")
    paths["html"].write_text("\n".join(out_html), encoding="utf-8")
    paths["markdown"].write_text("\n".join(out_md), encoding="utf-8")
    write_json(paths["summary"], {
        "passed": passed,
        "verdict": verdict,
        "generated_s": time.time(),
        "harness_version": __version__,
        "sections": [{"kind": s.kind, "title": s.title, "path": s.path, "failed": s.failed, "inconclusive": s.inconclusive,
                      "findings": s.findings, "summary": s.summary, "charts": len(s.figures)} for s in sections],
        "unreadable": errors,
        "comparison": dict(comparison) if comparison else None,
        "job": dict(job) if job else None,
        "environment": environment,
    })
    return paths
