"""The ``segment`` job: inputs -> Segmenter -> sinks, one summary per input. No algorithm here.

Output safety: everything for one input is written into a hidden temporary folder beside the
output folder, and moved into place only when the whole video is done. A failure (bad input,
crash, Ctrl-C) removes the temporary folder, so nothing half-written is ever left behind. Outputs
that already exist are refused (exit 2) unless ``--force``, and an output may never be an input.
"""

from __future__ import annotations

import json
import os
import shutil
import string
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vosctl.errors import InputError, VosctlError, one_line
from vosctl.io.atomic import (
    make_parents,
    remove_created,
    remove_stale_temporaries,
    temp_path_for,
    writable_problem,
)
from vosctl.jobs.signals import (
    Terminated,
    graceful_termination,
    pending_interruption,
    raise_if_interrupted,
    report_interruption,
    signals_deferred,
)
from vosctl.overrides import apply_overrides
from vosctl.prefetch import prefetch, write_behind
from vosctl.results import Timing

ALPHA_FORMATS = {"prores": "alpha.mov", "webm": "alpha.webm", "png": "alpha", "gray": "alpha.mp4"}
MASK_PATTERN_FIELDS = ("dir", "stem", "name", "path")


@dataclass
class SegmentOptions:
    inputs: list[str]
    mask: Path | None = None
    mask_pattern: str | None = None
    boxes: list[str] = field(default_factory=list)
    output: Path | None = None
    png: bool = False
    overlay: bool = False
    alpha: bool = False
    alpha_format: str = "prores"
    track_json: bool = False
    track_csv: bool = False
    device: str = "auto"
    model: str = "default"
    start_frame: int = 0
    mask_at: list[str] = field(default_factory=list)  # "FRAME:PATH" prompts on later (or earlier) frames
    box_at: list[str] = field(default_factory=list)  # "FRAME:X,Y,W,H[:ID]"
    direction: str = "forward"  # forward | backward | both, from --start-frame
    full_frame: bool = False
    search_size: int | None = None  # search crop side (SegmenterConfig.search_size); None: the model's
    threads: int | None = None  # CPU threads (vosctl.threads); None: OMP_NUM_THREADS, else the free cores
    engine: str = "torch"  # torch, onnx (ONNX Runtime on CPU) or auto (SegmenterConfig.engine)
    force: bool = False
    quiet: bool = False
    json_summary: bool = False
    allow_partial: bool = False  # keep the frames of a truncated/damaged video (warning, "complete": false)
    # Batches (vosctl.jobs.batch): a manifest of jobs, N local worker processes, a Ray address.
    manifest: str | None = None
    workers: int | None = None
    ray: str | None = None
    settings: list[str] = field(default_factory=list)  # --set KEY=VALUE tracker settings (vosctl.overrides)


@dataclass
class JobPlan:
    """What will be read and written for one input, decided before any work starts."""

    input_path: Path
    mask_path: Path | None
    output_dir: Path
    outputs: dict[str, str]  # kind -> name inside output_dir


def expand_inputs(inputs: list[str], stdin: Any = None) -> list[Path]:
    """Input arguments, with '-' replaced by the non-empty lines of stdin (one path per line)."""
    paths: list[Path] = []
    for item in inputs:
        if item == "-":
            stream = stdin if stdin is not None else sys.stdin
            paths.extend(Path(line.strip()) for line in stream if line.strip())
        else:
            paths.append(Path(item))
    if not paths:
        raise InputError("no input given (pass video files or frame folders, or '-' to read paths from stdin)")
    return paths


def check_mask_pattern(pattern: str) -> None:
    """Refuse a --mask-pattern with unknown fields or broken braces, before any input is read."""
    allowed = ", ".join("{" + f + "}" for f in MASK_PATTERN_FIELDS)
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(pattern) if name is not None]
    except ValueError as error:  # a lone '{' or '}'
        raise InputError(f"--mask-pattern '{pattern}': {error} (allowed fields: {allowed})") from None
    for name in names:
        if name not in MASK_PATTERN_FIELDS:
            raise InputError(f"--mask-pattern '{pattern}' uses unknown field {{{name}}} (allowed fields: {allowed})")


def mask_for(options: SegmentOptions, input_path: Path) -> Path | None:
    if options.mask_pattern:
        stem = input_path.stem if input_path.is_file() or input_path.suffix else input_path.name
        text = options.mask_pattern.format(
            stem=stem, name=input_path.name, dir=str(input_path.parent), path=str(input_path)
        )
        return Path(text)
    return options.mask


