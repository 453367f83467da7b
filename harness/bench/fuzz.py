"""Fuzz benchmark: a hostile client's corpus sent to a served replica directly and through the balancer.

``harness bench fuzz [--requests-per-model N] [--models a,b] [--out DIR]`` (or ``python -m harness.bench.fuzz``)

For each model (by default tiny-mlp, FP32 input, and text-encoder, INT64 token ids) the local platform
deploys one replica behind its front balancer. The same corpus (`harness.bench.fuzzcorpus`: JSON and
binary-tensor requests, valid and malformed, mistyped, with lying binary headers, oversized bodies,
wrong methods and paths) is sent first straight to the replica, then through the balancer, by a few
concurrent keep-alive clients. The benchmark counts statuses per model, form and way, and checks:

- no answer is a 5xx, and every request is answered (status 0 counts "no answer");
- every 4xx carries a JSON object with a string ``error`` (HEAD answers have no body to check);
- the balancer answers each request as the replica did (same status, request by request);
- the replica is still ready after each pass, and the balancer's resident memory stays flat.

Exit status 0 when every check holds, 1 when one fails (the table says which), 2 for bad flags.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from harness.bench.fuzzcorpus import FORMS, FuzzRequest, make_corpus

__all__ = ["FuzzSettings", "Answer", "send_corpus", "check_answers", "run_fuzz_bench", "format_fuzz_table"]

_CHUNK = 256 * 1024
_WAYS = ("direct", "balancer")


@dataclass(frozen=True)
class FuzzSettings:
    """What to send: the models, how many requests each (each sent both ways), the seed, the concurrency."""

    models: tuple[str, ...] = ("tiny-mlp", "text-encoder")
    requests_per_model: int = 5000
    seed: int = 0
    concurrency: int = 8
    timeout_s: float = 30.0


@dataclass(frozen=True)
class Answer:
    """What came back for one request: the status (0: no answer) and whether an error body was JSON with ``error``."""

    status: int
    json_error: bool
    detail: str = ""


def _send_one(connection: http.client.HTTPConnection, request: FuzzRequest) -> Answer:
    headers = dict(request.headers)
    body: Any = request.payload()
    if request.chunked:
        data = body
        body = (data[i : i + _CHUNK] for i in range(0, len(data), _CHUNK))
    connection.request(request.method, quote(request.path, safe="/%?=&"), body=body, headers=headers,
                       encode_chunked=request.chunked)
    response = connection.getresponse()
    raw = response.read()
    if response.getheader("connection", "").lower() == "close":
        connection.close()
    json_error = True
    detail = ""
    if response.status >= 400 and request.method != "HEAD":
        try:
            payload = json.loads(raw)
            json_error = isinstance(payload, dict) and isinstance(payload.get("error"), str) and bool(payload["error"])
        except ValueError:
            json_error = False
        detail = raw[:200].decode("utf-8", "replace")
    return Answer(response.status, json_error, detail)


def send_corpus(base_url: str, corpus: list[FuzzRequest], *, concurrency: int = 8, timeout_s: float = 30.0) -> list[Answer]:
    """Send every request of ``corpus`` to ``base_url`` with ``concurrency`` keep-alive clients; return the answers in order.

    A request that gets no answer (connection reset, timeout) is Answer(0, ...), its connection renewed.
    """
    address = urlsplit(base_url)
    local = threading.local()
    answers: list[Answer | None] = [None] * len(corpus)

    def connection() -> http.client.HTTPConnection:
        if getattr(local, "connection", None) is None:
            local.connection = http.client.HTTPConnection(address.hostname, address.port, timeout=timeout_s)
        return local.connection

    def run(index: int) -> None:
        conn = connection()
        try:
            answers[index] = _send_one(conn, corpus[index])
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            local.connection = None
            answers[index] = Answer(0, False, f"{type(exc).__name__}: {exc}")

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(run, range(len(corpus))))
    return [answer for answer in answers if answer is not None]


def check_answers(corpus: list[FuzzRequest], answers: list[Answer]) -> list[str]:
    """Return the problems of one pass: 5xx or unanswered requests, 4xx without a JSON ``error`` (empty: none)."""
    problems = []
    for request, answer in zip(corpus, answers):
        what = f"{request.form}/{request.kind} {request.method} {request.path[:80]}"
        if answer.status == 0 or answer.status >= 500:
            problems.append(f"{what}: {answer.status or 'no answer'} {answer.detail[:160]}")
        elif answer.status >= 400 and not answer.json_error:
            problems.append(f"{what}: {answer.status} without a JSON error: {answer.detail[:160]!r}")
    return problems


def _rss_mb(pid: int | None) -> float | None:
    import psutil

    try:
        return round(psutil.Process(pid).memory_info().rss / 2**20, 1) if pid else None
    except psutil.Error:
        return None


def _fuzz_spec(model: str) -> Any:
    from harness.config import ServiceSpec
    from harness.validation import validate_model

    return validate_model(ServiceSpec, {
        "topology": "single",
        "service": {"model": model, "max_queue_delay_ms": 2, "warmup_iters": 1, "torch_threads": 1},
        "probes": {"readiness": {"path": "/v2/health/ready", "periodSeconds": 0.5, "timeoutSeconds": 2, "failureThreshold": 3},
                   "liveness": {"path": "/v2/health/live", "initialDelaySeconds": 5, "periodSeconds": 1, "timeoutSeconds": 5,
                                "failureThreshold": 10}},
        "terminationGracePeriodSeconds": 5,
    })


def _pass(name: str, url: str, corpus: list[FuzzRequest], settings: FuzzSettings) -> tuple[list[Answer], float]:
    started = time.monotonic()
    answers = send_corpus(url, corpus, concurrency=settings.concurrency, timeout_s=settings.timeout_s)
    return answers, time.monotonic() - started


def _summary(corpus: list[FuzzRequest], answers: list[Answer], elapsed_s: float, ready_after: bool) -> dict[str, Any]:
    by_form: dict[str, dict[str, int]] = {}
    for request, answer in zip(corpus, answers):
        counts = by_form.setdefault(request.form, {})
        counts[str(answer.status)] = counts.get(str(answer.status), 0) + 1
    statuses = Counter(str(answer.status) for answer in answers)
    problems = check_answers(corpus, answers)
    return {"requests": len(answers), "elapsed_s": round(elapsed_s, 2), "statuses": dict(sorted(statuses.items())),
            "by_form": {form: dict(sorted(by_form[form].items())) for form in FORMS if form in by_form},
            "server_errors": sum(1 for a in answers if a.status >= 500), "unanswered": statuses.get("0", 0),
            "problems": len(problems), "problem_examples": problems[:10], "ready_after": ready_after}


def run_model(model: str, settings: FuzzSettings, workdir: Path, say: Any) -> dict[str, Any]:
    """Deploy one replica of ``model`` locally and send its corpus both ways; return the figures."""
    from harness.platforms import deploy
    from harness.service.client import is_ready

    corpus = make_corpus(model, settings.requests_per_model, settings.seed)
    deployment = deploy(_fuzz_spec(model), platform="local", workdir=workdir)
    try:
        deployment.wait_ready(timeout_s=180.0)
        replica_url = deployment.replica(deployment.replicas()[0].name).url
        balancer_pid = json.loads(deployment.state_path.read_text())["balancer"]["pid"]
        rss_before = _rss_mb(balancer_pid)
        result: dict[str, Any] = {"model": model, "balancer_rss_mb_before": rss_before}
        answers: dict[str, list[Answer]] = {}
        for way, url in zip(_WAYS, (replica_url, deployment.endpoint)):
            say(f"{model}: {len(corpus)} requests {way} ({url})")
            answers[way], elapsed = _pass(way, url, corpus, settings)
            result[way] = _summary(corpus, answers[way], elapsed, is_ready(replica_url))
        result["balancer_rss_mb_after"] = _rss_mb(balancer_pid)
        mismatches = [f"{r.form}/{r.kind} {r.method} {r.path[:60]}: direct {d.status}, balancer {b.status}"
                      for r, d, b in zip(corpus, answers["direct"], answers["balancer"]) if d.status != b.status]
        result["status_mismatches"] = len(mismatches)
        result["mismatch_examples"] = mismatches[:10]
        return result
    finally:
        deployment.close()


def run_fuzz_bench(settings: FuzzSettings, out_dir: Path, *, progress: Any = None) -> dict[str, Any]:
    """Run the benchmark for every model; return the result (also written to ``out_dir/fuzz.json``)."""
    say = progress or (lambda message: None)
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    models = [run_model(model, settings, out / f"deployment-{model}", say) for model in settings.models]
    total = sum(m[way]["requests"] for m in models for way in _WAYS)
    passed = all(m[way]["problems"] == 0 and m[way]["ready_after"] for m in models for way in _WAYS) and \
        all(m["status_mismatches"] == 0 for m in models)
    result = {"benchmark": "fuzz", "settings": asdict(settings), "models": models, "requests_total": total, "passed": passed}
    (out / "fuzz.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def format_fuzz_table(result: dict[str, Any]) -> str:
    """Return the figures for people: per model and way, the requests, statuses and checks; then the verdict."""
    lines = []
    for model in result["models"]:
        lines.append(f"{model['model']}: balancer RSS {model['balancer_rss_mb_before']} -> {model['balancer_rss_mb_after']} MiB; "
                     f"direct vs balancer status mismatches: {model['status_mismatches']}")
        for way in _WAYS:
            row = model[way]
            lines.append(f"  {way:<8} {row['requests']:>6} requests in {row['elapsed_s']:>6.1f} s  5xx: {row['server_errors']}  "
                         f"unanswered: {row['unanswered']}  4xx without JSON error: {row['problems'] - row['server_errors'] - row['unanswered']}  "
                         f"ready after: {'yes' if row['ready_after'] else 'NO'}")
            lines.append(f"           statuses {row['statuses']}")
            for form, counts in row["by_form"].items():
                lines.append(f"           {form:<7} {counts}")
            lines += [f"           ! {problem}" for problem in row["problem_examples"]]
        lines += [f"  ! {mismatch}" for mismatch in model["mismatch_examples"]]
    lines.append(f"{result['requests_total']} requests in all: {'PASS' if result['passed'] else 'FAIL'}")
    return "\n".join(lines)


if __name__ == "__main__":  # ``python -m harness.bench.fuzz [flags]``: the same as ``harness bench fuzz [flags]``
    from harness.cli import main as cli_main  # an entry point of its own: only here may it call the CLI

    sys.exit(cli_main(["bench", "fuzz", *sys.argv[1:]]))
