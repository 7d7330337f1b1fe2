"""Run many independent tasks: in this process, on N local worker processes, or on Ray.

Every backend has the same contract: ``backend.run(fn, payloads)`` yields ``(index, result)`` in
*completion* order, where ``result`` is ``fn(payload)`` or a :class:`TaskFailed` when the task
could not produce one (its worker died twice, or ``fn`` raised). ``fn`` must be a module-level
function (it is pickled by reference) that reports expected failures in its return value.

Local workers are started with the ``spawn`` method, so no torch/OpenMP state is forked; each
sets its share of the cores (``OMP_NUM_THREADS`` and :func:`vosctl.threads.apply_thread_policy`)
before torch is imported, and keeps what it loads (the model) in :func:`worker_cached` for all
the tasks it runs. A worker that dies mid-task (killed, out of memory, ``os._exit``) is replaced;
its task is retried once on a fresh worker and then reported as failed, while the other tasks go
on. The Ray backend (:mod:`vosctl.jobs.ray_backend`) gives the same behaviour with Ray's retries.
"""

from __future__ import annotations

import collections
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

RETRIES = 1
"""How many times a task whose worker died is started again before it is reported as failed."""


@dataclass
class TaskFailed:
    """A task that produced no result: ``message`` says why (one line)."""

    message: str
    exit_code: int = 1


Progress = Callable[[int, int], None]
"""``on_progress(task_index, frames)``: a running task reports frames done since its last report."""


class Backend(Protocol):
    def run(
        self, fn: Callable[[Any], Any], payloads: list[Any], on_progress: Progress | None = None
    ) -> Iterator[tuple[int, Any]]: ...


# One process-wide cache per worker process: the reason worker processes exist is to keep the
# model loaded across the tasks they run. Keys name what was loaded (model, device, ...).
_CACHE: dict[Any, Any] = {}


def worker_cached(key: Any, factory: Callable[[], Any]) -> Any:
    """``factory()`` the first time ``key`` is asked for in this process, the same object afterwards."""
    if key not in _CACHE:
        _CACHE[key] = factory()
    return _CACHE[key]


# Where report_progress() sends to while a task runs in this process (set by the backend around
# each task; None on a Ray worker, whose tasks report only when they finish).
_REPORTER: Callable[[int], None] | None = None


def report_progress(frames: int) -> None:
    """Called by a running task: ``frames`` more frames are done (cheap; a no-op when nobody listens)."""
    if _REPORTER is not None and frames > 0:
        _REPORTER(frames)


def _set_reporter(reporter: Callable[[int], None] | None) -> None:
    global _REPORTER
    _REPORTER = reporter


def worker_threads() -> int | None:
    """The thread count this worker process was given (None outside a worker)."""
    return _CACHE.get(("threads",))


def threads_per_worker(workers: int, total: int | None = None) -> int:
    """Each worker's share of the cores (threads are split between workers, never multiplied)."""
    from vosctl.threads import share_of_cores

    return share_of_cores(workers, total if total is not None and total > 0 else None)


def _failure(error: BaseException) -> TaskFailed:
    last = traceback.extract_tb(error.__traceback__)[-1:] if error.__traceback__ else []
    where = f" (at {last[0].filename}:{last[0].lineno})" if last else ""
    return TaskFailed(f"{type(error).__name__}: {error}{where}")


class SerialBackend:
    """Every task in this process, one after the other (``--manifest`` without ``--workers``)."""

    def run(
        self, fn: Callable[[Any], Any], payloads: list[Any], on_progress: Progress | None = None
    ) -> Iterator[tuple[int, Any]]:
        for index, payload in enumerate(payloads):
            if on_progress is not None:
                _set_reporter(lambda frames, index=index: on_progress(index, frames))
            try:
                result = fn(payload)
            except Exception as error:  # a bug in one task must not lose the rest of the batch
                result = _failure(error)
            finally:
                _set_reporter(None)
            yield index, result


def _worker_main(conn: Any, threads: int) -> None:
    """A local worker: set the thread policy, then run tasks from ``conn`` until told to stop."""
    # Before torch is imported (it reads these when its OpenMP runtime starts).
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    from vosctl.jobs.signals import Terminated, graceful_termination, pending_interruption
    from vosctl.threads import apply_thread_policy

    _CACHE[("threads",)] = apply_thread_policy(threads)
    while True:
        try:
            message = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if message is None:
            # Nothing is left to flush but the standard streams; skipping the interpreter's
            # teardown (torch's is slow) lets the batch end as soon as its last job is done.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        index, fn, payload = message
        _set_reporter(lambda frames, index=index: conn.send(("progress", index, frames)))
        # Ctrl-C and SIGTERM (the parent stopping a busy worker, a `kill`) unwind the task like Ctrl-C
        # in a single run, so its temporaries are removed; a signal whose exception extension code
        # swallowed is still seen (the job's per-frame raise_if_interrupted, then the check below).
        try:
            with graceful_termination():
                try:
                    result = fn(payload)
                except Exception as error:  # a SystemError may be a swallowed signal: checked next
                    result = _failure(error)
                if pending_interruption() is not None:
                    return
        except (KeyboardInterrupt, Terminated):
            return
        try:
            conn.send((index, result))
        except (BrokenPipeError, OSError):  # the parent is gone
            return