def plan_job(options: SegmentOptions, input_path: Path, batch: bool) -> JobPlan:
    if options.alpha_format not in ALPHA_FORMATS:
        raise InputError(f"unknown --alpha-format '{options.alpha_format}' (use {', '.join(ALPHA_FORMATS)})")
    chosen = options.png or options.overlay or options.alpha or options.track_json or options.track_csv
    outputs: dict[str, str] = {}
    if options.png or not chosen:
        outputs["png"] = "masks"
    if options.overlay or not chosen:
        outputs["overlay"] = "overlay.mp4"
    if options.alpha:
        outputs["alpha"] = ALPHA_FORMATS[options.alpha_format]
    if options.track_json:
        outputs["track_json"] = "track.json"
    if options.track_csv:
        outputs["track_csv"] = "track.csv"

    name = input_path.stem if input_path.suffix else input_path.name
    if options.output is None:
        output_dir = input_path.parent / f"{name}_vos"
    elif batch:
        output_dir = options.output / f"{name}_vos"
    else:
        output_dir = options.output
    return JobPlan(input_path, mask_for(options, input_path), output_dir, outputs)


def check_plan(plan: JobPlan, options: SegmentOptions) -> None:
    """Refuse before any work: missing inputs, existing outputs (without --force), output == input."""
    if not plan.input_path.exists():
        raise InputError(f"input {plan.input_path} does not exist")
    if plan.mask_path is not None and not plan.mask_path.is_file():
        raise InputError(f"mask {plan.mask_path} does not exist")
    specs = check_prompt_options(options)
    if plan.mask_path is None and not options.boxes and not specs:
        raise InputError("give the first-frame object as --mask PNG, --mask-pattern or --box X,Y,W,H")
    if plan.mask_path is not None and options.boxes:
        raise InputError("give either a mask or boxes, not both")
    protected = {plan.input_path.resolve()}
    if plan.mask_path is not None:
        protected.add(plan.mask_path.resolve())
    protected.update(spec.path.resolve() for spec in specs if spec.path is not None)
    if specs or options.direction != "forward":
        # Prompts on other frames: read them against the video now, so a bad one fails before the model loads.
        from vosctl.io import open_video

        with open_video(plan.input_path) as source:
            _load_prompts(plan, options, source)
    for target in plan.outputs.values():
        path = (plan.output_dir / target).resolve()
        if path in protected or any(p.is_relative_to(path) for p in protected):
            raise InputError(f"output {plan.output_dir / target} would overwrite an input")
        if path.exists() and not options.force:
            raise InputError(f"output {plan.output_dir / target} already exists (use --force to replace it)")
    # The staging folder goes beside the output folder, the outputs into it: both must be writable.
    problem = writable_problem(plan.output_dir.parent) or writable_problem(plan.output_dir)
    if problem is not None:
        raise InputError(f"cannot write to output folder {plan.output_dir}: {problem}")


def check_prompt_options(options: SegmentOptions) -> list[Any]:
    """Parse ``--mask-at`` / ``--box-at`` and check ``--direction`` before any work (vosctl.prompting)."""
    from vosctl.prompting import DIRECTIONS, parse_prompt_options

    if options.direction not in DIRECTIONS:
        raise InputError(f"unknown --direction '{options.direction}' (use {', '.join(DIRECTIONS)})")
    specs = parse_prompt_options(options.mask_at, options.box_at)
    for spec in specs:
        if spec.path is not None and not spec.path.is_file():
            raise InputError(f"mask {spec.path} (--mask-at {spec.text}) does not exist")
    return specs


def _progress(total: int | None, description: str, enabled: bool) -> Any:
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[fps]:.1f} fps"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    progress.start()
    progress.add_task(description, total=total, fps=0.0)
    return progress


