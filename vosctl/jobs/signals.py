"""SIGTERM (and SIGHUP) handled like Ctrl-C: unwind, clean up, exit with the signal's code.

Python turns SIGINT into ``KeyboardInterrupt``, which unwinds through every ``try/finally`` and
``except BaseException`` cleanup (sinks abort, staging folders are removed). SIGTERM, what
``timeout``, ``kill``, systemd and container runtimes send, kills the process by default without
running any of that, leaving hidden temporaries behind. Inside :func:`graceful_termination`
SIGTERM/SIGHUP raise :class:`Terminated` instead, so they take the same cleanup path as Ctrl-C.

Exit codes follow the shell convention 128 + signal number: Ctrl-C (SIGINT) 130, SIGTERM 143,
SIGHUP 129, so a script can tell an interrupted run from a failed one (1) or bad input (2).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType

INTERRUPT_EXIT_CODE = 128 + signal.SIGINT  # 130

# The signals received inside the current graceful_termination block (earliest first). Per process by
# nature, like the signal handlers themselves. Kept because the exception a handler raises can be
# lost: it is raised wherever the main thread happens to be, and C++ extension code that runs a
# Python callback there may clear it (the run then went on to the end and exited 0, its outputs
# committed, after a `kill`) or return a result with it set (a SystemError, exit 1). Round 25 saw
# both, about one SIGTERM in eight, on the AMD Zen 4 machine.
_received: list[int] = []


class Terminated(BaseException):
    """Raised in the main thread when a termination signal arrives (a BaseException, like
    ``KeyboardInterrupt``, so ``except Exception`` handlers do not swallow it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.exit_code = 128 + signum
        self.name = signal.Signals(signum).name


def interrupted_exit_code(error: BaseException) -> int:
    """The exit code for a ``KeyboardInterrupt`` (130) or :class:`Terminated` (128 + signal)."""
    return error.exit_code if isinstance(error, Terminated) else INTERRUPT_EXIT_CODE


def report_interruption(error: BaseException) -> int:
    """One line on stderr for Ctrl-C or a termination signal; returns the exit code."""
    what = f"terminated by {error.name}" if isinstance(error, Terminated) else "interrupted"
    print(f"vosctl: error: {what}; unfinished outputs were removed", file=sys.stderr)
    return interrupted_exit_code(error)


def pending_interruption() -> BaseException | None:
    """The Ctrl-C (``KeyboardInterrupt``) or :class:`Terminated` for the first signal received in
    the current :func:`graceful_termination` block, or None: what a run must stop for even when the
    exception its handler raised never reached the caller."""
    return _interruption(_received[0]) if _received else None


def _interruption(signum: int) -> BaseException:
    """What ``signum`` raises in :func:`graceful_termination`: KeyboardInterrupt for Ctrl-C, else Terminated."""
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


def raise_if_interrupted() -> None:
    """Raise :func:`pending_interruption` if there is one (cheap: for every frame of a job)."""
    stop = pending_interruption()
    if stop is not None:
        raise stop


@contextlib.contextmanager
def _handlers(signums: tuple[int, ...], handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """``handler`` for ``signums`` within the block (an ignored signal stays ignored, e.g. under nohup)."""
    previous = {signum: signal.getsignal(signum) for signum in signums}
    for signum in signums:
        if previous[signum] is not signal.SIG_IGN:
            signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old if old is not None else signal.SIG_DFL)


@contextlib.contextmanager
def graceful_termination(signums: tuple[int, ...] = (signal.SIGTERM, signal.SIGHUP)) -> Iterator[None]:
    """Within the block, ``signums`` raise :class:`Terminated` in the main thread.

    After the first signal (or Ctrl-C) further SIGINT/SIGTERM/SIGHUP are ignored until the block
    ends, so a second ``kill`` or an impatient second Ctrl-C cannot cut the cleanup short and
    leave temporaries behind (SIGKILL still ends the process at once). Outside the main thread
    (signal handlers can only be set there) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handled = tuple(dict.fromkeys((*signums, signal.SIGINT)))

    def ignore_further() -> None:
        for signum in handled:
            signal.signal(signum, signal.SIG_IGN)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        ignore_further()
        _received.append(signum)
        raise _interruption(signum)

    _received.clear()
    try:
        with _handlers(handled, on_signal):
            yield
    finally:
        _received.clear()


@contextlib.contextmanager
def signals_deferred(signums: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)) -> Iterator[None]:
    """Hold Ctrl-C / SIGTERM / SIGHUP back until the block is done (they arrive right after it).

    For the few renames that move finished outputs into place: interrupted half-way, some outputs
    would be new and others missing. A signal that arrives inside the block is recorded and handed
    to the handler that was in place once the block is done, so the run still stops, with a
    consistent set of outputs. (Blocking with ``pthread_sigmask`` is not enough: it only covers the
    calling thread, and a process signal is delivered to any thread that does not block it, such as
    torch's or a decoder's worker threads, after which Python runs the handler in the main thread.)
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {signum: signal.getsignal(signum) for signum in signums}

    def record(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    with _handlers(signums, record):
        yield
    if received:
        signum = received[0]
        handler = previous[signum]
        if callable(handler):
            handler(signum, None)  # e.g. raises Terminated / KeyboardInterrupt
        elif handler == signal.SIG_DFL:
            os.kill(os.getpid(), signum)  # the default action, now that the block is done
