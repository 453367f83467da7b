"""The one spawner: an interrupt while a child starts never orphans it, every child leads its own session,
is pinned where asked, dies with its parent, and `stop` ends it and its group within a bound."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from harness import processes
from harness.errors import ConfigError, HarnessError

from .load.interrupts import SLEEPER, Interrupt, interrupt_after_fork, is_gone, kill_quietly, sigint_raises  # noqa: F401


def test_an_interrupt_while_spawning_stops_the_child_before_it_is_raised(interrupt_after_fork):
    with pytest.raises(Interrupt):
        processes.spawn(SLEEPER)
    [pid] = interrupt_after_fork
    assert is_gone(pid), "the child outlived the interrupted spawn"


def test_with_interrupts_held_the_handle_is_recorded_before_the_interrupt_is_raised(interrupt_after_fork):
    from harness.signals import interrupts_held

    recorded: dict[str, subprocess.Popen] = {}
    with pytest.raises(Interrupt):
        with interrupts_held():
            recorded["proc"] = processes.spawn(SLEEPER)
    proc = recorded["proc"]
    try:
        assert interrupt_after_fork == [proc.pid] and proc.poll() is None  # kept, for the teardown to stop
    finally:
        processes.stop(proc, grace_s=0)
    assert is_gone(proc.pid)


def test_a_child_leads_its_own_session_and_gets_the_environment_asked_for(monkeypatch):
    monkeypatch.setenv("HARNESS_TEST_DROPPED", "1")
    monkeypatch.setenv("HARNESS_TEST_KEPT", "kept")
    code = ("import json, os, sys\n"
            "print(json.dumps([os.getsid(0), os.getpgid(0), os.environ.get('HARNESS_TEST_DROPPED'),\n"
            "                  os.environ.get('HARNESS_TEST_KEPT'), os.environ.get('HARNESS_TEST_ADDED')]))\n")
    proc = processes.spawn([sys.executable, "-c", code], env={"HARNESS_TEST_DROPPED": None, "HARNESS_TEST_ADDED": "added"},
                           stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate(timeout=30)
    sid, pgid, dropped, kept, added = json.loads(out)
    assert sid == pgid == proc.pid != os.getsid(0)
    assert (dropped, kept, added) == (None, "kept", "added")


def test_a_program_that_cannot_start_is_a_harness_error_naming_it(tmp_path):
    missing = str(tmp_path / "no-such-program")
    with pytest.raises(HarnessError, match="cannot start .*no-such-program"):
        processes.spawn([missing])


def test_validate_cpus_names_the_field_and_the_cpu():
    allowed = sorted(os.sched_getaffinity(0))
    assert processes.validate_cpus(None) is None
    assert processes.validate_cpus([allowed[0], allowed[0]]) == (allowed[0],)
    with pytest.raises(ConfigError) as info:
        processes.validate_cpus([4096], field="generator_cpus")
    assert info.value.field == "generator_cpus" and "4096" in str(info.value)
    with pytest.raises(ConfigError):
        processes.validate_cpus([])


@pytest.mark.slow
def test_spawn_pins_and_stop_kills_the_whole_group(tmp_path):
    cpu = sorted(os.sched_getaffinity(0))[-1]
    # a child that ignores SIGTERM and has a grandchild: stop must still clear both
    code = ("import signal, subprocess, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            "time.sleep(60)\n")
    proc = processes.spawn([sys.executable, "-c", code], cpus=[cpu], log_path=tmp_path / "log")
    try:
        deadline = time.monotonic() + 20
        while not psutil.Process(proc.pid).children() and time.monotonic() < deadline:
            time.sleep(0.05)
        grandchildren = psutil.Process(proc.pid).children()
        assert grandchildren
        assert os.sched_getaffinity(proc.pid) == {cpu}
        began = time.monotonic()
        code = processes.stop(proc, grace_s=0.5)
        assert time.monotonic() - began < 5
        assert code == -signal.SIGKILL
        for child in grandchildren:
            assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    finally:
        if proc.poll() is None:
            processes.stop(proc, grace_s=0)


def test_stop_of_an_exited_child_returns_its_code_at_once():
    proc = processes.spawn([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait(30)
    began = time.monotonic()
    assert processes.stop(proc) == 3
    assert time.monotonic() - began < processes.GROUP_CLEAR_S + 1


def test_exit_codes_read_as_a_container_runtime_reports_them():
    assert processes.exit_code_of(-signal.SIGKILL) == 137 and processes.exit_code_of(3) == 3
    assert processes.signal_name(9) == "SIGKILL" and processes.signal_name(1000) == "signal 1000"


@pytest.mark.slow
def test_a_child_dies_with_its_parent_when_the_parent_is_sigkilled():
    # the parent spawns a child through the spawner, prints its pid, then waits to be killed
    code = ("import sys, time\n"
            "from harness import processes\n"
            f"proc = processes.spawn({SLEEPER!r})\n"
            "print(proc.pid, flush=True)\n"
            "time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True)
    child_pid = None
    try:
        line = parent.stdout.readline()  # bounded: the parent sleeps at most 60 s
        assert line.strip().isdigit(), f"the parent printed {line!r}"
        child_pid = int(line)
        assert not is_gone(child_pid, timeout_s=0)
        parent.kill()
        parent.wait(30)
        assert is_gone(child_pid), "the child outlived its SIGKILLed parent"
    finally:
        kill_quietly(parent.pid)
        parent.wait(30)
        parent.stdout.close()
        if child_pid is not None:
            kill_quietly(child_pid)
