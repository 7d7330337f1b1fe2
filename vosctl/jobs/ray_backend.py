"""The Ray backend: each task runs as a Ray task on the cluster (``--ray ADDRESS``).

``ADDRESS`` is ``auto`` (join the cluster that ``ray start`` made on this machine), ``local``
(start a private one-machine Ray inside this process, stopped at the end) or a cluster address
(``HOST:6379`` or ``ray://HOST:10001``). Ray is an optional extra: ``pip install 'vosctl[ray]'``.

Each task takes one CPU (``num_cpus=1``), so Ray runs as many at once as the cluster has cores,
each with one thread: the best aggregate throughput on CPUs. Ray reuses its worker processes, and
the task function keeps the model in :func:`vosctl.jobs.pool.worker_cached`, so the model is
loaded once per Ray worker, not once per task. A task whose worker process dies (killed, out of
memory, node lost) is retried once by Ray (``max_retries=1``) and then reported as failed, while
the other tasks go on. Inputs and outputs are paths that every node must reach the same way (a
shared filesystem); the workers write and commit the outputs themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from vosctl.errors import InputError
from vosctl.jobs.pool import RETRIES, TaskFailed, worker_cached

INSTALL_HINT = "--ray needs Ray: pip install 'vosctl[ray]' (or pip install ray)"


def _apply_threads(threads: int) -> int:
    from vosctl.threads import apply_thread_policy

    return apply_thread_policy(threads)


def _ray_task(fn: Callable[[Any], Any], payload: Any, threads: int) -> Any:
    """Runs on a Ray worker: the thread policy once per worker process, then the task."""
    worker_cached(("threads",), lambda: _apply_threads(threads))
    return fn(payload)


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InputError(INSTALL_HINT) from None
    return ray


class RayBackend:
    """Runs tasks on Ray; ``max_in_flight`` caps how many are submitted at once (default: all)."""

    def __init__(
        self, address: str, max_in_flight: int | None = None, num_cpus: int = 1, local_cpus: int | None = None
    ):
        self.ray = import_ray()
        self.address = address
        self.max_in_flight = max_in_flight if max_in_flight and max_in_flight > 0 else None
        self.num_cpus = num_cpus
        # --ray local: as many CPUs as --workers asks for, else all the cores of this machine.
        self.local_cpus = local_cpus if local_cpus is not None else self.max_in_flight

    def _connect(self) -> bool:
        """Connect (or start a local Ray); returns whether this call did it (and so must shut it down)."""
        ray = self.ray
        if ray.is_initialized():
            return False
        kwargs: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
        if self.address == "local":
            kwargs["include_dashboard"] = False
            if self.local_cpus:
                kwargs["num_cpus"] = self.local_cpus
        try:
            ray.init(address=self.address, **kwargs)
        except (ConnectionError, ValueError, RuntimeError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise InputError(
                f"cannot connect to Ray at '{self.address}' ({first}); start a cluster with "
                "'ray start --head', or use --ray local"
            ) from None
        return True

    def run(self, fn: Callable[[Any], Any], payloads: list[Any], on_progress: Any = None) -> Iterator[tuple[int, Any]]:
        """Tasks report when they finish (``on_progress`` is not called: no per-frame channel on Ray)."""
        if not payloads:
            return
        ray = self.ray
        started = self._connect()
        remote = ray.remote(num_cpus=self.num_cpus, max_retries=RETRIES)(_ray_task)
        fn_ref = ray.put(fn)
        waiting = list(range(len(payloads)))
        waiting.reverse()  # pop() from the end submits in manifest order
        in_flight: dict[Any, int] = {}
        try:
            while waiting or in_flight:
                while waiting and (self.max_in_flight is None or len(in_flight) < self.max_in_flight):
                    index = waiting.pop()
                    in_flight[remote.remote(fn_ref, payloads[index], self.num_cpus)] = index
                done, _ = ray.wait(list(in_flight), num_returns=1)
                for ref in done:
                    index = in_flight.pop(ref)
                    yield index, self._result(ref)
        finally:
            for ref in in_flight:  # interrupted: stop what still runs
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # cancelling is best effort; shutting down stops the rest
                    pass
            if started:
                ray.shutdown()

    def _result(self, ref: Any) -> Any:
        exceptions = self.ray.exceptions
        try:
            return self.ray.get(ref)
        except exceptions.RayTaskError as error:  # the task raised (not retried: it would fail again)
            cause = error.cause if getattr(error, "cause", None) is not None else error
            return TaskFailed(
                f"{type(cause).__name__}: {str(cause).strip().splitlines()[-1] if str(cause).strip() else ''}"
            )
        except exceptions.RayError as error:  # worker or node died, after Ray's retry
            text = str(error).strip().splitlines()[0] if str(error).strip() else ""
            return TaskFailed(f"its Ray worker died and died again on the retry ({type(error).__name__}: {text})")
