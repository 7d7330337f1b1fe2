"""Command-line interface: parse, call, report. No algorithm lives here.

Heavy imports (torch, the model, PyAV) happen inside the command functions so that
``vosctl --help`` and ``vosctl --version`` stay instant.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from vosctl import __version__
from vosctl.errors import InputError, VosctlError, one_line

app = typer.Typer(
    name="vosctl",
    help="Fast semi-supervised video object segmentation: give the first-frame mask or box, get every frame.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


# Options shared by `segment` and `benchmark`.
FullFrameOption = Annotated[
    bool, typer.Option("--full-frame", help="Ablation: search the whole frame instead of a crop.")
]
ModelOption = Annotated[
    str,
    typer.Option(
        "--model",
        help="Model name in models/ (default: v6, the most accurate; v5-fast: 1.2-1.6x faster, a little "
        "less accurate; v5, v3, v2, v1 for comparison) or a checkpoint path.",
    ),
]


def _check_search_size(value: int | None) -> int | None:
    if value is not None and value % 16:
        raise typer.BadParameter(f"{value} is not a multiple of 16")
    return value


SearchSizeOption = Annotated[
    int | None,
    typer.Option(
        "--search-size",
        min=64,
        callback=_check_search_size,
        help="Search crop side in pixels (a multiple of 16) that each object's search window is resampled "
        "to. Default: the model's own (v6: 288, v5-fast: 192). Smaller is faster, with coarser masks.",
    ),
]
SettingsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY=VALUE",
        help="Change a tracker setting; repeatable. E.g. --set memory.trusted_weight=0.75 "
        "(see 'Tracker settings' in the README).",
    ),
]
ThreadsOption = Annotated[
    int | None,
    typer.Option(
        "--threads",
        min=1,
        help="CPU threads for this process (network, OpenCV, FFmpeg). Default: OMP_NUM_THREADS if set, "
        "else the cores not busy with other processes. With xargs -P N / parallel runs, pass cores / N.",
    ),
]


def _fail(error: VosctlError) -> NoReturn:
    """One line on stderr, the error's exit code (2 for bad input, 1 otherwise)."""
    print(f"vosctl: error: {one_line(error)}", file=sys.stderr)
    raise typer.Exit(code=error.exit_code)


