"""The package's public surface: `__all__` resolves, and importing it (or rendering) pulls in neither
the kubernetes client library nor torch, so `harness render` works fast and without a cluster."""

from __future__ import annotations

import subprocess
import sys

import harness.platforms.kubernetes as k8s


def test_all_names_resolve():
    assert sorted(k8s.__all__) == sorted(set(k8s.__all__))
    for name in k8s.__all__:
        assert getattr(k8s, name) is not None, name


def test_render_imports_neither_the_client_library_nor_torch(tmp_path):
    code = (
        "import sys; from harness.cli import main; "
        f"rc = main(['render', '--out', {str(tmp_path)!r}, '--runner']); "
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('kubernetes', 'torch', 'locust')); "
        "print(rc, heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "0 []"
