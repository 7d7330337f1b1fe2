"""Thread policy: how many threads torch, OpenCV and FFmpeg may use in this process.

Two torch processes on two cores, each with default threads, collapse about 100x (OpenMP worker
threads spin-wait on cores the other process needs). So every process sets its thread counts
explicitly: the user's ``--threads N``, else ``OMP_NUM_THREADS`` when set, else the cores this
process may run on (``os.sched_getaffinity``). Batch workers are given their share of the cores.

Owner: throughput issue (#9); batch workers (#10) call :func:`apply_thread_policy` with their share.
"""

from __future__ import annotations

import os


def available_cores() -> int:
    """Cores this process may run on (CPU affinity, cgroup-pinned containers included)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """``OMP_NUM_THREADS`` when the user set it to a positive integer, else the available cores."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    return available_cores()


def apply_thread_policy(threads: int | None = None) -> int:
    """Set torch's and OpenCV's thread counts for this process; returns the count used."""
    count = default_threads() if threads is None or threads <= 0 else int(threads)
    import cv2

    cv2.setNumThreads(count)
    import torch

    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count
