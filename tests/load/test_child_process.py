"""Children of the load layer: an interrupt while one starts never orphans it, and it dies with its parent."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading

import pytest

from harness.load import child_process

from .interrupts import SLEEPER, Interrupt, interrupt_after_fork, is_gone, kill_quietly, sigint_raises  # noqa: F401


def test_an_interrupt_while_spawning_stops_the_child_before_it_is_raised(interrupt_after_fork):
    with pytest.raises(Interrupt):
        child_process.spawn(SLEEPER)
    [pid] = interrupt_after_fork
    assert is_gone(pid), "the child outlived the interrupted spawn"


def test_with_interrupts_held_the_handle_is_recorded_before_the_interrupt_is_raised(interrupt_after_fork):
    recorded: dict[str, subprocess.Popen] = {}
    with pytest.raises(Interrupt):
        with child_process.interrupts_held():
            recorded["proc"] = child_process.spawn(SLEEPER)
    proc = recorded["proc"]
    try:
        assert interrupt_after_fork == [proc.pid] and proc.poll() is None  # kept, for the teardown to stop
    finally:
        child_process.stop(proc, grace_s=0)
    assert is_gone(proc.pid)


def test_interrupts_held_delivers_each_signal_once_at_the_end_and_restores_the_handler(sigint_raises):
    reached_end_of_block = False
    with pytest.raises(Interrupt):
        with child_process.interrupts_held():
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
            reached_end_of_block = True
    assert reached_end_of_block
    assert signal.getsignal(signal.SIGINT) is sigint_raises
    with child_process.interrupts_held():  # nothing arrived: nothing raised
        pass


def test_interrupts_held_outside_the_main_thread_changes_nothing(sigint_raises):
    seen: list[object] = []

    def run() -> None:
        with child_process.interrupts_held():
            seen.append(signal.getsignal(signal.SIGINT))

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(30)
    assert seen == [sigint_raises]


@pytest.mark.slow
def test_a_child_dies_with_its_parent_when_the_parent_is_sigkilled():
    # the parent spawns a child through child_process, prints its pid, then waits to be killed
    code = ("import sys, time\n"
            "from harness.load import child_process\n"
            f"proc = child_process.spawn({SLEEPER!r})\n"
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
