"""The harness's locustfile: users sending Open Inference Protocol v2 requests to a reference model.

Plain Locust runs it::

    locust -f harness/load/locustfile.py --host http://127.0.0.1:8000 --headless -u 4 -r 4 -t 5s

Environment (all optional):

- ``HARNESS_LOAD_PROFILE``: JSON of a `harness.load.profiles.LoadProfile`. When set, exactly one
  `LoadTestShape` (the profile's kind: steady, ramp, step, spike or soak) is exposed at module level,
  so Locust picks it; the shape then drives users and run time (``-u``/``-r``/``-t`` are ignored). When unset,
  no shape class is visible and Locust's own ``-u``/``-r``/``-t`` drive the test.
- ``HARNESS_MODEL``: model to call when no profile is given (default ``ranker-mlp``).
- ``HARNESS_REQUESTS_FILE``: CSV that every request is appended to as a `harness.request_records.RequestRecord`
  (source ``locust``), buffered and flushed about once a second and when Locust stops.

This module imports Locust (which monkey-patches the interpreter with gevent): only a Locust process
may import it, never the harness or pytest process.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from pathlib import Path

import gevent
import orjson
from locust import FastHttpUser, LoadTestShape, constant, events, task

from harness.config import DEFAULT_MODEL
from harness.errors import ConfigError
from harness.load.profiles import ENV_MODEL, ENV_PROFILE, ENV_REQUESTS_FILE, LoadProfile, profile_from_env, target_users
from harness.request_records import RequestRecord, append_records
from harness.service.registry import example_request, get_signature

BODY_VARIANTS = 8  # distinct request bodies, serialised once at start so users spend no CPU on JSON
FLUSH_INTERVAL_S = 1.0
ERROR_TEXT_CHARS = 200
SOURCE = "locust"


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
INFER_PATH = f"/v2/models/{MODEL}/infer"
BODIES = [orjson.dumps(example_request(MODEL, BATCH_SIZE, seed)) for seed in range(BODY_VARIANTS)]
HEADERS = {"Content-Type": "application/json"}


class RequestRecorder:
    """Collects one `RequestRecord` per request event and appends them to a CSV in batches."""

    def __init__(self, path: str) -> None:
        self.path = path
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).unlink(missing_ok=True)  # records are appended: start from an empty file
        self.buffer: list[RequestRecord] = []
        self.written = 0

    def on_request(self, request_type, name, response_time, response_length, response=None,
                   context=None, exception=None, start_time=None, url=None, **_kwargs) -> None:
        sent_s = start_time if start_time is not None else time.time() - response_time / 1000.0
        intended_s = (context or {}).get("intended_s", sent_s)
        status = int(getattr(response, "status_code", 0) or 0)
        error = "" if exception is None else f"{type(exception).__name__}: {exception}"[:ERROR_TEXT_CHARS]
        # latency runs from the intended send time (RequestRecord's contract); for closed-loop users the
        # two differ only by the microseconds between deciding to send and sending
        latency_ms = response_time + max(sent_s - intended_s, 0.0) * 1000.0
        self.buffer.append(RequestRecord(intended_s, sent_s, latency_ms, status, exception is None, error, SOURCE))

    def flush(self, **_kwargs) -> None:
        batch, self.buffer = self.buffer, []
        if batch:
            self.written += append_records(self.path, batch, RequestRecord)

    def run_flusher(self) -> None:
        while True:
            gevent.sleep(FLUSH_INTERVAL_S)
            self.flush()


_REQUESTS_FILE = os.environ.get(ENV_REQUESTS_FILE, "").strip()
RECORDER = RequestRecorder(_REQUESTS_FILE) if _REQUESTS_FILE else None


@events.init.add_listener
def _on_init(environment, **_kwargs) -> None:
    if RECORDER is None:
        return
    environment.events.request.add_listener(RECORDER.on_request)
    # flush at every way out: the test ends, the process quits (SIGTERM included), and just before exit
    environment.events.test_stop.add_listener(RECORDER.flush)
    environment.events.quitting.add_listener(RECORDER.flush)
    environment.events.quit.add_listener(RECORDER.flush)
    gevent.spawn(RECORDER.run_flusher)


class InferenceUser(FastHttpUser):
    """A closed-loop user: send an inference request, wait for the answer, think, repeat."""

    wait_time = constant(THINK_TIME_S)
    network_timeout = TIMEOUT_S
    connection_timeout = TIMEOUT_S
    _bodies = itertools.cycle(BODIES)

    @task
    def infer(self) -> None:
        self.client.post(INFER_PATH, data=next(self._bodies), headers=HEADERS, name=INFER_PATH,
                         context={"intended_s": time.time()})


class ProfileShape(LoadTestShape):
    """Base of the profile shapes: user counts over time from `harness.load.profiles.target_users`."""

    abstract = True
    profile: LoadProfile | None = PROFILE

    def tick(self):
        if self.profile is None:
            return None
        return target_users(self.profile, self.get_run_time())


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


SHAPES = {"steady": SteadyShape, "ramp": RampShape, "step": StepShape, "spike": SpikeShape, "soak": SoakShape}

# Locust uses the (first) non-abstract LoadTestShape among this module's globals. Exposing exactly one,
# chosen from the profile, keeps plain `locust -f` (no profile: no shape) and the harness both working.
if PROFILE is not None:
    HarnessShape = type("HarnessShape", (SHAPES[PROFILE.kind],), {"abstract": False, "__module__": __name__})
