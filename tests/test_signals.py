"""The one home of signal handlers: handlers for a block and put back after it, SIGTERM as Ctrl-C, interrupts
held while something must not be broken, and nothing changed outside the main thread."""

from __future__ import annotations

import signal
import threading

import pytest

from harness.signals import (
    INTERRUPTS, answer_interrupts, interrupting, interrupts_held, note_interrupts, on_signals, sigterm_like_ctrl_c,
)

from .load.interrupts import Interrupt, sigint_raises  # noqa: F401


@pytest.fixture
def handlers_kept():
    """Put SIGINT's and SIGTERM's handlers back after the test, whatever it did."""
    saved = {sig: signal.getsignal(sig) for sig in INTERRUPTS}
    try:
        yield saved
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def test_on_signals_runs_the_handler_in_the_block_and_puts_the_previous_ones_back(handlers_kept):
    seen: list[int] = []
    with pytest.raises(RuntimeError):
        with on_signals(INTERRUPTS, lambda signum, _frame: seen.append(signum)):
            signal.raise_signal(signal.SIGTERM)
            signal.raise_signal(signal.SIGINT)
            raise RuntimeError("the block failed")  # the handlers come back all the same
    assert seen == [signal.SIGTERM, signal.SIGINT]
    assert {sig: signal.getsignal(sig) for sig in INTERRUPTS} == handlers_kept


def test_sigterm_tears_down_like_ctrl_c(handlers_kept):
    torn_down = False
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        with sigterm_like_ctrl_c():
            try:
                signal.raise_signal(signal.SIGTERM)
            finally:
                torn_down = True
    assert torn_down
    assert signal.getsignal(signal.SIGTERM) == handlers_kept[signal.SIGTERM]


def test_interrupting_notes_first_and_raises_the_callers_exception(handlers_kept):
    noted: list[str] = []
    with pytest.raises(Interrupt, match="SIGINT"):
        with interrupting(exception=Interrupt, before=lambda: noted.append("interrupted")):
            signal.raise_signal(signal.SIGINT)
    assert noted == ["interrupted"]


def test_interrupts_held_delivers_each_signal_once_at_the_end_and_restores_the_handler(sigint_raises):
    reached_end_of_block = False
    with pytest.raises(Interrupt):
        with interrupts_held():
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
            reached_end_of_block = True
    assert reached_end_of_block
    assert signal.getsignal(signal.SIGINT) is sigint_raises
    with interrupts_held():  # nothing arrived: nothing raised
        pass


@pytest.mark.parametrize("context", [interrupts_held, lambda: on_signals(INTERRUPTS, signal.SIG_IGN)])
def test_outside_the_main_thread_nothing_changes(sigint_raises, context):
    seen: list[object] = []

    def run() -> None:
        with context():
            seen.append(signal.getsignal(signal.SIGINT))

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(30)
    assert seen == [sigint_raises]


def test_interrupts_noted_before_the_imports_are_answered_later(handlers_kept):
    noted = note_interrupts()
    signal.raise_signal(signal.SIGINT)  # only noted: nothing raised
    assert noted == [signal.SIGINT]
    answer_interrupts()
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
