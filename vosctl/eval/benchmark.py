"""The ``benchmark`` job: vosctl (or another tool's masks) on DAVIS, scored with the official measures.

Run mode: every sequence is segmented from its first-frame annotation, the masks are written in
DAVIS result format (``<results>/<seq>/00000.png`` palette PNGs; a temporary folder removed at
the end unless ``--results`` is given) and scored. ``--eval-only --results DIR`` scores masks that
are already there (any tool's, same layout). ``--replicate K`` (K >= 1) runs on the frames plus
seeded noise of +-1 grey level (:func:`replicate_noise`), to compare settings over several
replicates (:mod:`vosctl.eval.replicates`).

Scoring follows davis2017-evaluation (semi-supervised task) exactly: the first and last frames of
each sequence are not scored, one row per object (``<seq>_<id>``; DAVIS 2016: the sequence name),
global figures are means over objects, ``J&F-Mean = (J-Mean + F-Mean) / 2``.

Outputs (all written atomically, through a temporary name in the destination folder):

* a table on stdout (one row per object, then the global row);
* ``--json FILE``: ``{"global": {...7 official figures..., "fps"}, "sequences": {row: {...}},
  "per_frame": {row: {"first_frame": 1, "J": [...], "F": [...]}}, ...}``: the per-frame curves
  behind each row (scored frames only; ``benchmarks/compare_frames.py`` shows where two runs part);
* ``--csv FILE``: the official ``per-sequence_results-<split>.csv`` layout (``Sequence,J-Mean,F-Mean``,
  3 decimals), and beside it ``<stem>_global<suffix>`` in the official ``global_results-<split>.csv``
  layout (``J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay``).

torch is imported only in run mode (through the tracker).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vosctl.errors import InputError
from vosctl.eval.davis import DavisDataset, DavisSequence, write_label_png
from vosctl.eval.measures import BOUND_TH, Statistics, db_statistics, f_measure
from vosctl.overrides import apply_overrides
from vosctl.results import rate

GLOBAL_FIELDS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
"""Columns of the official ``global_results-<split>.csv``."""

SEQUENCE_FIELDS = ("Sequence", "J-Mean", "F-Mean")
"""Columns of the official ``per-sequence_results-<split>.csv``."""

FPS_NOTE = (
    "fps_segment = frames / seconds spent inside the segmenter (JPEG decoding and PNG writing "
    "excluded); fps_total = frames / seconds for decode + segment + write. Both count every frame "
    "of every sequence (the prompt frame included) and exclude model loading and scoring; "
    "global.fps is fps_segment. null when --eval-only. With --workers/--ray the seconds are summed "
    "over the workers (so fps_segment is a per-worker speed) and fps_aggregate = frames / wall seconds "
    "of the whole parallel run (null for serial runs)."
)

Warn = Callable[[str], None]


@dataclass
class BenchmarkOptions:
    """What ``vosctl benchmark`` was asked to do (the fields are the CLI options)."""

    davis_root: Path
    year: str = "2016"
    split: str = "val"
    sequences: list[str] | None = None
    results: Path | None = None
    eval_only: bool = False
    json_path: Path | None = None
    csv_path: Path | None = None
    model: str = "default"
    device: str = "auto"
    full_frame: bool = False
    search_size: int | None = None  # search crop side (SegmenterConfig.search_size); None: the model's
    threads: int | None = None  # CPU threads (vosctl.threads); None: OMP_NUM_THREADS, else the free cores
    quiet: bool = False
    prompt: str = "mask"  # "mask": the first annotation; "box": each object's box of it (SiamMask's protocol)
    workers: int | None = None  # N local worker processes, one sequence per task
    ray: str | None = None  # a Ray address ("auto", "local", HOST:PORT), one sequence per task
    settings: list[str] = field(default_factory=list)  # --set KEY=VALUE tracker settings (vosctl.overrides)
    replicate: int = 0  # 0: frames as given; K >= 1: every frame + seeded noise of +-1 grey level (replicate K)


@dataclass
class ObjectScore:
    """The scores of one object of one sequence (a row of the official per-sequence table)."""

    name: str  # "<seq>_<id>" (2017) or "<seq>" (2016)
    sequence: str
    object_id: int
    j: np.ndarray  # per scored frame (first and last frames excluded)
    f: np.ndarray
    j_stats: Statistics
    f_stats: Statistics

    @property
    def jf_mean(self) -> float:
        return (self.j_stats.mean + self.f_stats.mean) / 2.0

    def figures(self) -> dict[str, float]:
        return {
            "J&F-Mean": self.jf_mean,
            "J-Mean": self.j_stats.mean,
            "J-Recall": self.j_stats.recall,
            "J-Decay": self.j_stats.decay,
            "F-Mean": self.f_stats.mean,
            "F-Recall": self.f_stats.recall,
            "F-Decay": self.f_stats.decay,
        }


@dataclass
class SegmentationTiming:
    """Where the run-mode time went, summed over sequences."""

    frames: int = 0
    segment_seconds: float = 0.0  # inside the segmenter, decode excluded
    decode_seconds: float = 0.0
    write_seconds: float = 0.0
    total_seconds: float = 0.0  # decode + segment + write (+ the little glue between them)

    # The definitions of vosctl.results.FPS_DEFINITION (fps_total is its fps, fps_segment its segment_fps).
    @property
    def fps_segment(self) -> float | None:
        return rate(self.frames, self.segment_seconds)

    @property
    def fps_total(self) -> float | None:
        return rate(self.frames, self.total_seconds)


@dataclass
class BenchmarkReport:
    """Everything ``run_benchmark`` measured; ``to_dict()`` is the ``--json`` document."""

    year: str
    split: str
    davis_root: Path
    results: Path | None  # None when the masks went to a temporary folder
    objects: list[ObjectScore] = field(default_factory=list)
    sequences: list[str] = field(default_factory=list)  # scored, in order
    skipped: list[str] = field(default_factory=list)  # listed but not on disk
    frames_scored: int = 0
    eval_seconds: float = 0.0
    model: str | None = None
    device: str | None = None
    timing: SegmentationTiming | None = None  # None in eval-only mode
    # Parallel runs (--workers / --ray): the wall time of the segmenting phase, for aggregate fps.
    wall_seconds: float | None = None
    workers: int | None = None
    ray: str | None = None
    prompt: str | None = None  # "mask" or "box"; None in eval-only mode
    settings: list[str] = field(default_factory=list)  # the --set tracker settings the masks were made with
    replicate: int | None = None  # the input-noise replicate the masks were made from; None in eval-only mode

    def global_figures(self) -> dict[str, float]:
        """The official global row: means over all objects of all sequences."""
        if not self.objects:
            return {name: math.nan for name in GLOBAL_FIELDS}
        j_mean = float(np.mean([o.j_stats.mean for o in self.objects]))
        f_mean = float(np.mean([o.f_stats.mean for o in self.objects]))
        return {
            "J&F-Mean": (j_mean + f_mean) / 2.0,
            "J-Mean": j_mean,
            "J-Recall": float(np.mean([o.j_stats.recall for o in self.objects])),
            "J-Decay": float(np.mean([o.j_stats.decay for o in self.objects])),
            "F-Mean": f_mean,
            "F-Recall": float(np.mean([o.f_stats.recall for o in self.objects])),
            "F-Decay": float(np.mean([o.f_stats.decay for o in self.objects])),
        }

    @property
    def fps_segment(self) -> float | None:
        return None if self.timing is None else self.timing.fps_segment

    @property
    def fps_total(self) -> float | None:
        return None if self.timing is None else self.timing.fps_total

    def to_dict(self) -> dict[str, Any]:
        figures: dict[str, Any] = {k: _finite(v) for k, v in self.global_figures().items()}
        figures["fps"] = _finite(self.fps_segment)
        timing = self.timing
        return {
            "benchmark": f"DAVIS {self.year} {self.split}",
            "year": self.year,
            "split": self.split,
            "davis_root": str(self.davis_root),
            "results": None if self.results is None else str(self.results),
            "global": figures,
            "sequences": {
                o.name: {
                    "sequence": o.sequence,
                    "object_id": o.object_id,
                    "frames_scored": int(o.j.size),
                    **{k: _finite(v) for k, v in o.figures().items()},
                }
                for o in self.objects
            },
            # Where a row's figures come from: a J-Recall or a mean that moves can be traced to the
            # frames that moved (benchmarks/compare_frames.py). Scored frames start at frame 1.
            "per_frame": {o.name: {"first_frame": 1, "J": _curve(o.j), "F": _curve(o.f)} for o in self.objects},
            "sequences_scored": list(self.sequences),
            "skipped": list(self.skipped),
            "frames_scored": self.frames_scored,
            "eval_seconds": round(self.eval_seconds, 3),
            "model": self.model,
            "device": self.device,
            "fps_segment": _finite(self.fps_segment),
            "fps_total": _finite(self.fps_total),
            "frames_segmented": None if timing is None else timing.frames,
            "seconds_segment": None if timing is None else round(timing.segment_seconds, 3),
            "seconds_total": None if timing is None else round(timing.total_seconds, 3),
            "fps_note": FPS_NOTE,
            "workers": self.workers,
            "ray": self.ray,
            "prompt": self.prompt,
            "settings": list(self.settings),
            "replicate": self.replicate,
            "fps_aggregate": None
            if timing is None or not self.wall_seconds
            else _finite(timing.frames / self.wall_seconds),
        }


def _finite(value: float | None) -> float | None:
    """JSON has no NaN: NaN (e.g. a sequence too short to score) becomes null."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _curve(values: np.ndarray) -> list[float | None]:
    """A per-frame curve for JSON: 6 decimals (far below any difference that matters), NaN as null."""
    return [None if (value := _finite(v)) is None else round(value, 6) for v in values.tolist()]