def run_one(plan: JobPlan, options: SegmentOptions, segmenter: Any) -> dict[str, Any]:
    """Segment one input into ``plan.output_dir``; returns the summary dict."""
    from vosctl.io import (
        AlphaSink,
        OverlayVideoSink,
        PngMaskSink,
        TrackCsvSink,
        TrackSink,
        open_video,
    )
    from vosctl.jobs.frame_order import in_frame_order

    started = time.perf_counter()
    _clean_stale(plan)
    staging = temp_path_for(plan.output_dir)
    shutil.rmtree(staging, ignore_errors=True)
    created: list[Path] = []
    sinks: list[Any] = []
    progress = None
    try:
        # Folders this run creates (-o a/b/c/out) are removed again if it fails: nothing is left.
        created = make_parents(plan.output_dir.parent)
        staging.mkdir()
        forward_only = options.direction == "forward"
        # Going backward needs the frames before --start-frame: the reader starts at 0 then.
        first = options.start_frame if forward_only else 0
        with (
            open_video(plan.input_path, start_frame=first, partial=options.allow_partial) as source,
            ExitStack() as stack,  # closes the decode-ahead thread (if any) before the source
        ):
            width, height = source.width, source.height
            prompts = _load_prompts(plan, options, source)
            outputs = plan.outputs
            if "png" in outputs:
                sinks.append(PngMaskSink(staging / outputs["png"]))
            if "overlay" in outputs:
                sinks.append(OverlayVideoSink(staging / outputs["overlay"], source.fps, width, height))
            if "alpha" in outputs:
                sinks.append(AlphaSink(staging / outputs["alpha"], source.fps, width, height, options.alpha_format))
            if "track_json" in outputs:
                sinks.append(TrackSink(staging / outputs["track_json"], fps=source.fps))
            if "track_csv" in outputs:
                sinks.append(TrackCsvSink(staging / outputs["track_csv"], fps=source.fps))

            total = _expected_frames(source.frame_count, options)
            show = not options.quiet and sys.stderr.isatty()
            progress = _progress(total, plan.input_path.name, show)
            # Forward, the tracker reads the frames through _timed so the wait for decoded frames is
            # taken out of segment_fps (vosctl.results.FPS_DEFINITION); decode runs ahead in a thread
            # (vosctl.prefetch). Backward / both: the tracker reads the source itself (backward in
            # chunks), decode cannot be told apart: segment_fps includes it and decode_fps is null.
            # The sinks write behind in another thread, so decode, segment and write overlap.
            timing = Timing()
            decode = [0.0]
            frames_in: Any = source
            if forward_only:
                ahead = getattr(segmenter, "prefetch_decode", False)
                frames_in = _timed(stack.enter_context(prefetch(source, enabled=ahead)), decode)
            count = 0
            in_tracker = 0.0
            lost: dict[int, int] = {}
            segmenter.expect_frames(total)
            t_seg = time.perf_counter()
            results = segmenter.track(
                frames_in, prompts=prompts, direction=options.direction, start_frame=options.start_frame
            )
            # Which sinks also record the pass and prompts of each frame: decided once, not per frame.
            targets = [(sink, isinstance(sink, TrackSink)) for sink in sinks]
            with write_behind(enabled=getattr(segmenter, "write_behind", False)) as submit:
                for frame, result in in_frame_order(results, source, staging / ".passes"):
                    raise_if_interrupted()  # a signal whose exception third-party code swallowed
                    in_tracker += time.perf_counter() - t_seg
                    submit(_write_frame, targets, frame, result)
                    for object_id, info in result.objects.items():
                        lost.setdefault(object_id, 0)
                        if info.lost:
                            lost[object_id] += 1
                    count += 1
                    if progress is not None:
                        elapsed = time.perf_counter() - started
                        progress.update(progress.task_ids[0], advance=1, fps=count / max(elapsed, 1e-6))
                    t_seg = time.perf_counter()
            if count == 0 and source.damage is not None:  # --allow-partial, but nothing decoded
                raise InputError(f"video {plan.input_path} is truncated or damaged: {source.damage}")
            if count == 0:
                raise InputError(
                    f"input {plan.input_path} has no frames at or after --start-frame {options.start_frame}"
                )
            damage = source.damage  # only with --allow-partial: otherwise damage raised InputError
            expected = total
        for sink in sinks:
            sink.close()
        sinks.clear()
        raise_if_interrupted()
        with signals_deferred():  # all outputs move into place, or none
            _commit(staging, plan, options.force)
        created = []
    except BaseException as error:
        for sink in sinks:
            try:
                sink.abort()
            except Exception:  # cleanup must not hide the real error
                pass
        if isinstance(error, OSError):  # disk full, quota, file size limit, lost permission, ...
            raise _write_error(error, plan) from None
        raise
    finally:
        if progress is not None:
            progress.stop()
        shutil.rmtree(staging, ignore_errors=True)
        remove_created(created)
    timing.frames = count
    timing.total_seconds = time.perf_counter() - started
    timing.add_segment(in_tracker, decode[0])
    seconds = timing.total_seconds
    if damage is not None:
        print(
            one_line(
                f"vosctl: warning: video {plan.input_path} is truncated or damaged: {damage}; "
                f"outputs cover the {count} frames that decoded"
            ),
            file=sys.stderr,
        )
    return {
        "input": str(plan.input_path),
        "output": str(plan.output_dir),
        "frames": count,
        "complete": damage is None,
        "frames_expected": expected,
        "objects": sorted(lost),
        "seconds": round(seconds, 3),
        "fps": _round(timing.fps),  # vosctl.results.FPS_DEFINITION
        "segment_fps": _round(timing.segment_fps),
        "decode_fps": _round(timing.decode_fps),
        "outputs": [str(plan.output_dir / name) for name in plan.outputs.values()],
        "lost_frames": {str(k): v for k, v in sorted(lost.items())},
        "model": segmenter.model_name,
        "device": segmenter.device,
        "precision": getattr(getattr(segmenter, "engine", None), "precision", None),
        "engine": getattr(getattr(segmenter, "engine", None), "backend", None),
        "threads": getattr(segmenter, "threads", None),
    }


