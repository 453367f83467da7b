"""Fixtures for the chaos tests.

`fake_apiserver` is the Kubernetes platform tests' recording fake API server (a shared test module),
so the Kubernetes chaos activities run against the same fake, not a copy.
"""

from __future__ import annotations

from ..platforms.kubernetes.fake_apiserver import fake_apiserver  # noqa: F401  (the fixture, for these tests)
