"""Overlap I/O with compute: decode ahead (:func:`prefetch`) and write behind (:func:`write_behind`).

Decoding a frame, and writing its PNG mask or overlay frame, cost about as much as a quarter of
segmenting it on the CPU, and a synchronous loop adds them up. Both run in a background thread
instead, bounded a couple of frames ahead or behind: FFmpeg, OpenCV's PNG encoder and numpy
release the GIL, so on a machine with a second core they run beside the network (and on a GPU the
decode overlaps the waits on the device).

:func:`prefetch` pulls items from an iterator in a daemon thread, ``depth`` ahead. It is a
context manager so the thread has stopped before the source is closed: use it in the same
``with`` statement, after the source, e.g. ``with open_video(p) as source, prefetch(source) as frames:``.

:func:`write_behind` runs write calls in one thread, in the order they were submitted, at most
``depth`` pending; the first error a write raises is raised again in the caller (at its next
submit, or when the block ends), and leaving the block (normally or by an error) waits for the
thread, so the outputs are complete, or can be aborted, once it has ended.

Owner: throughput issue (#9).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")
_END = object()


class _Prefetcher(Iterator[T]):
    def __init__(self, iterable: Iterable[T], depth: int) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._run, args=(iter(iterable),), name="vosctl-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, iterator: Iterator[T]) -> None:
        try:
            for item in iterator:
                if not self._put((item, None)):
                    return
            self._put((_END, None))
        except BaseException as error:  # handed to the consumer, raised there
            self._put((_END, error))

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        item, error = self._queue.get()
        if item is _END:
            self._done = True
            if error is not None:
                raise error
            raise StopIteration
        return item

    def close(self) -> None:
        """Stop the reader and wait for it (it finishes the item it is decoding)."""
        self._stop.set()
        self._done = True
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.05)
            except queue.Empty:
                pass
        self._thread.join()


@contextmanager
def prefetch(iterable: Iterable[T], enabled: bool = True, depth: int = 2) -> Iterator[Iterator[T]]:
    """An iterator over ``iterable`` read ``depth`` items ahead in a thread (plain ``iter`` if not enabled)."""
    if not enabled:
        yield iter(iterable)
        return
    reader: _Prefetcher[T] = _Prefetcher(iterable, depth)
    try:
        yield reader
    finally:
        reader.close()


class _WriteBehind:
    """One writer thread; calls run in submission order; errors come back to the submitter."""

    def __init__(self, depth: int) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._error: BaseException | None = None
        self._abandon = False
        self._thread = threading.Thread(target=self._run, name="vosctl-write-behind", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if self._error is not None or self._abandon:
                continue  # keep draining so a blocked submit can never hang
            function, args, kwargs = item
            try:
                function(*args, **kwargs)
            except BaseException as error:  # handed to the submitter
                self._error = error

    def submit(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._raise()
        self._queue.put((function, args, kwargs))

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            self._abandon = True
            raise error

    def close(self, abandon: bool) -> None:
        """Wait for the thread; ``abandon``: skip the writes still queued (the run failed anyway)."""
        self._abandon = self._abandon or abandon
        self._queue.put(_END)
        self._thread.join()
        if not abandon:
            self._raise()


@contextmanager
def write_behind(enabled: bool = True, depth: int = 2) -> Iterator[Callable[..., None]]:
    """A ``submit(function, *args)`` that runs writes in a background thread (directly if not enabled)."""
    if not enabled:

        def run_now(function: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
            function(*args, **kwargs)

        yield run_now
        return
    writer = _WriteBehind(depth)
    try:
        yield writer.submit
    except BaseException:
        writer.close(abandon=True)
        raise
    writer.close(abandon=False)
