"""Fixtures for the chaos tests.

`fake_apiserver` is the Kubernetes platform tests' recording fake API server, reused (loaded from
their conftest by path) so the Kubernetes chaos activities run against the same fake, not a copy.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_K8S_CONFTEST = Path(__file__).resolve().parents[1] / "platforms" / "kubernetes" / "conftest.py"
_spec = importlib.util.spec_from_file_location("harness_tests_k8s_fake_apiserver", _K8S_CONFTEST)
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)

fake_apiserver = _module.fake_apiserver
