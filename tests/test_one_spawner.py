"""One spawner, one signal module: no module of `harness` starts a process, changes its session or process
group, or installs a signal handler except `harness.processes` and `harness.signals`; a blocking
`subprocess.run`-style call elsewhere is bounded by a timeout.

Read from the source (every module, every function body), so a new raw ``subprocess.Popen`` or
``signal.signal`` anywhere in the package fails here, naming the file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "harness"

# what only the spawner may do: start a process its own way, or set a session / process group
SPAWNING = {
    ("subprocess", "Popen"), ("os", "fork"), ("os", "forkpty"), ("os", "setsid"), ("os", "setpgid"),
    ("os", "killpg"), ("os", "system"), ("os", "popen"), ("os", "posix_spawn"), ("os", "posix_spawnp"),
    ("os", "execv"), ("os", "execve"), ("os", "execvp"), ("asyncio", "create_subprocess_exec"),
    ("asyncio", "create_subprocess_shell"), ("pty", "spawn"),
}
SPAWN_KEYWORDS = {"start_new_session", "preexec_fn", "process_group"}
SIGNALLING = {("signal", "signal"), ("signal", "siginterrupt"), ("signal", "set_wakeup_fd"), ("signal", "pthread_sigmask")}
BLOCKING_RUNS = {("subprocess", "run"), ("subprocess", "call"), ("subprocess", "check_call"),
                 ("subprocess", "check_output")}
ALLOWED = {"harness/processes.py": SPAWNING, "harness/signals.py": SIGNALLING}


def offences(source: str, where: str) -> list[str]:
    """Return ``where:line what`` for every forbidden use in ``source`` (a module at path ``where``)."""
    allowed = ALLOWED.get(where, set())
    tree = ast.parse(source)
    aliases: dict[str, tuple[str, str]] = {}  # from subprocess import Popen as P -> P: (subprocess, Popen)
    modules: dict[str, str] = {}  # import subprocess as sp -> sp: subprocess
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                modules[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                aliases[alias.asname or alias.name] = (node.module, alias.name)
                if (node.module, alias.name) in (SPAWNING | SIGNALLING) - allowed:
                    found.append(f"{where}:{node.lineno} imports {node.module}.{alias.name}")
            if node.module == "multiprocessing" or node.module.startswith("multiprocessing."):
                found.append(f"{where}:{node.lineno} imports multiprocessing")
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):  # calls only: ``proc: subprocess.Popen`` as a type is no spawn
            for keyword in node.keywords:
                if keyword.arg in SPAWN_KEYWORDS and where != "harness/processes.py":
                    found.append(f"{where}:{node.lineno} passes {keyword.arg}=")
            func = node.func
            called = None
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in modules:
                called = (modules[func.value.id], func.attr)
            elif isinstance(func, ast.Name) and func.id in aliases:
                called = aliases[func.id]
            if called in (SPAWNING | SIGNALLING) - allowed:
                found.append(f"{where}:{node.lineno} calls {'.'.join(called)}")
            if called in BLOCKING_RUNS and not any(k.arg == "timeout" for k in node.keywords):
                found.append(f"{where}:{node.lineno} calls {'.'.join(called)} without a timeout")
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "multiprocessing" or alias.name.startswith("multiprocessing."):
                    found.append(f"{where}:{node.lineno} imports multiprocessing")
    return sorted(set(found))


def test_only_the_spawner_starts_processes_and_only_the_signal_module_installs_handlers():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE.parent).as_posix()
        found += offences(path.read_text(encoding="utf-8"), where)
    assert found == [], "\n".join(found)


def test_both_homes_exist_and_are_the_ones_allowed():
    processes = (PACKAGE / "processes.py").read_text(encoding="utf-8")
    signals = (PACKAGE / "signals.py").read_text(encoding="utf-8")
    assert "subprocess.Popen(" in processes and "os.killpg(" in processes
    assert "signal.signal(" in signals
    assert offences(processes, "harness/processes.py") == []
    assert offences(signals, "harness/signals.py") == []


@pytest.mark.parametrize(("source", "what"), [
    ("import subprocess\nsubprocess.Popen(['x'])\n", "calls subprocess.Popen"),
    ("import subprocess as sp\ndef f():\n    return sp.Popen(['x'])\n", "calls subprocess.Popen"),
    ("from subprocess import Popen\nPopen(['x'])\n", "imports subprocess.Popen"),
    ("import os\nos.setsid()\n", "calls os.setsid"),
    ("import os\nos.killpg(1, 9)\n", "calls os.killpg"),
    ("import signal\nsignal.signal(signal.SIGINT, print)\n", "calls signal.signal"),
    ("from signal import signal as s\ns(2, print)\n", "imports signal.signal"),
    ("import subprocess\nsubprocess.run(['git'], start_new_session=True, timeout=5)\n", "passes start_new_session="),
    ("import subprocess\nsubprocess.run(['git'])\n", "calls subprocess.run without a timeout"),
    ("import asyncio\nasyncio.create_subprocess_exec('x')\n", "calls asyncio.create_subprocess_exec"),
    ("import multiprocessing\n", "imports multiprocessing"),
])
def test_each_forbidden_use_is_found_elsewhere_than_its_home(source, what):
    found = offences(source, "harness/load/anything.py")
    assert any(what in line for line in found), found


def test_what_is_allowed_elsewhere_is_not_reported():
    source = ("import os, signal, subprocess\n"
              "os.kill(1, signal.SIGTERM)\n"  # a fault, or a replica's cgroup swept: a signal, not a spawn
              "subprocess.run(['git'], capture_output=True, timeout=5)\n"
              "signal.getsignal(signal.SIGINT)\n"
              "proc: subprocess.Popen | None = None\n")
    assert offences(source, "harness/chaos/anything.py") == []
