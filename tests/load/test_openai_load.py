"""OpenAI-compatible load against a tiny streaming server whose delays are known (`openai_server`): the
asyncio sender, the rate generator, Locust and `harness load --endpoint` record TTFT, inter-token gaps
and TPOT equal to those delays, a stream cut mid-response is a failure that stays in the statistics,
and the token percentiles are numpy's over the records."""

from __future__ import annotations

import asyncio
import json
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from harness.load.protocols import ProtocolSettings, aio, build_adapter
from harness.measure.percentiles import SUMMARY_PERCENTILES
from harness.measure.tokens import summarize_tokens
from harness.request_records import REQUESTS_FILE, TIMELINE_FILE, ProbeSample, RequestRecord, read_records
from harness.slo import Slo, TokenSlo

from .openai_server import StreamingServer

TOKENS, TTFT_MS, ITL_MS = 6, 60.0, 20.0
EARLY_MS, LATE_MS = 1.0, 30.0  # clock slack; a busy CI box is late
CHAT = ProtocolSettings(protocol="openai-chat", model="tiny", max_tokens=TOKENS)


@pytest.fixture
def server():
    with StreamingServer(tokens=TOKENS, ttft_s=TTFT_MS / 1000, itl_s=ITL_MS / 1000, cut_every=4) as running:
        yield running


def _check_known_delays(ok: list) -> None:
    """Every record: no token before the server sent it (hard lower bounds), TPOT by its definition; the
    medians: the known delays (a busy machine delays single chunks, never the middle of them)."""
    assert ok
    for r in ok:
        assert r.output_tokens == TOKENS and len(r.itl_ms) == TOKENS - 1, r
        assert r.ttft_ms >= TTFT_MS - EARLY_MS, r
        assert r.ttft_ms + sum(r.itl_ms) >= TTFT_MS + (TOKENS - 1) * ITL_MS - EARLY_MS, r  # the last token's arrival
        assert r.latency_ms >= r.ttft_ms + sum(r.itl_ms), r
        assert r.tpot_ms == pytest.approx((r.latency_ms - r.ttft_ms) / (TOKENS - 1)), r
    assert statistics.median(r.ttft_ms for r in ok) == pytest.approx(TTFT_MS, abs=LATE_MS / 2)
    assert statistics.median(g for r in ok for g in r.itl_ms) == pytest.approx(ITL_MS, abs=5.0)
    assert statistics.median(r.tpot_ms for r in ok) == pytest.approx(ITL_MS, abs=5.0)


def _check_cut(failed: list, expected: int) -> None:
    assert len(failed) == expected
    for r in failed:
        assert r.status == 200 and r.error.startswith(f"stream cut after {TOKENS // 2} output event(s)"), r


def test_the_asyncio_sender_measures_the_known_delays_and_fails_the_cut_stream(server):
    import aiohttp

    adapter = build_adapter(CHAT)

    async def main() -> list:
        async with aiohttp.ClientSession() as session:
            readings = []
            for n in range(8):
                start = time.monotonic()
                reading, latency_ms = await aio.send(session, adapter, server.url, n, 5.0, start)
                readings.append(RequestRecord(0.0, 0.0, latency_ms, **reading.record_fields()))
            return readings

    records = asyncio.run(main())
    _check_known_delays([r for r in records if r.ok])
    _check_cut([r for r in records if not r.ok], 2)  # requests 4 and 8


def test_the_rate_generator_records_tokens_and_the_percentiles_are_numpys(server, tmp_path):
    from harness.load.rate import run_rate

    run = run_rate(server.url, tmp_path, rate_rps=16, duration_s=1.0, timeout_s=5.0, protocol=CHAT)
    records = list(read_records(tmp_path / REQUESTS_FILE, RequestRecord))
    assert len(records) == run.load.requests == 16
    ok = [r for r in records if r.ok]
    _check_known_delays(ok)
    _check_cut([r for r in records if not r.ok], 4)
    assert run.load.errors == 4  # the cut streams are in the load's figures, as failures

    summary = summarize_tokens(records, Slo())
    qs = list(SUMMARY_PERCENTILES)
    assert list(summary.ttft_ms.values()) == pytest.approx(np.percentile([r.ttft_ms for r in ok], qs), rel=1e-12)
    assert list(summary.tpot_ms.values()) == pytest.approx(np.percentile([r.tpot_ms for r in ok], qs), rel=1e-12)
    gaps = [g for r in ok for g in r.itl_ms]  # every gap of every successful request, pooled
    assert list(summary.itl_ms.values()) == pytest.approx(np.percentile(gaps, qs), rel=1e-12)
    assert summary.output_tokens == TOKENS * 12 and summary.good == 12 and summary.good_share == 12 / 16
    assert summary.goodput_rps == pytest.approx(12 / summary.duration_s)
    assert summarize_tokens(records, Slo(), TokenSlo(ttft_ms=TTFT_MS / 2)).good == 0  # every TTFT misses it
    assert summarize_tokens(records, Slo(), TokenSlo(tpot_ms=ITL_MS * 3)).good == 12


