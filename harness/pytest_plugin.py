"""The harness's pytest plugin (loaded by the root conftest.py): options, markers, fixtures.

A thin shell over the harness's plain classes, as pytest-benchmark's plugin is: options are read
once here and handed down; the work lives in the layers below.
"""

from __future__ import annotations

import pytest

PROFILES = ("smoke", "nightly")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "chaos and performance harness")
    group.addoption("--harness-profile", choices=PROFILES, default="smoke", help="run profile (default smoke)")
    group.addoption("--harness-platform", choices=("local", "kubernetes"), default="local", help="platform (default local)")
    group.addoption("--harness-report-dir", default=None, help="where run data and the report are written")
    group.addoption("--harness-baseline", default=None, help="a saved run to compare against")
    group.addoption("--harness-tier", default=None, help="the SLA tier scenarios must meet")
