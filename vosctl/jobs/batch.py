"""Batches of ``segment`` jobs: planning, collision checks, resume markers, parallel execution.

``vosctl segment --manifest FILE`` / ``--workers N`` / ``--ray ADDRESS`` land here (a plain run
without them stays in :mod:`vosctl.jobs.segment`). The order of things:

1. **Plan every job** (input, prompt, output folder, outputs) before any work. A manifest is
   validated as a whole: every bad row is reported with its line number and nothing runs
   (exit 2). In a plain multi-input batch a bad input is reported and the others still run, as
   in a serial batch.
2. **Refuse output collisions** (exit 2, naming both jobs, with or without ``--force``): two jobs
   writing the same output folder (``a/ok.mp4`` and ``b/ok.mp4`` with ``-o out``; ``ok.mp4`` and
   ``ok.mkv`` side by side), one job's output inside another's output, or an output inside (or
   containing) another job's input or mask.
3. **Resume:** each finished job leaves a small completion marker (``.vosctl-job.json``) in its
   output folder, written after its outputs were committed; it records what the job was
   (input, prompt and option fingerprints) and its summary. A re-run skips jobs whose marker
   matches (their summary is printed again with ``"skipped": true``), redoes jobs whose input or
   options changed since, and refuses outputs without a marker unless ``--force`` (they are not
   vosctl's to replace). ``--force`` redoes every job.
4. **Run** the remaining jobs on a backend (:mod:`vosctl.jobs.pool`: this process, N local worker
   processes, or Ray), streaming one summary per job in completion order; the exit code is the
   worst of the batch.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vosctl.errors import InputError, VosctlError
from vosctl.jobs.segment import JobPlan, SegmentOptions, check_plan, expand_inputs, plan_job

MARKER = ".vosctl-job.json"
MARKER_FORMAT = 1
TIMING_KEYS = ("seconds", "fps", "segment_fps", "decode_fps")
"""Summary fields that differ from run to run (everything else is reproducible)."""


@dataclass
class BatchJob:
    """One job of a batch, as planned on the client."""

    name: str  # how messages name it: the input as given, or "jobs.csv:3 (a.mp4)"
    options: SegmentOptions  # this job's own options (one input, its prompt, its flags)
    plan: JobPlan | None = None
    error: VosctlError | None = None  # a planning problem (the job is reported failed, not run)
    line: int | None = None  # manifest line
    state: str = "todo"  # "todo", "complete" (skip), "stale" (redo, replacing a vosctl output)
    fingerprint: dict[str, Any] = field(default_factory=dict)
    previous: dict[str, Any] | None = None  # the summary stored in a complete job's marker


@dataclass
class JobTask:
    """What a worker gets: absolute paths, so any process on any node reads the same files."""

    options: SegmentOptions
    plan: JobPlan
    fingerprint: dict[str, Any]


@dataclass
class BatchEvent:
    """One finished (or skipped, or failed) job, in completion order."""

    job: BatchJob
    summary: dict[str, Any] | None = None
    error: str | None = None
    exit_code: int = 0
    skipped: bool = False
    task_index: int | None = None  # position among the jobs that ran (progress bookkeeping)


# --------------------------------------------------------------------------- planning


def _job_options(base: SegmentOptions, row: Any) -> SegmentOptions:
    """The command line's options with a manifest row's values put over them."""
    options = dataclasses.replace(base, inputs=[str(row.input)], manifest=None, quiet=True)
    if row.mask is not None:
        options.mask, options.mask_pattern, options.boxes = row.mask, None, []
    elif row.boxes:
        options.mask, options.mask_pattern, options.boxes = None, None, list(row.boxes)
    if row.output is not None:
        options.output = row.output
    if row.start_frame is not None:
        options.start_frame = row.start_frame
    for key, value in row.flags.items():
        setattr(options, key, value)
    if row.alpha_format is not None:
        options.alpha_format = row.alpha_format
    if row.mask_at:
        options.mask_at = list(row.mask_at)
    if row.box_at:
        options.box_at = list(row.box_at)
    if row.direction is not None:
        options.direction = row.direction
    return options


def jobs_from_manifest(options: SegmentOptions, stdin: Any = None) -> list[BatchJob]:
    from vosctl.jobs.manifest import read_manifest

    jobs = []
    for row in read_manifest(str(options.manifest), stdin):
        job_options = _job_options(options, row)
        job = BatchJob(row.name, job_options, line=row.line)
        try:
            # A row's own output is that job's folder; otherwise <stem>_vos/ in -o DIR or beside the input.
            job.plan = plan_job(job_options, row.input, batch=row.output is None)
        except VosctlError as error:
            job.error = error
        jobs.append(job)
    return jobs


def jobs_from_inputs(options: SegmentOptions, stdin: Any = None) -> list[BatchJob]:
    paths = expand_inputs(options.inputs, stdin)
    batch = len(paths) > 1 or "-" in options.inputs
    if options.output is not None and batch and options.output.exists() and not options.output.is_dir():
        raise InputError(f"output {options.output} exists and is not a folder")
    jobs = []
    for path in paths:
        job = BatchJob(str(path), dataclasses.replace(options, inputs=[str(path)], quiet=True))
        try:
            job.plan = plan_job(job.options, path, batch)
        except VosctlError as error:
            job.error = error
        jobs.append(job)
    return jobs


def _stat(path: Path) -> list[Any]:
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


def fingerprint(options: SegmentOptions, plan: JobPlan) -> dict[str, Any]:
    """What makes a job's outputs what they are; a marker with another fingerprint is out of date."""
    mask_at = list(getattr(options, "mask_at", []) or [])
    return {
        "input": _stat(plan.input_path),
        "mask": None if plan.mask_path is None else _stat(plan.mask_path),
        "boxes": [] if plan.mask_path is not None else list(options.boxes),
        "mask_at": [[t.partition(":")[0], *_stat(Path(t.partition(":")[2]))] for t in mask_at],
        "box_at": list(getattr(options, "box_at", []) or []),
        "direction": getattr(options, "direction", "forward"),
        "start_frame": options.start_frame,
        "outputs": dict(sorted(plan.outputs.items())),
        "alpha_format": options.alpha_format,
        "model": options.model,
        "full_frame": options.full_frame,
        "search_size": options.search_size,
        "engine": options.engine,
    }


