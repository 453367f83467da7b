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
from harness.report.sections import Section, collect_sections
from harness.results import RUN_FILE, load_run, read_json, write_json

__all__ = ["write_report", "ReportPaths", "verdict_text"]

STYLE = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em;margin-bottom:.2em} h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
.verdict{padding:.8em 1em;border-radius:6px;margin:1em 0}.pass{background:#e8f5e9;border:1px solid #2e7d32}
.fail{background:#ffebee;border:1px solid #c62828} table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .55em;text-align:left} th{background:#f5f5f5}
td.good{background:#c8e6c9} td.bad{background:#ffcdd2} figure{margin:1em 0} figure img{max-width:100%}
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
    if column == "highest_tier_met":
        return "bad" if text in _BAD_WORDS or text in ("", "nan", "n/a") else "good"
    return ""


def _text(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4g}"
    if value is None:
        return "n/a"
    return str(value)


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
            cells.append(f"<td class=\"{css}\">{html.escape(_text(value))}</td>" if css else f"<td>{html.escape(_text(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _md_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "_(no rows)_\n"
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(str(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_text(row.get(c)).replace("|", "\\|") for c in columns) + " |")
    return "\n".join(lines) + "\n"


def verdict_text(sections: list[Section], comparison: Mapping[str, Any] | None = None) -> tuple[bool, str]:
    """Return (passed, one-paragraph verdict) over every section and an optional baseline comparison."""
    if not sections:
        return False, "No results were found in this run directory: nothing was measured."
    failed = [s for s in sections if s.failed]
    kinds = sorted({s.kind for s in sections})
    parts = [f"{len(sections)} result sets ({', '.join(kinds)})."]
    chaos = [s for s in sections if s.kind == "chaos"]
    if chaos:
        met = [s for s in chaos if not s.failed]
        parts.append(f"{len(met)} of {len(chaos)} chaos runs met their SLA tier.")
        ttrs = [s.summary.get("ttr_s") for s in chaos if isinstance(s.summary.get("ttr_s"), (int, float))]
        if ttrs:
            parts.append(f"Worst time to recover: {max(ttrs):.2f} s.")
    load = [s for s in sections if s.kind == "load"]
    for section in load[:1]:
        parts.append(f"Load: {_text(section.summary.get('throughput_rps'))} req/s at p99 {_text(section.summary.get('p99_ms'))} ms.")
    capacity = [s for s in sections if s.kind == "capacity"]
    for section in capacity[:1]:
        parts.append(f"Capacity: {section.summary.get('replicas', 'n/a')} replicas for "
                     f"{_text(section.summary.get('target_rps'))} req/s.")
    regressions = list((comparison or {}).get("regressions") or [])
    if regressions:
        parts.append(f"{len(regressions)} regression(s) against the baseline beyond noise.")
    passed = not failed and not regressions
    if failed:
        parts.append("Failed: " + "; ".join(s.title for s in failed) + ".")
    return passed, ("PASS. " if passed else "FAIL. ") + " ".join(parts)


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
    passed, verdict = verdict_text(sections, comparison)
    record = _run_record(root, errors)
    environment = _environment(root, record)
    heading = title or f"Resilience and performance report: {root.resolve().name}"
    generated = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())

    out_html = [f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{html.escape(heading)}</title>",
                f"<style>{STYLE}</style></head><body>", f"<h1>{html.escape(heading)}</h1>",
                f"<small>generated {generated} by harness {__version__} from saved data in {html.escape(str(root))}</small>",
                f"<div class=\"verdict {'pass' if passed else 'fail'}\">{html.escape(verdict)}</div>"]
    out_md = [f"# {heading}\n", f"_generated {generated} by harness {__version__}_\n", f"**Verdict:** {verdict}\n"]
    if errors:
        out_html.append("<ul class=\"findings\">" + "".join(f"<li>unreadable: {html.escape(e)}</li>" for e in errors) + "</ul>")
        out_md.extend(f"- unreadable: {e}\n" for e in errors)
    if comparison:
        rows = list(comparison.get("rows") or [])
        out_html.append("<h2>Comparison with the baseline</h2>")
        if comparison.get("warnings"):
            out_html.append("<ul>" + "".join(f"<li>{html.escape(str(w))}</li>" for w in comparison["warnings"]) + "</ul>")
        out_html.append(_html_table(rows))
        out_md.append("## Comparison with the baseline\n")
        out_md.extend(f"- {w}\n" for w in comparison.get("warnings") or [])
        out_md.append(_md_table(rows))
    job = _job(record, job)
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
        "sections": [{"kind": s.kind, "title": s.title, "path": s.path, "failed": s.failed,
                      "findings": s.findings, "summary": s.summary, "charts": len(s.figures)} for s in sections],
        "unreadable": errors,
        "comparison": dict(comparison) if comparison else None,
        "job": dict(job) if job else None,
        "environment": environment,
    })
    return paths