# --------------------------------------------------------------------------- scoring


def evaluate_sequence(
    gt: np.ndarray,
    results: np.ndarray,
    object_ids: list[int],
    void: np.ndarray | None = None,
    bound_th: float = BOUND_TH,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame J and F, each ``(n_objects, T)``, for ``T x H x W`` label maps of the scored frames.

    Object ``k`` is ``labels == object_ids[k]`` in both stacks. ``void`` (optional ``T x H x W``
    bool) is excluded from both masks, as ``db_eval_iou`` / ``f_measure`` allow; the official
    semi-supervised evaluation passes none (its GT void pixels are already background), and so
    does ``run_benchmark``.
    """
    if gt.shape != results.shape:
        raise ValueError(f"ground truth {gt.shape} and results {results.shape} do not match")
    n_frames = gt.shape[0]
    j = np.empty((len(object_ids), n_frames), np.float64)
    f = np.empty((len(object_ids), n_frames), np.float64)
    for t in range(n_frames):
        keep = None if void is None else ~void[t]
        for k, object_id in enumerate(object_ids):
            g = gt[t] == object_id
            r = results[t] == object_id
            if keep is not None:
                g &= keep
                r &= keep
            union = np.count_nonzero(g | r)
            j[k, t] = 1.0 if union == 0 else np.count_nonzero(g & r) / union
            f[k, t] = f_measure(r, g, bound_th=bound_th)
    return j, f


def score_sequence(
    dataset: DavisDataset, sequence: DavisSequence, gt: np.ndarray, results: np.ndarray, object_ids: list[int]
) -> list[ObjectScore]:
    """Rows of one sequence from the label maps of its *scored* frames (first and last removed)."""
    j, f = evaluate_sequence(gt, results, object_ids)
    rows = []
    for k, object_id in enumerate(object_ids):
        name = sequence.name if dataset.binary else f"{sequence.name}_{object_id}"
        rows.append(ObjectScore(name, sequence.name, object_id, j[k], f[k], db_statistics(j[k]), db_statistics(f[k])))
    return rows


def scored_stems(sequence: DavisSequence) -> list[str]:
    """The frames the official semi-supervised evaluation scores: all but the first and the last."""
    return list(sequence.frame_stems[1:-1])


# --------------------------------------------------------------------------- segmentation


def replicate_noise(frame: np.ndarray, replicate: int, sequence: str, index: int) -> np.ndarray:
    """``frame`` plus uniform integer noise in {-1, 0, +1} per pixel and channel, clipped to 0..255.

    Replicate ``K`` of a benchmark: an imperceptible perturbation (below a codec's; JPEG and H.264
    move pixels by 2-6 levels), seeded by replicate, sequence and frame, so every run of replicate K
    sees the same frames. A sequence whose figure moves by a lot between replicates is one whose
    result hangs on a few frames by chance, and two settings are compared over several replicates.
    """
    rng = np.random.default_rng([replicate * 1_000_003 + index, zlib.crc32(sequence.encode())])
    noise = rng.integers(-1, 2, size=frame.shape, dtype=np.int16)
    return np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8)


class _TimedFrames:
    """Iterates RGB frames decoded from JPEG files (with replicate noise if asked), adding up the decode time."""

    def __init__(self, paths: list[Path], replicate: int = 0, sequence: str = "") -> None:
        self.paths = paths
        self.replicate, self.sequence = replicate, sequence
        self.decode_seconds = 0.0

    def __iter__(self) -> Iterator[np.ndarray]:
        import cv2

        for index, path in enumerate(self.paths):
            start = time.perf_counter()
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise InputError(f"cannot read frame {path}")
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # C-contiguous RGB, as the tracker expects
            if self.replicate:
                rgb = replicate_noise(rgb, self.replicate, self.sequence, index)
            self.decode_seconds += time.perf_counter() - start
            yield rgb


def _renumbered(results: Iterator[Any], ids: list[int]) -> Iterator[Any]:
    """Box prompts number objects 1..N; give them back the annotation's ids."""
    lookup = np.zeros(256, np.uint8)
    lookup[1 : len(ids) + 1] = ids
    for result in results:
        result.labels = lookup[result.labels]
        yield result


def _segment_sequence(
    segmenter: Any,
    dataset: DavisDataset,
    sequence: DavisSequence,
    results_dir: Path,
    timing: SegmentationTiming,
    options: BenchmarkOptions,
    on_frame: Callable[[], None] | None = None,
) -> np.ndarray:
    """Run the segmenter on one sequence, write ``results_dir/<seq>/*.png``; returns ``T x H x W`` labels.

    From ``options``: the prompt (mask or box) and the input-noise replicate.
    """
    from vosctl.io.atomic import AtomicPath

    start_total = time.perf_counter()
    first_labels = dataset.first_frame_labels(sequence)
    stems = list(sequence.frame_stems)
    frames = _TimedFrames([sequence.image_path(stem) for stem in stems], options.replicate, sequence.name)
    predictions = np.zeros((len(stems), *first_labels.shape), np.uint8)
    target = AtomicPath(results_dir / sequence.name, folder=True)
    write_seconds = 0.0
    inside_next = 0.0
    try:
        if first_labels.any() and options.prompt == "box":
            # Boxes of the first annotation, objects in id order (the tracker numbers boxes 1..N).
            from vosctl.geometry import mask_box

            ids = [int(i) for i in np.unique(first_labels) if i not in (0, 255)]
            boxes = [mask_box(first_labels == i) for i in ids]
            tracked = _renumbered(segmenter.track(frames, boxes=boxes), ids)
        elif first_labels.any():
            tracked = iter(segmenter.track(frames, labels=first_labels))
        else:  # nothing to follow: an all-background result, as a tracker would give
            tracked = iter(_EmptyTrack(frames, first_labels.shape))
        for t, stem in enumerate(stems):
            step_start = time.perf_counter()
            try:
                result = next(tracked)
            except StopIteration:
                raise InputError(f"sequence {sequence.name}: the segmenter stopped at frame {t}") from None
            inside_next += time.perf_counter() - step_start
            labels = np.asarray(result.labels)
            if labels.shape != first_labels.shape:
                raise InputError(
                    f"sequence {sequence.name}: frame {stem} is {labels.shape[1]}x{labels.shape[0]} but its "
                    f"annotation {first_labels.shape[1]}x{first_labels.shape[0]}"
                )
            predictions[t] = labels
            write_start = time.perf_counter()
            write_label_png(target.tmp / f"{stem}.png", labels)
            write_seconds += time.perf_counter() - write_start
            if on_frame is not None:
                on_frame()
        target.commit()
    except BaseException:
        target.abort()
        raise
    timing.frames += len(stems)
    # next() pulls (and so decodes) the frame inside the segmenter's generator: take it out.
    timing.segment_seconds += max(inside_next - frames.decode_seconds, 0.0)
    timing.decode_seconds += frames.decode_seconds
    timing.write_seconds += write_seconds
    timing.total_seconds += time.perf_counter() - start_total
    return predictions


@dataclass
class _EmptyResult:
    labels: np.ndarray


class _EmptyTrack:
    """Stands in for the tracker on a sequence whose first frame has no object."""

    def __init__(self, frames: _TimedFrames, shape: tuple[int, ...]) -> None:
        self.frames, self.shape = frames, shape

    def __iter__(self) -> Iterator[_EmptyResult]:
        for _ in self.frames:  # still decoded, so a broken frame is reported as in a real run
            yield _EmptyResult(np.zeros(self.shape, np.uint8))


def _segmenter_config(options: BenchmarkOptions) -> Any:
    from vosctl.tracker import SegmenterConfig

    config = SegmenterConfig(full_frame=options.full_frame, search_size=options.search_size)
    return apply_overrides(config, options.settings)


def _load_segmenter(options: BenchmarkOptions) -> Any:
    from vosctl.tracker import Segmenter

    return Segmenter.from_pretrained(
        options.model, device=options.device, config=_segmenter_config(options), threads=options.threads
    )


# --------------------------------------------------------------------------- the job


def _check_options(options: BenchmarkOptions, dataset: DavisDataset) -> None:
    if options.eval_only:
        if options.settings:
            raise InputError("--set changes how masks are made; --eval-only only scores masks that exist")
        if options.replicate:
            raise InputError("--replicate changes the frames masks are made from; --eval-only only scores masks")
        if options.results is None:
            raise InputError("--eval-only needs --results DIR (the folder with <sequence>/00000.png ... masks)")
        if not options.results.is_dir():
            raise InputError(f"results folder {options.results} does not exist")
        return
    if options.results is not None:
        # Writing results into the dataset itself would replace the ground truth or the frames.
        results = options.results.resolve()
        for protected in (dataset.annotation_root.resolve(), dataset.image_root.resolve()):
            if results == protected or results.is_relative_to(protected):
                raise InputError(f"--results {options.results} is inside the DAVIS dataset ({protected})")
        if results.exists() and not results.is_dir():
            raise InputError(f"--results {options.results} exists and is not a folder")


def run_benchmark(
    options: BenchmarkOptions,
    warn: Warn | None = None,
    progress: Any = None,
) -> BenchmarkReport:
    """Segment (unless ``eval_only``) and score the DAVIS sequences; returns the report.

    ``warn`` receives one line per sequence listed in the split but absent on disk (skipped).
    ``progress`` (optional) is a ``rich.progress.Progress``; a task is added to it.
    Raises ``InputError`` for a missing ROOT or split file, missing result frames, bad options.
    """
    if options.prompt not in ("mask", "box"):
        raise InputError(f"unknown --prompt '{options.prompt}' (use mask or box)")
    if options.replicate < 0:
        raise InputError(f"--replicate must be 0 (frames as given) or a positive number, got {options.replicate}")
    # Accept str paths from Python callers (the CLI passes Paths).
    options = dataclasses.replace(
        options,
        davis_root=Path(options.davis_root),
        results=None if options.results is None else Path(options.results),
    )
    dataset = DavisDataset(options.davis_root, str(options.year))
    _check_options(options, dataset)
    present, missing = dataset.find_sequences(options.split, options.sequences, need_images=not options.eval_only)
    for name in missing:
        if warn is not None:
            where = "frames and annotations" if not options.eval_only else "annotations"
            warn(f"sequence {name} not found under {dataset.root} (no {where}); skipped")
    for sequence in [s for s in present if len(s.frame_stems) < 3]:
        # The first and last frames are never scored: nothing would be left (the toolkit crashes).
        present.remove(sequence)
        missing.append(sequence.name)
        if warn is not None:
            warn(f"sequence {sequence.name} has {len(sequence.frame_stems)} frame(s), too few to score; skipped")
    if not present:
        raise InputError(
            f"none of the {len(missing)} requested sequence(s) of DAVIS {options.year} {options.split} "
            f"can be scored from {dataset.root}"
        )
    if not options.eval_only:
        _segmenter_config(options)  # a bad --set fails here, before a model loads or a mask is written

    report = BenchmarkReport(
        year=dataset.year,
        split=options.split,
        davis_root=dataset.root,
        results=options.results,
        skipped=missing,
        prompt=None if options.eval_only else options.prompt,
        settings=list(options.settings),
        replicate=None if options.eval_only else options.replicate,
    )
    task = None
    if progress is not None:
        total = sum(len(s.frame_stems) for s in present)
        task = progress.add_task("DAVIS", total=total)

    if options.eval_only:
        assert options.results is not None
        for sequence in present:  # fail before any work when a result frame is missing
            dataset.check_results(options.results, sequence, scored_stems(sequence))
        for sequence in present:
            if progress is not None:
                progress.update(task, description=sequence.name)
            start = time.perf_counter()
            stems = scored_stems(sequence)
            gt = dataset.read_annotations(sequence, stems)
            object_ids = dataset.object_ids(dataset.first_frame_labels(sequence))
            results = dataset.read_results(options.results, sequence, stems, gt.shape[1:], len(object_ids))
            report.objects.extend(score_sequence(dataset, sequence, gt, results, object_ids))
            report.sequences.append(sequence.name)
            report.frames_scored += len(stems)
            report.eval_seconds += time.perf_counter() - start
            if progress is not None:
                progress.advance(task, len(sequence.frame_stems))
        return report

    if options.workers is not None or options.ray is not None:
        _run_parallel(options, dataset, present, report, progress, task)
        return report
    segmenter = _load_segmenter(options)
    report.model = str(segmenter.model_name)
    report.device = str(segmenter.device)
    timing = SegmentationTiming()
    report.timing = timing
    on_frame = None if progress is None else (lambda: progress.advance(task, 1))
    # Without --results the masks only live as long as the run (a temporary folder, removed).
    scratch = tempfile.TemporaryDirectory(prefix="vosctl-davis-") if options.results is None else None
    with scratch if scratch is not None else contextlib.nullcontext():
        results_dir = options.results if options.results is not None else Path(scratch.name)
        for sequence in present:
            if progress is not None:
                progress.update(task, description=sequence.name)
            predictions = _segment_sequence(segmenter, dataset, sequence, results_dir, timing, options, on_frame)
            start = time.perf_counter()
            stems = scored_stems(sequence)
            gt = dataset.read_annotations(sequence, stems)
            object_ids = dataset.object_ids(dataset.first_frame_labels(sequence))
            report.objects.extend(score_sequence(dataset, sequence, gt, predictions[1:-1], object_ids))
            report.frames_scored += len(stems)
            report.sequences.append(sequence.name)
            report.eval_seconds += time.perf_counter() - start
    return report


# --------------------------------------------------------------------------- parallel runs


@dataclass
class SequenceTask:
    """One sequence for a worker (absolute paths: the worker may run elsewhere)."""

    options: BenchmarkOptions
    dataset: DavisDataset
    sequence: DavisSequence
    results: Path | None  # None: the worker writes into its own temporary folder


def segment_and_score_task(task: SequenceTask) -> dict[str, Any]:
    """Segment and score one sequence on a worker (model kept loaded for the worker's next tasks)."""
    from vosctl.errors import VosctlError
    from vosctl.jobs.pool import worker_cached, worker_threads

    options = task.options
    if options.threads is None and worker_threads() is not None:  # the worker's share of the cores
        options = dataclasses.replace(options, threads=worker_threads())
    try:
        segmenter = worker_cached(
            # The whole tracker configuration in the key (as batch workers do), not a list of its fields.
            ("segmenter", options.model, options.device, options.threads, repr(_segmenter_config(options))),
            lambda: _load_segmenter(options),
        )
        timing = SegmentationTiming()
        scratch = tempfile.TemporaryDirectory(prefix="vosctl-davis-") if task.results is None else None
        with scratch if scratch is not None else contextlib.nullcontext():
            results_dir = task.results if task.results is not None else Path(scratch.name)
            predictions = _segment_sequence(segmenter, task.dataset, task.sequence, results_dir, timing, options)
        start = time.perf_counter()
        stems = scored_stems(task.sequence)
        gt = task.dataset.read_annotations(task.sequence, stems)
        object_ids = task.dataset.object_ids(task.dataset.first_frame_labels(task.sequence))
        objects = score_sequence(task.dataset, task.sequence, gt, predictions[1:-1], object_ids)
    except VosctlError as error:
        return {"error": str(error), "exit_code": error.exit_code}
    return {
        "objects": objects,
        "timing": timing,
        "frames_scored": len(stems),
        "eval_seconds": time.perf_counter() - start,
        "model": str(segmenter.model_name),
        "device": str(segmenter.device),
    }


def _run_parallel(
    options: BenchmarkOptions,
    dataset: DavisDataset,
    present: list[DavisSequence],
    report: BenchmarkReport,
    progress: Any,
    task_id: Any,
) -> None:
    """Run mode with ``--workers`` / ``--ray``: one sequence per task, results in sequence order."""
    from vosctl.errors import VosctlError
    from vosctl.jobs.pool import TaskFailed, make_backend

    absolute = dataclasses.replace(dataset, root=dataset.root.absolute())
    results = None if options.results is None else options.results.absolute()
    tasks = [
        SequenceTask(options, absolute, absolute.sequence(s.name, need_images=True) or s, results) for s in present
    ]
    outcomes: dict[int, dict[str, Any]] = {}
    started = time.perf_counter()
    backend = make_backend(options.workers, options.ray, options.threads)
    for index, outcome in backend.run(segment_and_score_task, tasks):
        if isinstance(outcome, TaskFailed):
            outcome = {"error": f"sequence {present[index].name}: {outcome.message}", "exit_code": outcome.exit_code}
        outcomes[index] = outcome
        if progress is not None:
            progress.update(task_id, description=present[index].name)
            progress.advance(task_id, len(present[index].frame_stems))
    wall = time.perf_counter() - started
    errors = [outcomes[i] for i in sorted(outcomes) if "error" in outcomes[i]]
    if errors:  # as in a serial run, a sequence that cannot be segmented fails the benchmark
        error = InputError(errors[0]["error"]) if errors[0]["exit_code"] == 2 else VosctlError(errors[0]["error"])
        raise error
    timing = SegmentationTiming()
    for index in range(len(present)):
        outcome = outcomes[index]
        part: SegmentationTiming = outcome["timing"]
        timing.frames += part.frames
        timing.segment_seconds += part.segment_seconds
        timing.decode_seconds += part.decode_seconds
        timing.write_seconds += part.write_seconds
        timing.total_seconds += part.total_seconds
        report.objects.extend(outcome["objects"])
        report.sequences.append(present[index].name)
        report.frames_scored += outcome["frames_scored"]
        report.eval_seconds += outcome["eval_seconds"]
        report.model, report.device = outcome["model"], outcome["device"]
    report.timing = timing
    report.wall_seconds = wall
    report.workers = options.workers if options.ray is None else None
    report.ray = options.ray


# --------------------------------------------------------------------------- outputs


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _fmt(value: float | None, digits: int = 3) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def per_sequence_csv(report: BenchmarkReport) -> str:
    """The official ``per-sequence_results-<split>.csv`` text."""
    lines = [",".join(SEQUENCE_FIELDS)]
    lines += [f"{o.name},{_fmt(o.j_stats.mean)},{_fmt(o.f_stats.mean)}" for o in report.objects]
    return "\n".join(lines) + "\n"


def global_csv(report: BenchmarkReport) -> str:
    """The official ``global_results-<split>.csv`` text."""
    figures = report.global_figures()
    return ",".join(GLOBAL_FIELDS) + "\n" + ",".join(_fmt(figures[k]) for k in GLOBAL_FIELDS) + "\n"


def global_csv_path(csv_path: Path) -> Path:
    """Where the global CSV goes beside ``--csv FILE``: ``<stem>_global<suffix>`` (``.csv`` by default)."""
    return csv_path.with_name(f"{csv_path.stem}_global{csv_path.suffix or '.csv'}")


def _write_text(path: Path, text: str) -> None:
    from vosctl.io.atomic import atomic_write

    try:
        with atomic_write(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except OSError as error:
        raise InputError(f"cannot write {path}: {error.strerror or error}") from error


def write_outputs(report: BenchmarkReport, json_path: Path | None, csv_path: Path | None) -> list[Path]:
    """Write the requested JSON / CSV files atomically; returns the paths written."""
    written: list[Path] = []
    if json_path is not None:
        _write_text(json_path, json.dumps(report.to_dict(), indent=2) + "\n")
        written.append(json_path)
    if csv_path is not None:
        _write_text(csv_path, per_sequence_csv(report))
        _write_text(global_csv_path(csv_path), global_csv(report))
        written += [csv_path, global_csv_path(csv_path)]
    return written


def print_table(report: BenchmarkReport, file: Any = None) -> None:
    """One row per object, then the global row, then the speed line (rich table)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    out = file if file is not None else sys.stdout
    interactive = hasattr(out, "isatty") and out.isatty()
    console = Console(file=out, width=None if interactive else 120, highlight=False, soft_wrap=False)
    table = Table(
        title=f"DAVIS {report.year} {report.split} ({_count(len(report.sequences), 'sequence')}, "
        f"{_count(len(report.objects), 'object')})",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("Sequence", no_wrap=True)
    for name in GLOBAL_FIELDS:
        table.add_column(name, justify="right", no_wrap=True)
    for row in report.objects:
        figures = row.figures()
        table.add_row(row.name, *(_fmt(figures[k]) for k in GLOBAL_FIELDS))
    table.add_section()
    figures = report.global_figures()
    table.add_row("Global", *(_fmt(figures[k]) for k in GLOBAL_FIELDS), style="bold")
    console.print(table)
    if report.timing is not None:
        console.print(
            f"speed: {_fmt(report.fps_segment, 1)} fps segmenting, {_fmt(report.fps_total, 1)} fps with "
            f"decode and write ({report.timing.frames} frames, model {report.model}, device {report.device})"
        )
    if report.timing is not None and report.wall_seconds:
        where = f"Ray ({report.ray})" if report.ray else f"{report.workers} worker(s)"
        console.print(
            f"aggregate: {_fmt(report.timing.frames / report.wall_seconds, 1)} fps on {where} "
            f"({report.wall_seconds:.1f} s wall)"
        )
    console.print(f"scored {report.frames_scored} frames in {report.eval_seconds:.1f} s")


def _progress(enabled: bool) -> Any:
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )


def run_benchmark_cli(options: BenchmarkOptions) -> int:
    """``vosctl benchmark``: run, print the table on stdout, write --json / --csv; returns the exit code."""

    def warn(message: str) -> None:
        print(f"vosctl: warning: {message}", file=sys.stderr)

    progress = _progress(not options.quiet and sys.stderr.isatty())
    if progress is not None:
        progress.start()
    try:
        report = run_benchmark(options, warn=warn, progress=progress)
    finally:
        if progress is not None:
            progress.stop()
    write_outputs(report, options.json_path, options.csv_path)
    print_table(report)
    return 0
