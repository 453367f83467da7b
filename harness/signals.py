"""The harness's one home for signal handlers: every handler is installed here, for a block, and put back.

What a signal does depends on where the harness is:

- while a command runs (`interrupting`): SIGINT, and SIGTERM wherever a command tears down on it, raise
  KeyboardInterrupt (or the caller's subclass of it) in the main thread, so the ``finally`` blocks and
  context managers on the way out tear everything down, as Ctrl-C does;
- while something must not be broken (a teardown, the report being written, a child being started):
  the signal is only noted (`on_signals` with a noting handler) or held and passed on once the block
  ends (`interrupts_held`);
- before the commands are imported (`note_interrupts`, `harness.__main__`): SIGINT is only noted, and
  `answer_interrupts` hands it back to Python's KeyboardInterrupt once that is done.

Python runs signal handlers only in the main thread and lets only the main thread install them, so
outside it the context managers here change nothing.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from types import FrameType
from typing import Any

__all__ = ["INTERRUPTS", "Handler", "on_signals", "interrupting", "sigterm_like_ctrl_c", "interrupts_held",
           "note_interrupts", "answer_interrupts"]

INTERRUPTS = (signal.SIGINT, signal.SIGTERM)  # what ends a run early: Ctrl-C, and a polite kill (CI, systemd)

Handler = Callable[[int, FrameType | None], Any]


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def on_signals(signals: Iterable[int], handler: Handler) -> Iterator[None]:
    """Run ``handler`` on each of ``signals`` for the block; put the previous handlers back after it.

    Outside the main thread (where Python neither runs nor installs handlers) it changes nothing. A
    previous handler set outside Python (`signal.getsignal` says None) cannot be put back: the default
    action takes its place.
    """
    if not _in_main_thread():
        yield
        return
    saved: dict[int, Any] = {}
    try:
        for sig in dict.fromkeys(signals):
            saved[sig] = signal.signal(sig, handler)
        yield
    finally:
        for sig, previous in saved.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)


def interrupting(signals: Iterable[int] = INTERRUPTS, *, exception: type[KeyboardInterrupt] = KeyboardInterrupt,
                 before: Callable[[], None] | None = None) -> contextlib.AbstractContextManager[None]:
    """Return a context manager under which each of ``signals`` raises ``exception`` (its message: the
    signal's name) in the main thread, after calling ``before`` (e.g. to record that the run was interrupted)."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        if before is not None:
            before()
        raise exception(signal.Signals(signum).name)

    return on_signals(signals, handler)


def sigterm_like_ctrl_c() -> contextlib.AbstractContextManager[None]:
    """Return a context manager under which SIGTERM tears down as Ctrl-C does (it raises KeyboardInterrupt)."""
    return interrupting((signal.SIGTERM,))


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM off for the block, then pass each one that arrived to its handler.

    The handler runs (and may raise) as the block ends, so whatever the block recorded is recorded
    first (a child's handle, for the teardown to stop it). Each signal is passed on once however often
    it arrived. A handler set outside Python cannot be put back, so its signal is not held. Outside the
    main thread nothing can interrupt the block and this does nothing.
    """
    if not _in_main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in INTERRUPTS}
    held = [sig for sig, handler in previous.items() if handler is not None]
    arrived: list[int] = []
    try:
        with on_signals(held, lambda signum, _frame: arrived.append(signum)):
            yield
    finally:
        for sig in dict.fromkeys(arrived):
            _deliver(sig, previous[sig])


def _deliver(sig: int, handler: Any) -> None:
    if callable(handler):
        handler(sig, None)
    elif handler == signal.SIG_DFL:
        signal.raise_signal(sig)  # the default action: the process ends (its children with it)
    # SIG_IGN: dropped, as it would have been


def note_interrupts() -> list[int]:
    """Make SIGINT only note that it arrived, until `answer_interrupts`; return the list it appends to.

    For `harness.__main__`, before the commands are imported: a KeyboardInterrupt raised inside an
    import can end in a traceback, or be swallowed by the library being imported.
    """
    noted: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, _frame: noted.append(signum))
    return noted


def answer_interrupts() -> None:
    """Give SIGINT back to Python's own handler (it raises KeyboardInterrupt), after `note_interrupts`."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
