"""The harness's one error hierarchy.

Every error carries the exit code the CLI turns it into (as click does): only the outermost layer
(`harness.cli`, `harness.pytest_plugin`) prints messages and exits. Third-party exceptions are
translated where they enter the harness and chained with ``from``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "EXIT_OK",
    "EXIT_VERDICT_FAILED",
    "EXIT_USAGE",
    "EXIT_RUNTIME",
    "EXIT_INTERRUPTED",
    "HarnessError",
    "ConfigError",
    "UsageError",
    "VerdictFailed",
    "ModelIntegrityError",
    "DeploymentError",
    "PlatformUnavailable",
]

EXIT_OK = 0
EXIT_VERDICT_FAILED = 1  # an SLA tier missed, a regression found, a preflight requirement failed
EXIT_USAGE = 2  # bad flag, config, spec or experiment file
EXIT_RUNTIME = 3  # the harness could not do the job (deployment never became ready, ...)
EXIT_INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, as a shell reports a command the signal ended


class HarnessError(Exception):
    """Base of every error the harness raises on purpose."""

    exit_code = EXIT_RUNTIME


class UsageError(HarnessError):
    """Bad command-line usage."""

    exit_code = EXIT_USAGE


class ConfigError(HarnessError):
    """A config, spec or experiment value is invalid; the message names the field and the value."""

    exit_code = EXIT_USAGE

    def __init__(self, field: str, value: Any, reason: str, *, source: str | None = None) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{field}={value!r}: {reason}")


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
