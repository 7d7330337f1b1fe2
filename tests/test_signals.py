"""vosctl.jobs.signals: SIGTERM unwinds like Ctrl-C; signals held back while outputs are committed."""

from __future__ import annotations

import os
import signal

import pytest

from vosctl.jobs.signals import Terminated, graceful_termination, interrupted_exit_code, signals_deferred


def test_sigterm_raises_terminated_and_handlers_are_restored() -> None:
    before = signal.getsignal(signal.SIGTERM)
    cleaned = []
    with pytest.raises(Terminated) as info, graceful_termination():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs between bytecodes
                pass
        finally:
            cleaned.append(True)
    assert cleaned == [True]
    assert info.value.signum == signal.SIGTERM and interrupted_exit_code(info.value) == 143
    assert interrupted_exit_code(KeyboardInterrupt()) == 130
    assert signal.getsignal(signal.SIGTERM) == before


def test_signals_are_deferred_until_the_commit_is_done() -> None:
    done = []
    with pytest.raises(Terminated), graceful_termination():
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):
                pass
            done.append("all outputs moved")  # not interrupted half-way
        for _ in range(1000):
            pass
    assert done == ["all outputs moved"]


def test_deferral_holds_when_another_thread_receives_the_signal() -> None:
    """A process signal may land on any thread (torch, decoder threads); it must still wait."""
    import threading

    done = []
    go = threading.Event()

    def send() -> None:
        go.wait()
        os.kill(os.getpid(), signal.SIGTERM)

    # Started before the block, so this thread does not inherit any signal mask the block sets.
    sender = threading.Thread(target=send)
    sender.start()
    with pytest.raises(Terminated), graceful_termination():
        with signals_deferred():
            go.set()
            sender.join()
            for _ in range(100_000):
                pass
            done.append("all outputs moved")
        for _ in range(1000):
            pass
    assert done == ["all outputs moved"]
