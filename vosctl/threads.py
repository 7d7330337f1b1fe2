"""Thread policy: how many threads torch, OpenCV and FFmpeg may use in this process.

Two torch processes on two cores, each with default threads, collapse about 100x (OpenMP worker
threads spin-wait on cores the other process needs). So every process sets its thread counts
explicitly, once, before heavy work:

1. the user's ``--threads N`` (``Segmenter.from_pretrained(..., threads=N)``), else
2. ``OMP_NUM_THREADS`` when the user set it, else
3. the cores this process may run on (``os.sched_getaffinity``) minus the other processes' threads
   that are running on them right now (``procs_running`` in ``/proc/stat`` less this process's own
   runnable threads, from ``/proc/self/task``), at least 1.

Rule 3 is what keeps ``xargs -P2 vosctl segment ...`` (or a run beside a training job) from
collapsing when nobody passes ``--threads``: each process sees the others busy and takes what is
left, instead of every process taking every core. It is a snapshot, so runs that must be
reproducible, or pools of workers, should pass ``--threads`` (a pool of P workers on C cores:
``C // P`` each; :func:`share_of_cores` computes it).

What is set: torch intra-op threads (the network), torch inter-op threads (1: the tracker never
runs independent ops concurrently, and an idle inter-op pool only competes), OpenCV's pool (crops,
pastes, PNG encoding) and FFmpeg's codec threads (decode and encode), through
:func:`codec_threads`, read by the video reader and writers.

Owner: throughput issue (#9); batch workers (#10) call :func:`apply_thread_policy` with their share.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

# The count this process applied (None before apply_thread_policy). Thread pools are per process
# by nature (torch's and OpenCV's are process-wide too), so this mirrors them rather than hiding state.
_applied: int | None = None


def available_cores() -> int:
    """Cores this process may run on (CPU affinity, cgroup-pinned containers included)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def running_processes() -> int | None:
    """Runnable threads on the machine right now (``procs_running``, this one included); None if unknown."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("procs_running"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def own_running_threads(tasks: str = "/proc/self/task") -> int | None:
    """This process's threads that are runnable right now (state R), the calling one included;
    None if unknown.

    ``procs_running`` counts them too. Right after ``import numpy`` or ``cv2``, or after a parallel
    region, this process's own pool threads spin for a moment and are runnable: counted as other
    processes, they made ``Segmenter.from_pretrained`` take 1 thread on an idle 2-core machine.
    """
    try:
        names = os.listdir(tasks)
    except OSError:
        return None
    running = 0
    for name in names:
        try:
            with open(f"{tasks}/{name}/stat", encoding="ascii", errors="replace") as handle:
                stat = handle.read()
        except OSError:  # the thread ended meanwhile
            continue
        # "pid (comm) S ...": the state follows the last ')' (comm may hold spaces and parentheses).
        state_at = stat.rfind(")") + 2
        running += stat[state_at : state_at + 1] == "R"
    return max(1, running)


def env_threads(environ: Mapping[str, str] | None = None) -> int | None:
    """``OMP_NUM_THREADS`` when set to a positive integer (the first entry of a nested list), else None."""
    value = (os.environ if environ is None else environ).get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def default_threads(
    requested: int | None = None,
    environ: Mapping[str, str] | None = None,
    cores: int | None = None,
    running: int | None = -1,
    own: int | None = -1,
) -> int:
    """The thread count rule (module docstring); every input can be given, for tests.

    ``running``: runnable threads on the machine including this one (-1: read ``/proc/stat``).
    ``own``: of those, this process's own (-1: read ``/proc/self/task``; None: unknown, taken as 1).
    """
    if requested is not None and requested > 0:
        return int(requested)
    from_env = env_threads(environ)
    if from_env is not None:
        return from_env
    cores = available_cores() if cores is None else cores
    running = running_processes() if running == -1 else running
    own = own_running_threads() if own == -1 else own
    others = max(0, (running or 1) - (own or 1))
    return max(1, min(cores, cores - others))


def share_of_cores(processes: int, cores: int | None = None) -> int:
    """Threads for each of ``processes`` workers sharing the cores: ``cores // processes``, at least 1."""
    cores = available_cores() if cores is None else cores
    return max(1, cores // max(1, processes))


def apply_thread_policy(threads: int | None = None) -> int:
    """Set torch's, OpenCV's and (for later readers/writers) FFmpeg's thread counts; returns the count.

    Idempotent: a second call with no explicit count keeps the first one's count (a library user
    who set ``threads=1`` on one Segmenter is not overridden by a second one created with defaults).
    """
    global _applied
    if (threads is None or threads <= 0) and _applied is not None:
        count = _applied
    else:
        count = default_threads(threads)
    import cv2

    cv2.setNumThreads(count)
    import torch

    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    try:
        # Allowed only before the first inter-op parallel work; later calls keep what was set.
        if torch.get_num_interop_threads() != 1:
            torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    _applied = count
    return count


def applied_threads() -> int | None:
    """The count :func:`apply_thread_policy` set in this process, or None if it was never called."""
    return _applied


def codec_threads() -> int | None:
    """FFmpeg codec threads for a reader or writer: the applied count, or None (FFmpeg's default)
    when the policy never ran in this process (a tool using vosctl.io alone keeps FFmpeg's choice).

    FFmpeg's threads block on condition variables rather than spin, so the same count as the
    network's is safe: decode, segment and encode of one frame run one after another.
    """
    return _applied
