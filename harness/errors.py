"""The harness's one error hierarchy.

Every error carries the exit code the CLI turns it into (as click does): only the outermost layer
(`harness.cli`, `harness.pytest_plugin`) prints messages and exits. Third-party exceptions are
translated where they enter the harness and chained with ``from``.
"""

from __future__ import annotations

import reprlib
from typing import Any

__all__ = [
    "EXIT_OK",
    "EXIT_VERDICT_FAILED",
    "EXIT_USAGE",
    "EXIT_RUNTIME",
    "EXIT_INTERRUPTED",
    "EXIT_BROKEN_PIPE",
    "HarnessError",
    "ConfigError",
    "UsageError",
    "VerdictFailed",
    "ModelIntegrityError",
    "DeploymentError",
    "PlatformUnavailable",
    "RunRecordError",
    "MAX_SHOWN_CHARS",
    "shown_value",
]

EXIT_OK = 0
EXIT_VERDICT_FAILED = 1  # an SLA tier missed, a regression found, a preflight requirement failed
EXIT_USAGE = 2  # bad flag, config, spec or experiment file
EXIT_RUNTIME = 3  # the harness could not do the job (deployment never became ready, ...)
EXIT_INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, as a shell reports a command the signal ended
EXIT_BROKEN_PIPE = 141  # the reader of stdout went away (`| head`): 128 + SIGPIPE, as a shell reports it

MAX_SHOWN_CHARS = 200  # a value quoted in a message; the reason, which code writes, gets more room
_MAX_REASON_CHARS = 1000


class _ShortRepr(reprlib.Repr):
    """`repr` bounded at every level (a huge list or string costs no more than its first elements),
    keeping a dict's own order where `reprlib` would sort it."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 4
        self.maxdict = self.maxlist = self.maxtuple = self.maxset = self.maxfrozenset = self.maxdeque = 20
        self.maxstring = self.maxlong = self.maxother = MAX_SHOWN_CHARS

    def repr_dict(self, x: dict, level: int) -> str:
        if not x:
            return "{}"
        if level <= 0:
            return "{...}"
        items = [f"{self.repr1(k, level - 1)}: {self.repr1(v, level - 1)}" for k, v in list(x.items())[: self.maxdict]]
        return "{" + ", ".join(items) + (", ..." if len(x) > self.maxdict else "") + "}"

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 10_000:  # past int's own limit on conversion to text (4,300 digits)
            return f"<an integer of about {int(x.bit_length() * 0.30103):,} digits>"
        return super().repr_int(x, level)


_SHORT_REPR = _ShortRepr()


def shown_value(value: Any) -> str:
    """Return ``repr(value)`` for a message, at most `MAX_SHOWN_CHARS` characters (longer ones cut, ending "...")."""
    text = _SHORT_REPR.repr(value)
    return text if len(text) <= MAX_SHOWN_CHARS else text[: MAX_SHOWN_CHARS - 3] + "..."


def _one_line(text: str, limit: int) -> str:
    text = " ".join(line.strip() for line in text.splitlines() if line.strip())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class HarnessError(Exception):
    """Base of every error the harness raises on purpose."""

    exit_code = EXIT_RUNTIME


class UsageError(HarnessError):
    """Bad command-line usage."""

    exit_code = EXIT_USAGE


class ConfigError(HarnessError):
    """A config, spec or experiment value is invalid; the message names the field and the value.

    The message is one line: the value is quoted with `shown_value` (long ones cut), the reason's
    line breaks become spaces and it is cut at 1,000 characters. ``value`` keeps the value itself.
    """

    exit_code = EXIT_USAGE

    def __init__(self, field: str, value: Any, reason: str, *, source: str | None = None) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{field}={shown_value(value)}: {_one_line(reason, _MAX_REASON_CHARS)}")


class VerdictFailed(HarnessError):
    """The job ran, and its verdict is a failure (SLA tier missed, regression, preflight failed)."""

    exit_code = EXIT_VERDICT_FAILED

    def __init__(self, message: str, findings: list[str] | None = None) -> None:
        self.findings = list(findings or [])
        text = message if not self.findings else message + "\n" + "\n".join(f"  - {f}" for f in self.findings)
        super().__init__(text)


class ModelIntegrityError(HarnessError):
    """A weights file does not match its manifest (hash, size, or state-dict keys and shapes)."""


class DeploymentError(HarnessError):
    """A deployment could not be created, became unhealthy beyond recovery, or failed to tear down."""


class PlatformUnavailable(HarnessError):
    """The platform asked for is not available here (no cluster configured, no Docker engine, ...)."""


class RunRecordError(HarnessError):
    """A run directory or a JSON file of it cannot be read: missing, corrupt, invalid or from a newer harness."""
