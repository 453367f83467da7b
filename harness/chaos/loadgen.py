"""Load that runs in the background of a chaos run, for as long as the run needs, then stops.

`harness.load.rate.run_rate` and `harness.load.locust_runner.run_locust` run a load for a known
duration and block until it ends. A chaos run does not know its length in advance (it measures until
recovery), so this starts the same generator processes (the rate worker ``python -m
harness.load.rate`` or the harness's locustfile under Locust, through `harness.processes`)
for an upper bound of time, and stops them once the measurement is over. Either way the generator
writes ``requests.csv`` (`harness.request_records.RequestRecord`), the per-request data recovery is measured
from. Locust is never imported here.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable, Literal

from harness.config import DEFAULT_MODEL
from harness.errors import HarnessError
from harness import processes
from harness.paths import resolve_path
from harness.request_records import REQUESTS_FILE, RequestRecord, read_records
from harness.signals import interrupts_held
from harness.validation import validate_model

__all__ = ["FLUSH_S", "BackgroundLoad"]

_START_TIMEOUT_S = 30.0  # Locust's imports take seconds on a busy machine
FLUSH_S = 1.2  # both generators flush records about once a second


class BackgroundLoad:
    """A load generator process started now and stopped when told (or at ``max_duration_s``).

    ``kind`` "rate": open-loop at ``rate_per_s``; "locust": ``users`` steady Locust users. Records go
    to ``<out_dir>/requests.csv``; ``out_dir`` is resolved first, so the generator (which runs in it)
    is handed absolute paths only. ``protocol`` (`harness.protocolspec.ProtocolSettings`) is what it sends,
    default oip-v2 to ``model``. `start` returns once the first record is written; `stop` returns
    every record. Raises ConfigError for an empty ``out_dir``, HarnessError when the generator does not start.
    """

    def __init__(
        self,
        kind: Literal["rate", "locust"],
        host: str,
        out_dir: str | Path,
        *,
        max_duration_s: float,
        rate_per_s: float = 20.0,
        users: int = 2,
        model: str = DEFAULT_MODEL,
        timeout_s: float = 5.0,
        cpus: Iterable[int] | None = None,
        protocol: Any = None,
    ) -> None:
        self.kind = kind
        self.protocol = protocol  # harness.protocolspec.ProtocolSettings; None: oip-v2 to ``model``
        self.host = host
        self.out_dir = resolve_path(out_dir, "out_dir")
        self.max_duration_s = float(max_duration_s)
        self.rate_per_s = float(rate_per_s)
        self.users = int(users)
        self.model = model
        self.timeout_s = float(timeout_s)
        self.cpus = processes.validate_cpus(cpus)
        self.requests_path = self.out_dir / REQUESTS_FILE
        self.log_path = self.out_dir / f"{kind}.log"
        self._proc = None
        self.exit_code: int | None = None

    def _argv_env(self) -> tuple[list[str], dict[str, str]]:
        """The generator's command, from the load package's one builder of each (`rate_command`, `locust_command`)."""
        if self.kind == "rate":
            from harness.load.rate import RateConfig, rate_command

            config = validate_model(RateConfig, {
                "host": self.host, "rate_rps": self.rate_per_s, "duration_s": self.max_duration_s,
                "model": self.model, "timeout_s": self.timeout_s, "protocol": self.protocol,
            }, source="chaos load")
            return rate_command(config, self.out_dir), {}
        from harness.load.locust_runner import locust_command
        from harness.load.profiles import build_profile

        profile = build_profile("steady", self.max_duration_s, users=self.users, model=self.model,
                                request_timeout_s=self.timeout_s, protocol=self.protocol)
        return locust_command(self.host, profile, self.out_dir, stop_timeout_s=self.timeout_s)

    def start(self) -> "BackgroundLoad":
        """Start the generator; return self once it has recorded its first request."""
        return self.spawn().wait_started()

    def spawn(self) -> "BackgroundLoad":
        """Start the generator process without waiting for it (see `wait_started`)."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.requests_path.unlink(missing_ok=True)
        argv, env = self._argv_env()
        with interrupts_held():  # an interrupt must find the child recorded, for `stop` to end it
            self._proc = processes.spawn(argv, cpus=self.cpus, env=env, log_path=self.log_path, cwd=self.out_dir)
        return self

    def wait_started(self) -> "BackgroundLoad":
        """Return self once the generator has recorded a request (failed ones count); raise HarnessError
        (after stopping it) when it exits or records nothing within the start timeout."""
        deadline = time.monotonic() + _START_TIMEOUT_S + FLUSH_S
        while not (self.requests_path.exists() and self.requests_path.stat().st_size > 0):
            if self._proc is None or self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise HarnessError(f"the {self.kind} load generator did not start: nothing recorded in {self.requests_path} "
                                   f"(exit code {self.exit_code}); log ends:\n{processes.log_tail(self.log_path)}")
            time.sleep(0.05)
        return self

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> list[RequestRecord]:
        """Stop the generator (idempotent) and return its records.

        The rate worker flushes about once a second and not on SIGTERM, so requests of the last
        second before the stop may be missing: stop at least `FLUSH_S` after the window of interest.
        """
        if self._proc is not None and self.exit_code is None:
            self.exit_code = processes.stop(self._proc, grace_s=self.timeout_s + 2.0)
        return self.records()

    def records(self) -> list[RequestRecord]:
        """Return the requests recorded so far."""
        if not self.requests_path.exists():
            return []
        return list(read_records(self.requests_path, RequestRecord))

    def describe(self) -> dict[str, Any]:
        """Return the load's settings for the run record."""
        data: dict[str, Any] = {"kind": self.kind, "model": self.model, "timeout_s": self.timeout_s,
                                "protocol": self.protocol.protocol if self.protocol is not None else "oip-v2"}
        data.update({"rate_per_s": self.rate_per_s} if self.kind == "rate" else {"users": self.users})
        data["exit_code"] = self.exit_code
        return data

    def __enter__(self) -> "BackgroundLoad":
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
