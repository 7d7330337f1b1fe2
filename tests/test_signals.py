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


def swallowed_sigterm() -> None:
    """SIGTERM whose exception is lost, as when C++ extension code runs the handler and clears it."""
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):
            pass
    except Terminated:
        pass


def test_a_swallowed_signal_still_stops_the_run() -> None:
    from vosctl.jobs.signals import pending_interruption, raise_if_interrupted

    with graceful_termination():
        raise_if_interrupted()  # nothing received: nothing raised
        assert pending_interruption() is None
        swallowed_sigterm()
        stop = pending_interruption()
        assert isinstance(stop, Terminated) and stop.signum == signal.SIGTERM
        with pytest.raises(Terminated):
            raise_if_interrupted()
    assert pending_interruption() is None  # a new block starts clean


@pytest.mark.parametrize("after", ["returns", "system-error"])
def test_the_cli_reports_a_signal_whose_exception_was_lost_or_replaced(monkeypatch, capsys, after) -> None:
    """Both ways round 25 saw a SIGTERM go astray: the run went on and returned 0, or the extension
    returned with the exception set (SystemError). Either way: the one-line report and exit 143."""
    import vosctl.jobs.segment as segment

    def run(options) -> int:
        swallowed_sigterm()
        if after == "system-error":
            raise SystemError("<built-in method> returned a result with an exception set")
        return 0

    monkeypatch.setattr(segment, "_run_segment_cli", run)
    assert segment.run_segment_cli(segment.SegmentOptions(inputs=["x.mp4"])) == 143
    assert capsys.readouterr().err.strip().splitlines() == [
        "vosctl: error: terminated by SIGTERM; unfinished outputs were removed"
    ]
    # Without a signal, an error is an error.
    monkeypatch.setattr(segment, "_run_segment_cli", lambda options: (_ for _ in ()).throw(SystemError("bug")))
    with pytest.raises(SystemError, match="bug"):
        segment.run_segment_cli(segment.SegmentOptions(inputs=["x.mp4"]))
