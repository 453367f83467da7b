"""The measure modules' public surface: every name in __all__ exists, and each defines its terms."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

MODULES = ["percentiles", "stats", "regression", "recovery", "sla", "alerts", "overload", "load_verdict", "token_timeline"]


@pytest.mark.parametrize("name", MODULES)
def test_all_names_exist_and_docstring_defines_terms(name):
    module = importlib.import_module(f"harness.measure.{name}")
    assert module.__all__, name
    for public in module.__all__:
        assert hasattr(module, public), f"{name}.{public}"
    assert "Definitions" in (module.__doc__ or ""), f"{name} docstring should define its terms"


def test_measure_does_not_import_torch_locust_or_pandas():
    code = (
        "import sys\n"
        "import harness.measure.percentiles, harness.measure.stats, harness.measure.recovery, harness.measure.sla\n"
        "heavy = [m for m in ('torch', 'locust', 'gevent', 'pandas', 'matplotlib') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == ""