@dataclass
class _Worker:
    process: Any
    conn: Any
    task: int | None = None


class LocalBackend:
    """``workers`` spawned processes, each with ``threads`` threads (default: its share of the cores)."""

    def __init__(self, workers: int, threads: int | None = None) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.workers = workers
        self.threads = threads if threads is not None else threads_per_worker(workers)

    def _start(self, context: Any) -> _Worker:
        parent, child = context.Pipe()
        process = context.Process(target=_worker_main, args=(child, self.threads), daemon=True)
        process.start()
        child.close()
        return _Worker(process, parent)

    def run(
        self, fn: Callable[[Any], Any], payloads: list[Any], on_progress: Progress | None = None
    ) -> Iterator[tuple[int, Any]]:
        import multiprocessing
        from multiprocessing.connection import wait

        if not payloads:
            return
        context = multiprocessing.get_context("spawn")
        pending = collections.deque(range(len(payloads)))
        starts: collections.Counter[int] = collections.Counter()
        pool = [self._start(context) for _ in range(min(self.workers, len(payloads)))]
        remaining = len(payloads)
        try:
            while remaining:
                for slot, worker in enumerate(pool):
                    if worker.task is None and pending:
                        task = pending.popleft()
                        try:
                            worker.conn.send((task, fn, payloads[task]))
                        except (BrokenPipeError, OSError):  # it died while idle: the task never started
                            pending.appendleft(task)
                            worker.conn.close()
                            pool[slot] = self._start(context)
                            continue
                        worker.task = task
                        starts[task] += 1
                busy = [w for w in pool if w.task is not None]
                if not busy:  # only after replacing a worker that died idle: assign again
                    continue
                ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy]))
                for slot, worker in enumerate(pool):
                    if worker.task is None:
                        continue
                    if worker.conn in ready:
                        try:
                            message = worker.conn.recv()
                        except (EOFError, OSError):
                            pass  # died while sending: handled as a death below
                        else:
                            if message[0] == "progress":
                                if on_progress is not None:
                                    on_progress(message[1], message[2])
                                continue
                            index, result = message
                            worker.task = None
                            remaining -= 1
                            yield index, result
                            continue
                    if worker.conn in ready or worker.process.sentinel in ready:
                        worker.process.join(timeout=5)
                        code = worker.process.exitcode
                        task, worker.task = worker.task, None
                        worker.conn.close()
                        pool[slot] = self._start(context)  # a fresh worker for what is left
                        if starts[task] <= RETRIES:
                            pending.appendleft(task)
                        else:
                            remaining -= 1
                            yield (
                                task,
                                TaskFailed(f"its worker process died (exit code {code}) and died again on the retry"),
                            )
        finally:
            _stop(pool)


def _stop(pool: list[_Worker]) -> None:
    """Idle workers are told to exit. Busy ones only remain when the batch was interrupted
    (Ctrl-C, SIGTERM, an exception in the caller): they get SIGINT, so the job in progress
    removes its temporaries as a Ctrl-C would, and are sent SIGTERM if they do not stop (which
    unwinds a task the same way: each runs under graceful_termination in its worker)."""
    import signal

    for worker in pool:
        try:
            worker.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
    busy = [w for w in pool if w.task is not None]
    for worker in busy:  # a terminal's Ctrl-C already reached them: give them a moment first
        worker.process.join(timeout=2)
    for worker in busy:
        if worker.process.is_alive() and worker.process.pid is not None:
            try:
                os.kill(worker.process.pid, signal.SIGINT)
            except OSError:
                pass
    for worker in pool:
        worker.process.join(timeout=10)
        if worker.process.is_alive():  # stuck: stop it
            worker.process.terminate()
            worker.process.join(timeout=5)
        worker.conn.close()


def make_backend(workers: int | None, ray: str | None, threads: int | None = None) -> Backend:
    """The backend the options ask for: Ray, ``workers`` local processes, or this process."""
    if ray:
        from vosctl.jobs.ray_backend import RayBackend

        return RayBackend(ray, max_in_flight=workers)
    if workers is not None and workers >= 1:
        return LocalBackend(workers, threads)
    return SerialBackend()
