"""Decode ahead of compute: a bounded background reader for the CUDA loop.

On a GPU the network no longer dominates, and a synchronous decode leaves the GPU idle while the
CPU decodes. :func:`prefetch` pulls items from an iterator in a daemon thread, ``depth`` ahead
(FFmpeg decodes outside the GIL, so it overlaps the main thread's waits on the device). It is a
context manager so the thread has stopped before the source is closed: use it in the same
``with`` statement, after the source, e.g. ``with open_video(p) as source, prefetch(source) as frames:``.

Owner: throughput issue (#9).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

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