def test_locust_users_record_tokens_and_fail_the_cut_stream(server, tmp_path):
    from harness.load.locust_runner import run_locust
    from harness.load.profiles import LoadProfile

    profile = LoadProfile(users=2, spawn_rate=10, duration_s=1.5, protocol=CHAT)
    result = run_locust(server.url, profile, tmp_path, stop_timeout_s=2.0)
    records = list(read_records(tmp_path / REQUESTS_FILE, RequestRecord))
    assert result.requests == len(records) >= 8
    _check_known_delays([r for r in records if r.ok])
    _check_cut([r for r in records if not r.ok], server.count // 4)
    assert result.extra["locust_failures"] == len([r for r in records if not r.ok])  # Locust's own figures agree


def test_harness_load_measures_an_openai_endpoint_with_goodput(server, tmp_path, capsys):
    from harness.cli import main

    out = tmp_path / "run"
    assert main(["load", "--endpoint", server.url, "--protocol", "openai-chat", "--model", "tiny", "--max-tokens",
                 str(TOKENS), "--rate-rps", "8", "--duration-s", "1", "--no-pin", "--ttft-ms", "500",
                 "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    records = list(read_records(out / REQUESTS_FILE, RequestRecord))
    cut = [r for r in records if not r.ok]
    assert cut and all(r.error.startswith("stream cut") for r in cut)
    tokens = printed["tokens"]
    assert tokens["requests"] == len(records) == 8 and printed["errors"] == len(cut)
    assert tokens["good"] == tokens["ok"] == 8 - len(cut)  # every answer within the bounds; a cut one never good
    assert tokens["bounds"] == {"ttft_ms": 500.0, "tpot_ms": None, "e2e_ms": 500.0}
    assert tokens["ttft_p50_ms"] == pytest.approx(np.percentile([r.ttft_ms for r in records if r.ok], 50), rel=1e-12)
    saved = json.loads((out / "result.json").read_text())
    run = json.loads((out / "run.json").read_text())
    assert saved["tokens"] == tokens and run["summary"]["tokens"] == tokens and run["config"]["endpoint"] == server.url
    from harness.report.perf_sections import load_tokens

    assert load_tokens(out) == tokens  # the report rebuilds them from requests.csv and run.json's bounds
    from harness.report.writer import write_report

    report = write_report(out)
    assert f"goodput {tokens['goodput_rps']:.1f} req/s ({tokens['good']} of 8 requests met ttft <= 500.0 ms" \
        in report["markdown"].read_text()
    assert f"on {server.url}" in report["markdown"].read_text()
    assert "### harness.measure.tokens" in report["markdown"].read_text()  # its definitions, quoted
    samples = list(read_records(out / TIMELINE_FILE, ProbeSample))  # the prober speaks the protocol too,
    assert samples and all(s.ok for s in samples)  # asking for one token (no cut: the server cuts mid-way)
    assert statistics.median(s.latency_ms for s in samples) < TTFT_MS + ITL_MS


@pytest.mark.parametrize("flags, first_line", [
    (["--protocol", "http-json"], "--path=None: the http-json protocol needs the path"),
    (["--protocol", "http-json", "--path", "/p", "--body-template", '{"x": $y}'], "--body-template="),
    (["--protocol", "openai-chat", "--max-tokens", "0"], "--max-tokens=0"),
    (["--ttft-ms", "-1"], "--ttft-ms=-1.0"),
    (["--endpoint", "ftp://x"], "--endpoint='ftp://x'"),
])
def test_bad_protocol_flags_are_exit_2_with_one_line_naming_the_flag(tmp_path, capsys, flags, first_line):
    from harness.cli import main

    assert main(["load", "--duration-s", "1", "--no-pin", "--out", str(tmp_path / "r"), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and first_line in err, err
    assert not (tmp_path / "r" / REQUESTS_FILE).exists()


def test_bad_jsonl_is_exit_2_naming_the_flag_and_the_line(tmp_path, capsys):
    from harness.cli import main

    bodies = tmp_path / "bodies.jsonl"
    bodies.write_text('{"x": 1}\n{"x": 2,}\n', encoding="utf-8")
    assert main(["load", "--duration-s", "1", "--no-pin", "--out", str(tmp_path / "r"), "--protocol", "http-json",
                 "--path", "/p", "--bodies-file", str(bodies)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"--bodies-file='{bodies}:2': line 2 is not JSON" in err, err


def test_an_unknown_protocol_is_refused_by_name(tmp_path, capsys):
    from harness.cli import main

    assert main(["load", "--duration-s", "1", "--out", str(tmp_path / "r"), "--protocol", "grpc"]) == 2
    assert "argument --protocol: invalid choice: 'grpc'" in capsys.readouterr().err


class _KServeLike(BaseHTTPRequestHandler):
    """A v2 server of a model the harness does not know: metadata, and inference that checks the tensors."""

    METADATA = {"name": "resnet", "inputs": [{"name": "img", "datatype": "FP32", "shape": [-1, 4]}]}

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self._send(200, self.METADATA) if self.path == "/v2/models/resnet" else self._send(404, {"error": "no"})

    def do_POST(self) -> None:  # noqa: N802
        tensors = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["inputs"]
        good = [(t["name"], t["shape"], t["datatype"], len(t["data"])) for t in tensors] == [("img", [1, 4], "FP32", 4)]
        self._send(200, {"outputs": []}) if good and self.path == "/v2/models/resnet/infer" else self._send(400, {"error": "bad"})

    def log_message(self, *_args) -> None:
        pass


def test_oip_v2_to_a_model_not_built_in_takes_its_tensors_from_the_servers_metadata(tmp_path):
    from harness.load.session import Endpoint, RateLoad, run_session

    server = ThreadingHTTPServer(("127.0.0.1", 0), _KServeLike)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        load = RateLoad(10, 1.0, protocol=ProtocolSettings(model="resnet"))
        result = run_session(Endpoint(url), load, tmp_path, prober=True, telemetry=False)
    finally:
        server.shutdown()
        thread.join(timeout=10)
    assert result["requests"] == 10 and result["errors"] == 0  # every body had the metadata's tensors
    assert result["profile"]["protocol"]["inputs"] == [{"name": "img", "datatype": "FP32", "shape": [-1, 4]}]
    samples = list(read_records(tmp_path / TIMELINE_FILE, ProbeSample))
    assert samples and all(s.ok for s in samples)


def test_the_warm_up_speaks_the_loads_protocol(server):
    from harness.load.rounds import warm_up
    from harness.load.session import Endpoint, RateLoad

    sent = warm_up(Endpoint(server.url), RateLoad(20, 1.0, protocol=CHAT), 0.3)
    assert sent >= 2 and server.count == sent  # every one reached the chat path (any other is not counted)


def test_model_names_the_llm_when_the_protocol_is_not_the_reference_services(tmp_path, monkeypatch):
    from harness.cli import main
    from harness.errors import HarnessError

    seen = []

    def run_load(settings, context, **_):
        seen.append((settings, context))
        raise HarnessError("stop here")

    monkeypatch.setattr("harness.workflows.load.run_load", run_load)
    assert main(["load", "--protocol", "openai-completions", "--model", "my-llm", "--rate-rps", "2", "--duration-s", "1",
                 "--no-pin", "--out", str(tmp_path / "r")]) != 2  # not a usage error: the spec keeps its model
    settings, context = seen[0]
    assert settings.load.protocol.model == "my-llm" and context.spec.service.model != "my-llm"


def test_a_spec_endpoint_target_streams_through_the_balancer(server, tmp_path, capsys):
    from harness.cli import main

    spec = tmp_path / "llm.yaml"
    spec.write_text(f"name: llm\ntarget: {{endpoint: {server.url}, readiness_path: /health}}\n"
                    "probes: {readiness: {periodSeconds: 0.2, timeoutSeconds: 1, failureThreshold: 2}}\n", encoding="utf-8")
    out = tmp_path / "run"
    assert main(["load", "--spec", str(spec), "--protocol", "openai-chat", "--model", "tiny", "--rate-rps", "8",
                 "--duration-s", "1", "--warmup-s", "0", "--no-prober", "--no-pin", "--out", str(out)]) == 0
    records = list(read_records(out / REQUESTS_FILE, RequestRecord))
    assert len(records) == 8
    _check_known_delays([r for r in records if r.ok])  # the balancer passes each event on as it comes
    assert json.loads(capsys.readouterr().out)["tokens"]["requests"] == 8


def test_the_metadata_read_asks_again_while_the_server_answers_503():
    """Right after the platform sees a replica Ready, its balancer may still answer 503 for a moment (and a
    server still loading answers it too): the metadata read waits that out, within its timeout."""
    from harness.errors import HarnessError
    from harness.load.protocols.oip_v2 import fetch_inputs

    class NotReadyTwice(_KServeLike):
        unready = 2

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            if NotReadyTwice.unready > 0:
                NotReadyTwice.unready -= 1
                return self._send(503, {"error": "no Ready replica"})
            super().do_GET()

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotReadyTwice)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert fetch_inputs(url, "resnet") == [{"name": "img", "datatype": "FP32", "shape": [-1, 4]}]
        assert NotReadyTwice.unready == 0
        NotReadyTwice.unready = 1000
        started = time.monotonic()
        with pytest.raises(HarnessError, match="HTTP Error 503"):
            fetch_inputs(url, "resnet", timeout_s=0.5)  # never ready: an error once the timeout is spent
        assert time.monotonic() - started < 2
        NotReadyTwice.unready = 0
        with pytest.raises(HarnessError, match="HTTP Error 404"):
            fetch_inputs(url, "other")  # any other status is the answer at once
    finally:
        server.shutdown()
        thread.join(timeout=10)