def _write_frame(targets: list[tuple[Any, bool]], frame: Any, result: Any) -> None:
    """One frame into every sink (run behind the tracker, in frame order, by vosctl.prefetch.write_behind).

    ``targets``: (sink, is a track sink); track sinks also record which pass produced the frame
    and where prompts were applied.
    """
    for sink, is_track in targets:
        if is_track:
            sink.write(
                frame.index, frame.rgb, result.labels, result.objects, time=frame.timestamp, extra=_track_extra(result)
            )
        else:
            sink.write(frame.index, frame.rgb, result.labels, result.objects, time=frame.timestamp)


def _write_error(error: OSError, plan: JobPlan) -> VosctlError:
    """One line for a failure to write the outputs: disk full, quota, file size limit, lost
    permission (exit 1: the input was fine). The staging folder is removed by the caller."""
    reason = error.strerror or str(error) or type(error).__name__
    return VosctlError(f"cannot write outputs to {plan.output_dir}: {reason} (nothing written for {plan.input_path})")


def _clean_stale(plan: JobPlan) -> None:
    """Remove temporaries that killed runs (SIGKILL, power cut) left where this run writes; say so."""
    stale = remove_stale_temporaries(plan.output_dir.parent, [plan.output_dir.name])
    stale += remove_stale_temporaries(plan.output_dir, plan.outputs.values())
    for path in stale:
        print(one_line(f"vosctl: warning: removed {path}, left behind by an interrupted run"), file=sys.stderr)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _timed(frames: Iterator[Any], seconds: list[float]) -> Iterator[Any]:
    """The frames, adding the time spent reading each one (decode) to ``seconds[0]``."""
    while True:
        start = time.perf_counter()
        frame = next(frames, None)
        seconds[0] += time.perf_counter() - start
        if frame is None:
            return
        yield frame


def _load_prompts(plan: JobPlan, options: SegmentOptions, source: Any) -> dict[int, Any]:
    """Every prompt of the run as ``{frame: Prompt}``, checked against the video (vosctl.prompting)."""
    from vosctl.io import boxes_prompt, parse_box, read_mask_prompt
    from vosctl.prompting import check_directions, load_prompts, parse_prompt_options

    width, height = source.width, source.height
    labels = boxes = None
    if plan.mask_path is not None:
        labels = read_mask_prompt(plan.mask_path, width, height)
    elif options.boxes:
        boxes = [(b.x, b.y, b.w, b.h) for b in boxes_prompt([parse_box(t) for t in options.boxes], width, height)]
    specs = parse_prompt_options(options.mask_at, options.box_at)
    prompts = load_prompts(
        specs, width, height, options.start_frame, labels, boxes, first_source=f"--mask {plan.mask_path}"
    )
    total = source.frame_count if source.frame_count_exact else None
    check_directions(prompts, options.start_frame, options.direction, total)
    return prompts


def _expected_frames(frame_count: int | None, options: SegmentOptions) -> int | None:
    """Frames the run will write (for the progress bar)."""
    if frame_count is None:
        return None
    if options.direction == "backward":
        return min(frame_count, options.start_frame + 1)
    if options.direction == "both":
        return frame_count
    return max(0, frame_count - options.start_frame)


def _track_extra(result: Any) -> dict[str, Any]:
    extra: dict[str, Any] = {"direction": result.direction}
    if result.prompted:
        extra["prompt"] = list(result.prompted)
    return extra