def _version_callback(value: bool) -> None:
    if value:
        print(f"vosctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """vosctl follows each first-frame object through a video (Siamese Dynamic Mask Estimation Network)."""


@app.command()
def segment(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(
            help="Video files or folders of frames. '-' reads one input path per line from stdin.",
            show_default=False,
        ),
    ] = None,
    mask: Annotated[
        Path | None,
        typer.Option("--mask", "-m", help="First-frame mask PNG (binary, DAVIS palette with ids, or RGBA alpha)."),
    ] = None,
    mask_pattern: Annotated[
        str | None,
        typer.Option(
            "--mask-pattern",
            help="Per-input mask path for batch use; {stem}, {name}, {dir} and {path} are replaced "
            "(e.g. '{dir}/{stem}.png').",
        ),
    ] = None,
    box: Annotated[
        list[str] | None,
        typer.Option("--box", "-b", help="First-frame box X,Y,W,H in pixels; repeat for several objects."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Output folder (default: <input stem>_vos/ beside the input). "
            "With several inputs: a parent folder that gets one <stem>_vos/ per input.",
        ),
    ] = None,
    png: Annotated[bool, typer.Option("--png", help="Write masks/00000.png ... (DAVIS palette).")] = False,
    overlay: Annotated[bool, typer.Option("--overlay", help="Write overlay.mp4 (H.264).")] = False,
    alpha: Annotated[bool, typer.Option("--alpha", help="Write an alpha matte for compositing.")] = False,
    alpha_format: Annotated[
        str,
        typer.Option(
            "--alpha-format", help="prores (.mov 4444), webm (VP9 alpha), png (RGBA sequence) or gray (mp4 matte)."
        ),
    ] = "prores",
    track_json: Annotated[
        bool, typer.Option("--track-json", help="Write track.json (box, area, score, lost per object and frame).")
    ] = False,
    track_csv: Annotated[
        bool, typer.Option("--track-csv", help="Write track.csv (same fields as track.json).")
    ] = False,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    model: ModelOption = "default",
    start_frame: Annotated[
        int,
        typer.Option(
            "--start-frame",
            min=0,
            help="Frame index the --mask/--box prompt belongs to; earlier frames are skipped unless "
            "--direction backward/both.",
        ),
    ] = 0,
    mask_at: Annotated[
        list[str] | None,
        typer.Option(
            "--mask-at",
            help="FRAME:PATH, a mask on another frame: its ids correct tracked objects or add new ones "
            "from that frame on; repeatable.",
        ),
    ] = None,
    box_at: Annotated[
        list[str] | None,
        typer.Option(
            "--box-at",
            help="FRAME:X,Y,W,H[:ID], a box on another frame: object ID (a correction or a new id), "
            "without ID a new object; repeatable.",
        ),
    ] = None,
    direction: Annotated[
        str,
        typer.Option(
            "--direction", help="forward, backward or both: propagate from --start-frame to the end, to 0, or both."
        ),
    ] = "forward",
    full_frame: FullFrameOption = False,
    search_size: SearchSizeOption = None,
    settings: SettingsOption = None,
    threads: ThreadsOption = None,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="torch, or onnx: the network in ONNX Runtime on CPU (pip install vosctl[onnx]; exported "
            "and cached at first use), or auto (onnx on a CPU without native bf16).",
        ),
    ] = "torch",
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite existing outputs.")] = False,
    allow_partial: Annotated[
        bool,
        typer.Option(
            "--allow-partial",
            help='A truncated or damaged video: keep the frames that decoded (a warning, "complete": false '
            "in --json) instead of failing.",
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    json_summary: Annotated[
        bool, typer.Option("--json", help="Print one JSON summary line per input on stdout.")
    ] = False,
    manifest: Annotated[
        str | None,
        typer.Option(
            "--manifest",
            help="Batch: one job per row of a CSV or JSONL file ('-' = stdin): input, mask or box, "
            "output, start_frame, output flags. Validated as a whole; complete jobs are skipped on a re-run.",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="Batch: N worker processes, each with its share of the cores."),
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            help="Batch on a Ray cluster: 'auto' (the cluster 'ray start' made), 'local', or an address. "
            "Needs pip install 'vosctl[ray]' and paths every node can reach.",
        ),
    ] = None,
) -> None:
    """Segment every frame of INPUT from a first-frame mask or boxes."""
    from vosctl.jobs.segment import SegmentOptions, run_segment_cli

    if manifest is not None and inputs:
        _fail(InputError("give input paths or --manifest, not both"))
    options = SegmentOptions(
        inputs=list(inputs or []),
        mask=mask,
        mask_pattern=mask_pattern,
        boxes=list(box or []),
        output=output,
        png=png,
        overlay=overlay,
        alpha=alpha,
        alpha_format=alpha_format,
        track_json=track_json,
        track_csv=track_csv,
        device=device,
        model=model,
        start_frame=start_frame,
        mask_at=list(mask_at or []),
        box_at=list(box_at or []),
        direction=direction,
        full_frame=full_frame,
        search_size=search_size,
        threads=threads,
        engine=engine,
        force=force,
        quiet=quiet,
        json_summary=json_summary,
        allow_partial=allow_partial,
        manifest=manifest,
        workers=workers,
        ray=ray,
        settings=list(settings or []),
    )
    try:
        code = run_segment_cli(options)
    except VosctlError as error:
        _fail(error)
    raise typer.Exit(code=code)


@app.command()
def benchmark(
    davis: Annotated[Path, typer.Option("--davis", help="DAVIS root (JPEGImages/480p, Annotations/480p, ImageSets).")],
    year: Annotated[str, typer.Option("--year", help="2016 (binary) or 2017 (multi-object).")] = "2016",
    split: Annotated[str, typer.Option("--split", help="Split name in ImageSets/<year>/.")] = "val",
    sequences: Annotated[str | None, typer.Option("--sequences", help="Comma-separated subset of sequences.")] = None,
    results: Annotated[Path | None, typer.Option("--results", help="Folder for (or with) result masks.")] = None,
    eval_only: Annotated[
        bool, typer.Option("--eval-only", help="Only evaluate the masks already in --results.")
    ] = False,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the figures as JSON here.")] = None,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="Write per-sequence rows as CSV here.")] = None,
    model: ModelOption = "default",
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    full_frame: FullFrameOption = False,
    search_size: SearchSizeOption = None,
    settings: SettingsOption = None,
    threads: ThreadsOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    prompt: Annotated[
        str, typer.Option("--prompt", help="Start from the first annotation's masks ('mask') or their boxes ('box').")
    ] = "mask",
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="N worker processes, one sequence per task, cores shared out."),
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option("--ray", help="Run the sequences as Ray tasks: 'auto', 'local' or a cluster address."),
    ] = None,
    replicate: Annotated[
        int,
        typer.Option(
            "--replicate",
            help="0: frames as given. K >= 1: every frame + seeded noise of +-1 grey level, replicate K, "
            "to tell a real difference between settings from chance (benchmarks/compare_replicates.py).",
        ),
    ] = 0,
) -> None:
    """Run vosctl on DAVIS and compute the official J and F measures (or evaluate another tool's masks)."""
    from vosctl.eval.benchmark import BenchmarkOptions, run_benchmark_cli

    options = BenchmarkOptions(
        davis_root=davis,
        year=year,
        split=split,
        sequences=[s for s in (sequences or "").split(",") if s] or None,
        results=results,
        eval_only=eval_only,
        json_path=json_path,
        csv_path=csv_path,
        model=model,
        device=device,
        full_frame=full_frame,
        search_size=search_size,
        threads=threads,
        quiet=quiet,
        prompt=prompt,
        workers=workers,
        ray=ray,
        settings=list(settings or []),
        replicate=replicate,
    )
    try:
        code = run_benchmark_cli(options)
    except VosctlError as error:
        _fail(error)
    raise typer.Exit(code=code)


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="Training config (JSON).")],
    resume: Annotated[
        bool, typer.Option("--resume/--no-resume", help="Resume from the run folder's last checkpoint.")
    ] = True,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    stop_at_step: Annotated[
        int | None,
        typer.Option("--stop-at-step", min=1, help="Stop (with a checkpoint) at this step; resume later."),
    ] = None,
) -> None:
    """Train the SiamDMN network from a JSON config (resumable)."""
    from vosctl.train.loop import train_from_config

    try:
        train_from_config(config, resume=resume, device=device, stop_at=stop_at_step)
    except VosctlError as error:
        _fail(error)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