def read_marker(output_dir: Path) -> dict[str, Any] | None:
    try:
        marker = json.loads((output_dir / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def write_marker(plan: JobPlan, fingerprint: dict[str, Any], summary: dict[str, Any]) -> None:
    """Written last, atomically: its presence proves that every output of the job was committed."""
    from vosctl import __version__
    from vosctl.io.atomic import atomic_write

    document = {"format": MARKER_FORMAT, "vosctl": __version__, "fingerprint": fingerprint, "summary": summary}
    try:
        with atomic_write(plan.output_dir / MARKER) as tmp:
            tmp.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    except OSError as error:
        raise VosctlError(f"cannot write {plan.output_dir / MARKER}: {error.strerror or error}") from error


def _resume_state(job: BatchJob, force: bool) -> None:
    """Set ``job.state``: skip a complete job, redo a stale one, check a new one like a serial run."""
    assert job.plan is not None
    plan = job.plan
    job.fingerprint = fingerprint(job.options, plan)
    marker = None if force else read_marker(plan.output_dir)
    if marker is not None:
        outputs_there = all((plan.output_dir / name).exists() for name in plan.outputs.values())
        if marker.get("fingerprint") == job.fingerprint and outputs_there and isinstance(marker.get("summary"), dict):
            job.state, job.previous = "complete", marker["summary"]
            return
        # vosctl made this folder for an older version of the job: redo it, replacing those outputs.
        job.state = "stale"
        job.options = dataclasses.replace(job.options, force=True)
    check_plan(plan, job.options)


def _resolved(path: Path) -> Path:
    return Path(os.path.abspath(path)).resolve()


def find_collisions(named: list[tuple[str, JobPlan]]) -> list[str]:
    """One message per pair of jobs whose outputs would overwrite each other or another job's input.

    Linear in the number of jobs (each path's ancestors are looked up in dicts), so a
    100,000-job manifest is checked in well under a second.
    """
    outputs: dict[Path, int] = {}
    protected: dict[Path, int] = {}  # inputs and masks
    problems: list[str] = []
    seen: set[tuple[int, int]] = set()

    def report(i: int, j: int, message: str) -> None:
        if (i, j) not in seen and (j, i) not in seen:
            seen.add((i, j))
            problems.append(message)

    resolved_out: list[Path] = []
    for index, (name, plan) in enumerate(named):
        out = _resolved(plan.output_dir)
        resolved_out.append(out)
        if out in outputs:
            other = outputs[out]
            report(other, index, f"{named[other][0]} and {name} both write to {plan.output_dir}")
        else:
            outputs[out] = index
        paths = [plan.input_path] + ([plan.mask_path] if plan.mask_path is not None else [])
        for path in paths:
            protected.setdefault(_resolved(path), index)
    for index, (name, plan) in enumerate(named):
        out = resolved_out[index]
        for parent in [out, *out.parents]:
            other = outputs.get(parent)
            if parent != out and other is not None and other != index:
                report(other, index, f"{name} writes to {plan.output_dir}, inside the output of {named[other][0]}")
            other = protected.get(parent)
            if other is not None and other != index:
                report(other, index, f"{name} writes to {plan.output_dir}, inside the input of {named[other][0]}")
    for path, index in protected.items():
        for parent in path.parents:
            other = outputs.get(parent)
            if other is not None and other != index:
                holder = named[other]
                report(
                    other,
                    index,
                    f"{holder[0]} writes to {holder[1].output_dir}, which holds the input of {named[index][0]}",
                )
    return problems


def refuse_collisions(named: list[tuple[str, JobPlan]]) -> None:
    """Raise ``InputError`` (exit 2) naming both jobs of the first collision, before any work."""
    problems = find_collisions(named)
    if problems:
        more = f" (and {len(problems) - 1} more collision(s))" if len(problems) > 1 else ""
        raise InputError(f"output collision: {problems[0]}{more}; give each job its own output folder")


# --------------------------------------------------------------------------- the worker side


def _absolute(options: SegmentOptions, plan: JobPlan) -> JobTask:
    """The job with absolute paths (workers may run in another folder, or on another node)."""

    def absolute(path: Path | None) -> Path | None:
        return None if path is None else Path(os.path.abspath(path))

    mask_at = [f"{t.partition(':')[0]}:{os.path.abspath(t.partition(':')[2])}" for t in getattr(options, "mask_at", [])]
    model = options.model
    if Path(model).expanduser().is_file():
        model = os.path.abspath(Path(model).expanduser())
    task_options = dataclasses.replace(
        options,
        mask=absolute(options.mask),
        output=absolute(options.output),
        model=model,
        mask_at=mask_at,
        quiet=True,
        json_summary=False,
    )
    task_plan = dataclasses.replace(
        plan,
        input_path=absolute(plan.input_path),
        mask_path=absolute(plan.mask_path),
        output_dir=absolute(plan.output_dir),
    )
    return JobTask(task_options, task_plan, {})


class _Counted:
    """The segmenter, reporting frames done to the batch's progress (at most 4 messages a second)."""

    def __init__(self, segmenter: Any) -> None:
        self.segmenter = segmenter

    def __getattr__(self, name: str) -> Any:  # model_name, device, ... as the real one
        return getattr(self.segmenter, name)

    def track(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        from vosctl.jobs.pool import report_progress

        pending, last = 0, time.monotonic()
        try:
            for result in self.segmenter.track(*args, **kwargs):
                pending += 1
                if time.monotonic() - last >= 0.25:
                    report_progress(pending)
                    pending, last = 0, time.monotonic()
                yield result
        finally:
            report_progress(pending)


def run_job_task(task: JobTask) -> dict[str, Any]:
    """One job on a worker: model loaded once per worker process, outputs committed, then the marker.

    Returns ``{"summary": {...}}`` or ``{"error": "...", "exit_code": n}``.
    """
    from vosctl.jobs.pool import worker_cached, worker_threads
    from vosctl.jobs.segment import load_segmenter, run_one, segmenter_config

    options = task.options
    if options.threads is None and worker_threads() is not None:
        # The worker's share of the cores, not a count the segmenter would pick for itself.
        options = dataclasses.replace(options, threads=worker_threads())
    try:
        # Keyed by the whole tracker configuration (its repr: the dataclass is not hashable), so an
        # option added to it can never be served by a segmenter loaded for other settings.
        key = ("segmenter", options.model, options.device, options.threads, repr(segmenter_config(options)))
        segmenter = worker_cached(key, lambda: load_segmenter(options))
        summary = run_one(task.plan, options, _Counted(segmenter))
        write_marker(task.plan, task.fingerprint, summary)
    except VosctlError as error:
        return {"error": str(error), "exit_code": error.exit_code}
    return {"summary": summary}


# --------------------------------------------------------------------------- the client side


class BatchRefused(InputError):
    """The batch cannot start; ``problems`` holds one line per reason (every bad row)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(problems[0] if len(problems) == 1 else f"{len(problems)} problems")
        self.problems = problems


def plan_batch(options: SegmentOptions, stdin: Any = None) -> list[BatchJob]:
    """Plan, validate and check every job; raises :class:`BatchRefused` when nothing may run."""
    from vosctl.jobs.manifest import ManifestError
    from vosctl.jobs.segment import segmenter_config

    segmenter_config(options)  # a bad --set fails once, here, not once per job on the workers
    manifest = options.manifest is not None
    if options.ray:  # fail on a missing optional dependency before reading anything
        from vosctl.jobs.ray_backend import import_ray

        import_ray()
    try:
        jobs = jobs_from_manifest(options, stdin) if manifest else jobs_from_inputs(options, stdin)
    except ManifestError as error:
        raise BatchRefused(error.problems) from None
    problems: list[str] = []
    for job in jobs:
        if job.plan is None:
            continue
        try:
            _resume_state(job, options.force)
        except VosctlError as error:
            job.error = error
        except OSError as error:  # e.g. the input vanished between planning and stat
            job.error = InputError(f"cannot read {job.plan.input_path}: {error.strerror or error}")
    if manifest:  # validated as a whole: any bad row stops the batch before any work
        problems = [f"{_prefix(job)}{job.error}" for job in jobs if job.error is not None]
    problems += [
        f"output collision: {message}; give each job its own output folder"
        for message in find_collisions([(job.name, job.plan) for job in jobs if job.plan is not None])
    ]
    if problems:
        raise BatchRefused(problems)
    return jobs


def _prefix(job: BatchJob) -> str:
    return f"{job.name.split(' (')[0]}: " if job.line is not None else ""


def _check_model(options: SegmentOptions) -> None:
    """A missing model fails once, up front, instead of once per job on the workers."""
    from vosctl.model.checkpoint import resolve_checkpoint

    resolve_checkpoint(options.model)


def run_batch(
    options: SegmentOptions, stdin: Any = None, backend: Any = None, job_fn: Any = None
) -> Iterator[BatchEvent]:
    """Plan (raising :class:`BatchRefused` before any work) and run a batch; see :func:`execute_batch`."""
    return execute_batch(plan_batch(options, stdin), options, backend, job_fn)


def execute_batch(
    jobs: list[BatchJob],
    options: SegmentOptions,
    backend: Any = None,
    job_fn: Any = None,
    on_progress: Any = None,
) -> Iterator[BatchEvent]:
    """Run planned jobs; yields one :class:`BatchEvent` per job (failed plans and skipped jobs first).

    ``backend`` defaults to what ``options.workers`` / ``options.ray`` ask for; ``job_fn`` (a
    module-level function taking a :class:`JobTask`, default :func:`run_job_task`) is how tests
    inject a worker that dies.
    """
    from vosctl.jobs.pool import TaskFailed, make_backend

    runnable = [job for job in jobs if job.error is None and job.state != "complete"]
    for job in jobs:
        if job.error is not None:
            yield BatchEvent(job, error=str(job.error), exit_code=job.error.exit_code)
        elif job.state == "complete":
            yield BatchEvent(job, summary={**_as_given(job.previous or {}, job), "skipped": True}, skipped=True)
    if not runnable:
        return
    _check_model(options)
    if backend is None:
        # --threads with --workers: each worker's count; without it, each worker's share of the cores.
        backend = make_backend(options.workers, options.ray, options.threads)
    tasks = []
    for job in runnable:
        assert job.plan is not None
        task = _absolute(job.options, job.plan)
        task.fingerprint = job.fingerprint
        tasks.append(task)
    for index, result in backend.run(job_fn or run_job_task, tasks, on_progress=on_progress):
        job = runnable[index]
        if isinstance(result, TaskFailed):
            yield BatchEvent(job, error=f"{job.name}: {result.message}", exit_code=result.exit_code, task_index=index)
        elif "error" in result:
            yield BatchEvent(job, error=result["error"], exit_code=int(result["exit_code"]), task_index=index)
        else:
            yield BatchEvent(job, summary=_as_given(result["summary"], job), task_index=index)


def _as_given(summary: dict[str, Any], job: BatchJob) -> dict[str, Any]:
    """Report paths as the user gave them (the worker saw absolute ones), plus the manifest line."""
    assert job.plan is not None
    plan = job.plan
    summary = dict(summary)
    summary["input"] = str(plan.input_path)
    summary["output"] = str(plan.output_dir)
    summary["outputs"] = [str(plan.output_dir / name) for name in plan.outputs.values()]
    if job.line is not None:
        summary["line"] = job.line
    return summary


class _BatchProgress:
    """Aggregate progress on stderr: jobs done / total, frames done, frames per second of wall time."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.progress = None
        self.frames = 0
        self.reported: dict[int, int] = {}  # frames reported so far by each running task
        self.started = time.perf_counter()
        if not enabled or total == 0:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("jobs"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[frames]} frames, {task.fields[fps]:.1f} fps"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self.progress.start()
        self.task = self.progress.add_task("jobs", total=total, frames=0, fps=0.0)

    def _show(self, advance: int) -> None:
        if self.progress is not None:
            fps = self.frames / max(time.perf_counter() - self.started, 1e-6)
            self.progress.update(self.task, advance=advance, frames=self.frames, fps=fps)

    def frames_done(self, index: int, frames: int) -> None:
        self.reported[index] = self.reported.get(index, 0) + frames
        self.frames += frames
        self._show(0)

    def done(self, event: BatchEvent, index: int | None) -> None:
        # A job's frames count once: what it reported while running, topped up from its summary
        # (Ray tasks report only at the end; a retried task may have reported frames twice).
        so_far = self.reported.pop(index, 0) if index is not None else 0
        if event.summary is not None and not event.skipped:
            self.frames += int(event.summary.get("frames", 0)) - so_far
        else:
            self.frames -= so_far
        self._show(1)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def run_batch_cli(options: SegmentOptions, stdin: Any = None) -> int:
    """CLI driver: JSON lines (``--json``) in completion order, one error line per failed job; worst exit code."""
    try:
        jobs = plan_batch(options, stdin)
    except BatchRefused as error:
        for problem in error.problems:
            print(f"vosctl: error: {problem}", file=sys.stderr)
        return error.exit_code
    code = 0
    progress = _BatchProgress(len(jobs), not options.quiet and sys.stderr.isatty())
    try:
        for event in execute_batch(jobs, options, on_progress=progress.frames_done):
            progress.done(event, event.task_index)
            code = max(code, event.exit_code)
            if event.error is not None:
                print(f"vosctl: error: {event.error}", file=sys.stderr, flush=True)
            elif options.json_summary:
                print(json.dumps(event.summary), flush=True)
            elif not options.quiet:
                summary = event.summary or {}
                if event.skipped:
                    text = f"{summary.get('input')}: complete, skipped (in {summary.get('output')})"
                else:
                    text = (
                        f"{summary['input']}: {summary['frames']} frames, {len(summary['objects'])} object(s), "
                        f"{summary['fps']} fps -> {summary['output']}"
                    )
                print(text, file=sys.stderr, flush=True)
    finally:
        progress.stop()
    return code