def _commit(staging: Path, plan: JobPlan, force: bool) -> None:
    """Move finished outputs from the staging folder into the output folder."""
    plan.output_dir.mkdir(parents=True, exist_ok=True)
    for name in plan.outputs.values():
        src, dst = staging / name, plan.output_dir / name
        if dst.exists():
            if not force:
                raise InputError(f"output {dst} already exists (use --force to replace it)")
            if dst.is_dir():
                shutil.rmtree(dst)
            else:
                dst.unlink()
        os.replace(src, dst)


def segmenter_config(options: SegmentOptions) -> Any:
    """The tracker configuration these options ask for (also the batch workers' cache key)."""
    from vosctl.tracker import SegmenterConfig

    config = SegmenterConfig(full_frame=options.full_frame, engine=options.engine, search_size=options.search_size)
    return apply_overrides(config, options.settings)


def load_segmenter(options: SegmentOptions) -> Any:
    """The segmenter a job runs with (batch workers load it once and keep it)."""
    from vosctl.tracker import Segmenter

    return Segmenter.from_pretrained(
        options.model, device=options.device, config=segmenter_config(options), threads=options.threads
    )


def run_segment(options: SegmentOptions, stdin: Any = None) -> Iterator[dict[str, Any] | VosctlError]:
    """Process every input; yields a summary dict per success or the error per failed input."""
    from vosctl.jobs.batch import refuse_collisions

    if options.mask_pattern:
        check_mask_pattern(options.mask_pattern)
    segmenter_config(options)  # a bad --set fails here, before any input is read or output planned
    paths = expand_inputs(options.inputs, stdin)
    batch = len(paths) > 1 or "-" in options.inputs
    if options.output is not None and options.output.exists() and not options.output.is_dir():
        raise InputError(f"output {options.output} exists and is not a folder")
    plans: list[JobPlan | VosctlError] = []
    for path in paths:
        try:
            plans.append(plan_job(options, path, batch))
        except VosctlError as error:
            plans.append(error)
    # Two inputs writing one folder (a/ok.mp4 and b/ok.mp4, ok.mp4 and ok.mkv): refused before any work.
    refuse_collisions([(str(p.input_path), p) for p in plans if isinstance(p, JobPlan)])
    for index, plan in enumerate(plans):
        if isinstance(plan, JobPlan):
            try:
                check_plan(plan, options)
            except VosctlError as error:
                plans[index] = error
    if all(isinstance(p, VosctlError) for p in plans):
        yield from plans  # type: ignore[misc]
        return
    segmenter = load_segmenter(options)
    for plan in plans:
        if isinstance(plan, VosctlError):
            yield plan
            continue
        try:
            yield run_one(plan, options, segmenter)
        except VosctlError as error:
            yield error


def run_segment_cli(options: SegmentOptions) -> int:
    """CLI driver: one error line per failed input on stderr, JSON lines on stdout; worst exit code.

    SIGTERM/SIGHUP unwind like Ctrl-C, so the unfinished input's temporaries are removed; the exit
    code is then 128 + the signal (130 Ctrl-C, 143 SIGTERM). (Batches manage their workers'
    signals themselves, in vosctl.jobs.batch.)
    """
    if options.manifest is not None or options.workers is not None or options.ray is not None:
        from vosctl.jobs.batch import run_batch_cli

        return run_batch_cli(options)
    with graceful_termination():
        try:
            code = _run_segment_cli(options)
        except BaseException as error:
            # A signal's exception may reach here as another error (a SystemError from an extension
            # that ran the handler), or not at all: the signal received decides.
            stop = error if isinstance(error, (KeyboardInterrupt, Terminated)) else pending_interruption()
            if stop is None:
                raise
            return report_interruption(stop)
        stop = pending_interruption()
        return code if stop is None else report_interruption(stop)


def _run_segment_cli(options: SegmentOptions) -> int:
    code = 0
    for outcome in run_segment(options):
        if isinstance(outcome, VosctlError):
            print(f"vosctl: error: {one_line(outcome)}", file=sys.stderr)
            code = max(code, outcome.exit_code)
            continue
        if options.json_summary:
            print(json.dumps(outcome), flush=True)
        elif not options.quiet:
            print(
                f"{outcome['input']}: {outcome['frames']} frames, {len(outcome['objects'])} object(s), "
                f"{outcome['fps']} fps -> {outcome['output']}",
                file=sys.stderr,
            )
    return code
