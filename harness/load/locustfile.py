"""The harness's locustfile: users sending requests in the load's protocol (Open Inference Protocol v2 by default).

Plain Locust runs it::

    locust -f harness/load/locustfile.py --host http://127.0.0.1:8000 --headless -u 4 -r 4 -t 5s

Environment (all optional):

- ``HARNESS_LOAD_PROFILE``: JSON of a `harness.load.profiles.LoadProfile`. When set, exactly one
  `LoadTestShape` (the profile's kind: steady, ramp, step, spike or soak) is exposed at module level,
  so Locust picks it; the shape then drives users and run time (``-u``/``-r``/``-t`` are ignored). When unset,
  no shape class is visible and Locust's own ``-u``/``-r``/``-t`` drive the test.
- ``HARNESS_MODEL``: model to call when no profile is given (default ``ranker-mlp``).
- What a user sends is the profile's ``protocol`` (`harness.load.protocols`: oip-v2, openai-chat,
  openai-completions, http-json); without one, oip-v2 to the model. A streamed answer is read line by
  line as it arrives, and the adapter's reading (ok, TTFT, inter-token gaps, output tokens) is the record.
- ``HARNESS_REQUESTS_FILE``: CSV that every request is appended to as a `harness.request_records.RequestRecord`
  (source ``locust``), buffered and flushed about once a second and when Locust stops.

Distributed (``--master`` / ``--worker``): the master hands the profile to its workers (the
``--harness-profile`` argument, which defaults to ``HARNESS_LOAD_PROFILE``: Locust forwards a
locustfile's own arguments to every worker), so a worker started without the variable (a pod of the
rendered worker Deployment) sends what the master's profile says. A worker with
``HARNESS_RECORDS_TO_MASTER=1`` sends its records to the master in Locust messages instead of writing
them (its master may be on another machine), and a master with ``HARNESS_REQUESTS_FILE`` appends
what it receives there; with ``HARNESS_WORKERS_FILE`` a master also writes, every second, each
worker's CPU as the worker reports it, and at the end how many records each sent (JSON lines).

This module imports Locust (which monkey-patches the interpreter with gevent): only a Locust process
may import it, never the harness or pytest process.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from dataclasses import fields
from pathlib import Path

import gevent
from locust import FastHttpUser, LoadTestShape, constant, events, task
from locust.contrib.fasthttp import LocustBadStatusCode

from harness.config import DEFAULT_MODEL
from harness.errors import ConfigError
from harness.load.profiles import (
    ENV_MODEL, ENV_PROFILE, ENV_RECORDS_TO_MASTER, ENV_REQUESTS_FILE, ENV_WORKERS_FILE, LoadProfile, profile_from_env,
    target_users,
)
from harness.load.protocols import ProtocolSettings, Reading, build_adapter
from harness.request_records import RequestRecord, append_records
from harness.service.registry import get_signature

FLUSH_INTERVAL_S = 1.0
ERROR_TEXT_CHARS = 200
SOURCE = "locust"
RECORDS_MESSAGE = "harness_records"  # a worker's batch of records, to its master
DRAIN_IDLE_S = 1.5  # a master receiving records ends this long after its workers report no user running
DRAIN_CAP_S = 10.0  # ... and at the latest this long (beyond the stop timeout) after the profile ended
RECORD_FIELDS = [f.name for f in fields(RequestRecord)]


def _read_profile() -> LoadProfile | None:
    try:
        return profile_from_env()
    except ConfigError as exc:
        sys.stderr.write(f"harness locustfile: {ENV_PROFILE}: {exc}\n")
        raise SystemExit(2) from None


PROFILE = _read_profile()
MODEL = PROFILE.model if PROFILE is not None else os.environ.get(ENV_MODEL, DEFAULT_MODEL)
try:
    get_signature(MODEL)
except KeyError as exc:
    sys.stderr.write(f"harness locustfile: {ENV_MODEL}={MODEL!r}: {exc.args[0]}\n")
    raise SystemExit(2) from None
BATCH_SIZE = PROFILE.batch_size if PROFILE is not None else 1
TIMEOUT_S = PROFILE.request_timeout_s if PROFILE is not None else 10.0
THINK_TIME_S = PROFILE.think_time_s if PROFILE is not None else 0.0
try:  # bodies are built once (oip-v2 serialises its tensors here), so users spend no CPU on JSON
    ADAPTER = build_adapter((PROFILE.protocol if PROFILE is not None else None)
                            or ProtocolSettings(model=MODEL, batch_size=BATCH_SIZE))
except ConfigError as exc:
    sys.stderr.write(f"harness locustfile: {exc}\n")
    raise SystemExit(2) from None


class RequestRecorder:
    """Collects one `RequestRecord` per request event and appends them to a CSV in batches (or, without a
    path, hands each batch to ``send``: a worker's records on their way to its master)."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).unlink(missing_ok=True)  # records are appended: start from an empty file
        self.buffer: list[RequestRecord] = []
        self.written = 0
        self.send = None  # set at init on a worker that sends its records to its master
        self.received: dict[str, int] = {}  # on a master: records received from each worker

    def on_request(self, request_type, name, response_time, response_length, response=None,
                   context=None, exception=None, start_time=None, url=None, **_kwargs) -> None:
        sent_s = start_time if start_time is not None else time.time() - response_time / 1000.0
        intended_s = (context or {}).get("intended_s", sent_s)
        reading = (context or {}).get("reading")
        # latency runs from the intended send time (RequestRecord's contract); for closed-loop users the
        # two differ only by the microseconds between deciding to send and sending. A task that read its
        # answer through the adapter timed it from there already (its TTFT and TPOT on the same clock).
        latency_ms = response_time if reading is not None else response_time + max(sent_s - intended_s, 0.0) * 1000.0
        if reading is None:  # a request of another locustfile's task, or one that never reached the adapter
            status = int(getattr(response, "status_code", 0) or 0)
            error = "" if exception is None else f"{type(exception).__name__}: {exception}"[:ERROR_TEXT_CHARS]
            reading = Reading(exception is None, status, error)
        self.buffer.append(RequestRecord(intended_s, sent_s, latency_ms, source=SOURCE, **reading.record_fields()))

    def flush(self, **_kwargs) -> None:
        batch, self.buffer = self.buffer, []
        if not batch:
            return
        if self.path is None:
            if self.send is not None:  # rows of plain values: Locust's messages are msgpack
                self.send([[list(v) if isinstance(v, tuple) else v for v in (getattr(r, n) for n in RECORD_FIELDS)]
                           for r in batch])
                self.written += len(batch)
            return
        self.written += append_records(self.path, batch, RequestRecord)

    def receive(self, environment, msg, **_kwargs) -> None:
        """On a master: append a worker's batch of records (a `RECORDS_MESSAGE`) to this recorder's file."""
        records = [RequestRecord(**{n: tuple(v) if isinstance(v, list) else v for n, v in zip(RECORD_FIELDS, row)})
                   for row in msg.data]
        self.received[msg.node_id] = self.received.get(msg.node_id, 0) + len(records)
        if self.path is not None:
            append_records(self.path, records, RequestRecord)

    def run_flusher(self) -> None:
        while True:
            gevent.sleep(FLUSH_INTERVAL_S)
            self.flush()


_REQUESTS_FILE = os.environ.get(ENV_REQUESTS_FILE, "").strip()
_TO_MASTER = os.environ.get(ENV_RECORDS_TO_MASTER, "").strip() == "1"
RECORDER = RequestRecorder(_REQUESTS_FILE or None) if _REQUESTS_FILE or _TO_MASTER else None
_WORKERS_FILE = os.environ.get(ENV_WORKERS_FILE, "").strip()


@events.init_command_line_parser.add_listener
def _arguments(parser, **_kwargs) -> None:
    parser.add_argument("--harness-profile", type=str, env_var=ENV_PROFILE, default="", include_in_web_ui=False,
                        help="the harness's load profile (JSON); a master hands it to its workers")


@events.init.add_listener
def _on_init(environment, **_kwargs) -> None:
    from locust.runners import MasterRunner, WorkerRunner

    if isinstance(environment.runner, MasterRunner) and _WORKERS_FILE:
        gevent.spawn(_watch_workers, environment)
    if RECORDER is None:
        return
    if isinstance(environment.runner, MasterRunner):  # a master sends nothing: it records what workers send
        environment.runner.register_message(RECORDS_MESSAGE, RECORDER.receive)
        ProfileShape.drain = True
        return
    if RECORDER.path is None and isinstance(environment.runner, WorkerRunner):
        RECORDER.send = lambda rows: environment.runner.send_message(RECORDS_MESSAGE, rows)
    environment.events.request.add_listener(RECORDER.on_request)
    # flush at every way out: the test ends, the process quits (SIGTERM included), and just before exit
    environment.events.test_stop.add_listener(RECORDER.flush)
    environment.events.quitting.add_listener(RECORDER.flush)
    environment.events.quit.add_listener(RECORDER.flush)
    gevent.spawn(RECORDER.run_flusher)


def _watch_workers(environment) -> None:
    """On a master: every second, each worker's CPU as its heartbeats report it; at the end, its records."""
    def line(data: dict) -> None:
        with open(_WORKERS_FILE, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(data) + "\n")

    environment.events.quitting.add_listener(
        lambda **_kw: line({"records": dict(RECORDER.received) if RECORDER is not None else {}}))
    while True:
        gevent.sleep(FLUSH_INTERVAL_S)
        now = time.time()
        for worker in list(environment.runner.clients.values()):
            line({"time_s": now, "worker": worker.id, "cpu_percent": worker.cpu_usage})


@events.test_start.add_listener
def _on_test_start(environment, **_kwargs) -> None:
    """A worker started without a profile takes its master's (forwarded as ``--harness-profile``)."""
    text = (getattr(environment.parsed_options, "harness_profile", "") or "").strip()
    if PROFILE is None and text:
        try:
            _use(profile_from_env({ENV_PROFILE: text}))
        except ConfigError as exc:
            sys.stderr.write(f"harness locustfile: --harness-profile: {exc}\n")
            gevent.spawn(environment.runner.quit)


class InferenceUser(FastHttpUser):
    """A closed-loop user: send an inference request, wait for the answer, think, repeat."""

    wait_time = constant(THINK_TIME_S)
    network_timeout = TIMEOUT_S
    connection_timeout = TIMEOUT_S
    _numbers = itertools.count()  # request n of the whole process: the adapter's n-th request

    @task
    def infer(self) -> None:
        request = ADAPTER.request(next(self._numbers))
        intended_s, start = time.time(), time.perf_counter()
        with self.client.request(request.method, request.path, data=request.body or None, headers=request.headers,
                                 name=request.path, stream=request.stream, catch_response=True,
                                 context={"intended_s": intended_s}) as response:
            pieces, error = _read_answer(response, request.stream, start)
            latency_ms = (time.perf_counter() - start) * 1000.0
            reading = ADAPTER.read(int(response.status_code or 0), pieces, latency_ms, error)
            response.request_meta["context"]["reading"] = reading
            response.request_meta["response_time"] = latency_ms  # a stream's end, not its headers
            if reading.ok:
                response.success()
            else:
                response.failure(reading.error or "failed")


def _read_answer(response, stream: bool, start: float) -> tuple[list[tuple[float, bytes]], str]:
    """Return the pieces of an answer (a stream's lines as they arrive, timed in ms from ``start``) and the
    transport's error text ("" when it completed; a bad status is the adapter's to judge, not an error)."""
    error = getattr(response, "error", None) or response.request_meta.get("exception")
    if error is not None and not isinstance(error, LocustBadStatusCode):
        return [], f"{type(error).__name__}: {error}"[:ERROR_TEXT_CHARS]
    if not stream:
        return [((time.perf_counter() - start) * 1000.0, response.content or b"")], ""
    pieces = []
    raw = getattr(response, "_response", None)  # geventhttpclient's response: readline returns what has arrived
    try:
        while raw is not None and (line := raw.readline(b"\n")):
            pieces.append(((time.perf_counter() - start) * 1000.0, line))
    except Exception as exc:  # noqa: BLE001 - a connection closed mid-stream is the adapter's failure to read
        return pieces, f"{type(exc).__name__}: {exc}"[:ERROR_TEXT_CHARS]
    return pieces, ""


class ProfileShape(LoadTestShape):
    """Base of the profile shapes: user counts over time from `harness.load.profiles.target_users`."""

    abstract = True
    profile: LoadProfile | None = PROFILE
    drain = False  # a master whose workers send it their records: they arrive after the users stop
    _ended_s: float | None = None
    _idle_s: float | None = None

    def tick(self):
        if self.profile is None:
            return None
        target = target_users(self.profile, self.get_run_time())
        return self._drain() if target is None and self.drain else target

    def _drain(self):
        """Stop every user and end once the workers have reported none running for `DRAIN_IDLE_S` (their last
        records, flushed every `FLUSH_INTERVAL_S`, then in), or `DRAIN_CAP_S` past the stop timeout: a master
        that quit at once would lose the records its workers send while their users stop."""
        now = time.monotonic()
        self._ended_s = self._ended_s if self._ended_s is not None else now
        self._idle_s = None if self.get_current_user_count() > 0 else (self._idle_s if self._idle_s is not None else now)
        cap_s = float(getattr(self.runner.environment, "stop_timeout", 0.0) or 0.0) + DRAIN_CAP_S
        if (self._idle_s is not None and now - self._idle_s >= DRAIN_IDLE_S) or now - self._ended_s >= cap_s:
            return None
        return 0, float(max(self.profile.users, self.profile.peak_users, 100))


class SteadyShape(ProfileShape):
    """A constant number of users for the whole run."""

    abstract = True


class RampShape(ProfileShape):
    """Users rise linearly from ``ramp_from_users`` to ``ramp_to_users`` over the run."""

    abstract = True


class StepShape(ProfileShape):
    """Users rise by ``step_users`` every ``step_s`` up to ``users``."""

    abstract = True


class SpikeShape(ProfileShape):
    """``spike_base_users``, with a jump to ``spike_peak_users`` for ``spike_length_s``."""

    abstract = True


class SoakShape(ProfileShape):
    """A long steady run (leaks and drift show over time)."""

    abstract = True


def _use(profile: LoadProfile) -> None:
    """Send what ``profile`` says from now on (a worker configured by its master's profile)."""
    global PROFILE, MODEL, BATCH_SIZE, TIMEOUT_S, THINK_TIME_S, ADAPTER
    PROFILE, MODEL, BATCH_SIZE = profile, profile.model, profile.batch_size
    TIMEOUT_S, THINK_TIME_S = profile.request_timeout_s, profile.think_time_s
    ADAPTER = build_adapter(profile.protocol or ProtocolSettings(model=MODEL, batch_size=BATCH_SIZE))
    InferenceUser.wait_time = constant(THINK_TIME_S)
    InferenceUser.network_timeout = InferenceUser.connection_timeout = TIMEOUT_S


SHAPES = {"steady": SteadyShape, "ramp": RampShape, "step": StepShape, "spike": SpikeShape, "soak": SoakShape}

# Locust uses the (first) non-abstract LoadTestShape among this module's globals. Exposing exactly one,
# chosen from the profile, keeps plain `locust -f` (no profile: no shape) and the harness both working.
if PROFILE is not None:
    HarnessShape = type("HarnessShape", (SHAPES[PROFILE.kind],), {"abstract": False, "__module__": __name__})
