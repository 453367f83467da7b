"""The locustfile under plain `locust -f`, and its shape selection. Locust runs only in subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.load.locust_runner import LOCUSTFILE
from harness.load.profiles import ENV_PROFILE, ENV_REQUESTS_FILE, LoadProfile, build_profile, target_users
from harness.request_records import RequestRecord, read_records

RUN_LIMIT_S = 90


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (ENV_PROFILE, ENV_REQUESTS_FILE)}
    env.update(extra)
    return env


@pytest.mark.slow
def test_plain_locust_runs_the_locustfile_and_records_every_request(standin, tmp_path):
    requests_csv = tmp_path / "requests.csv"
    argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--host", standin.url, "--headless",
            "-u", "4", "-r", "4", "-t", "3s", "--csv", str(tmp_path / "st"), "--json-file", str(tmp_path / "summary"),
            "--only-summary"]
    done = subprocess.run(argv, env=_env(**{ENV_REQUESTS_FILE: str(requests_csv)}), cwd=tmp_path,
                          capture_output=True, text=True, timeout=RUN_LIMIT_S)
    assert done.returncode == 0, done.stderr[-2000:]
    entries = json.loads((tmp_path / "summary.json").read_text())
    locust_count = sum(e["num_requests"] for e in entries)
    records = list(read_records(requests_csv, RequestRecord))
    assert locust_count > 0
    assert len(records) == locust_count
    assert all(r.source == "locust" and r.status == 200 and r.ok for r in records)
    assert all(r.latency_ms >= 0 and r.intended_s <= r.sent_s + 1e-3 for r in records)
    assert (tmp_path / "st_stats.csv").exists()  # Locust's own CSVs are kept alongside
    assert "locust" not in sys.modules


SHAPE_PROBE = textwrap.dedent(
    """
    import json, sys
    from locust.util.load_locustfile import load_locustfile
    users, shapes = load_locustfile(sys.argv[1])
    out = {"users": sorted(users), "shapes": [type(s).__name__ for s in shapes], "ticks": []}
    if shapes:
        shape = shapes[0]
        for t in json.loads(sys.argv[2]):
            shape.get_run_time = lambda t=t: t
            out["ticks"].append(shape.tick())
        out["base"] = [c.__name__ for c in type(shape).__mro__[1:3]]
    print(json.dumps(out))
    """
)


def _probe_shapes(profile: LoadProfile | None, times: list[float]) -> dict:
    env = _env() if profile is None else _env(**{ENV_PROFILE: profile.to_env()})
    done = subprocess.run([sys.executable, "-c", SHAPE_PROBE, str(LOCUSTFILE), json.dumps(times)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_without_a_profile_no_shape_is_visible_so_plain_options_apply():
    found = _probe_shapes(None, [])
    assert found["users"] == ["InferenceUser"]
    assert found["shapes"] == []


@pytest.mark.slow
def test_a_profile_exposes_exactly_its_shape_and_it_ticks_the_profile():
    times = [0.0, 1.0, 2.5, 4.0, 5.5, 7.9, 8.0]
    profile = build_profile("spike", 8, users=8)
    found = _probe_shapes(profile, times)
    assert found["shapes"] == ["HarnessShape"]
    assert found["base"][0] == "SpikeShape"
    expected = [None if (tick := target_users(profile, t)) is None else list(tick) for t in times]
    assert found["ticks"] == expected
    assert found["ticks"][-1] is None  # the shape ends the test at duration_s


def test_the_harness_import_graph_never_imports_locust_or_gevent():
    code = textwrap.dedent(
        """
        import sys, importlib, pkgutil
        import harness, harness.load, harness.cli
        for info in pkgutil.iter_modules(harness.load.__path__):
            if info.name != "locustfile":
                importlib.import_module("harness.load." + info.name)
        importlib.import_module("harness.cli.load")
        from harness.cli import build_parser
        build_parser()
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("locust", "gevent")))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
