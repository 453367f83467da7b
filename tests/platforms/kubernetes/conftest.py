"""Fixtures for the Kubernetes platform tests.

`fake_apiserver` is the recording fake Kubernetes API server of `fake_apiserver.py` (shared with the
chaos tests): the real `kubernetes` client and chaostoolkit-kubernetes talk to it through a
kubeconfig file, and every request is recorded so tests can derive the RBAC those requests need.

`checkov_bin` installs checkov once into its own virtualenv (its pins would downgrade packages of
ours), or skips saying why.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .fake_apiserver import fake_apiserver  # noqa: F401  (the fixture, for these tests)

CHECKOV_VERSION = "3.3.30"
CHECKOV_VENV = Path(os.environ.get("HARNESS_CHECKOV_VENV", Path.home() / ".cache" / "harness" / f"checkov-{CHECKOV_VERSION}"))


def _install_checkov() -> Path:
    checkov = CHECKOV_VENV / "bin" / "checkov"
    done = CHECKOV_VENV / ".complete"  # written last: a half-made venv is rebuilt
    if done.exists():
        return checkov
    CHECKOV_VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(CHECKOV_VENV.parent / ".checkov.lock", "a") as lock:  # concurrent sessions install once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(CHECKOV_VENV, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(CHECKOV_VENV)], check=True, capture_output=True, timeout=120)
            subprocess.run([str(CHECKOV_VENV / "bin" / "pip"), "install", "--quiet", f"checkov=={CHECKOV_VERSION}"],
                           check=True, capture_output=True, timeout=600)
            done.write_text(CHECKOV_VERSION)
    return checkov


@pytest.fixture(scope="session")
def checkov_bin() -> Path:
    """Return the checkov executable, installing it once into its own virtualenv; skip if impossible."""
    try:
        return _install_checkov()
    except (subprocess.SubprocessError, OSError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        pytest.skip(f"checkov {CHECKOV_VERSION} could not be installed into {CHECKOV_VENV}: {exc} {detail[-300:]!r}")
