"""Batch manifests: one job per row, as CSV or JSON Lines, read and validated as a whole.

A manifest is what a pipeline hands to ``vosctl segment --manifest FILE`` (``-`` reads it from
stdin). Every row is checked before any work starts; every bad row is reported with its line
number, so a 10,000-row batch is never half-run because of a typo in row 9,000.

CSV: a header row names the columns; a field with several values (``box``, ``mask_at``,
``box_at``) separates them with ``;`` (a box itself has commas, so quote it: ``"10,10,40,30"``).
JSON Lines: one object per line; several values are lists (a box may also be ``[x, y, w, h]``).

Columns / keys (only ``input`` is required)::

    input        video file or frame folder
    mask         first-frame mask PNG           } one of these, or the command line's
    box          X,Y,W,H (several: ';' / list)  } --mask / --mask-pattern / --box
    output       this job's output folder (default: <stem>_vos/ beside the input, or in -o DIR)
    start_frame  frame index the prompt belongs to
    png overlay alpha track_json track_csv    output flags (true/false/1/0/yes/no, empty = default)
    alpha_format prores | webm | png | gray
    mask_at      FRAME:PATH prompts on later frames (several: ';' / list)
    box_at       FRAME:X,Y,W,H[:ID] prompts on later frames (several: ';' / list)
    direction    forward | backward | both

Relative paths are relative to the manifest's folder (stdin: the current folder), so a manifest
means the same thing whatever folder the batch is started from (which resume relies on).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from vosctl.errors import InputError
from vosctl.jobs.segment import ALPHA_FORMATS

PATH_FIELDS = ("input", "mask", "output")
LIST_FIELDS = ("box", "mask_at", "box_at")
BOOL_FIELDS = ("png", "overlay", "alpha", "track_json", "track_csv")
KNOWN_FIELDS = (
    "input",
    "mask",
    "box",
    "output",
    "start_frame",
    *BOOL_FIELDS,
    "alpha_format",
    "mask_at",
    "box_at",
    "direction",
)
DIRECTIONS = ("forward", "backward", "both")
_TRUE = {"1", "true", "yes", "y", "on"}
_FALSE = {"0", "false", "no", "n", "off"}


@dataclass
class ManifestJob:
    """One validated manifest row. ``None`` / empty means "not given: use the command line's value"."""

    line: int
    source: str  # the manifest's name, for messages ("jobs.csv", "<stdin>")
    input: Path
    mask: Path | None = None
    boxes: list[str] = field(default_factory=list)
    output: Path | None = None
    start_frame: int | None = None
    flags: dict[str, bool] = field(default_factory=dict)  # only the flags the row sets
    alpha_format: str | None = None
    mask_at: list[str] = field(default_factory=list)
    box_at: list[str] = field(default_factory=list)
    direction: str | None = None

    @property
    def name(self) -> str:
        """How messages name this job: ``jobs.csv:3 (clips/a.mp4)``."""
        return f"{self.source}:{self.line} ({self.input})"


class ManifestError(InputError):
    """The manifest has bad rows; ``problems`` holds one ``source:line: message`` per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(problems[0] if len(problems) == 1 else f"{len(problems)} problems in the manifest")
        self.problems = problems


def read_manifest(path: str | Path, stdin: TextIO | None = None) -> list[ManifestJob]:
    """Parse and validate a whole manifest (``-`` = stdin); raises :class:`ManifestError` listing every bad row."""
    if str(path) == "-":
        text = (stdin if stdin is not None else sys.stdin).read()
        source, base, kind = "<stdin>", Path.cwd(), _sniff(text)
    else:
        manifest = Path(path)
        if not manifest.is_file():
            raise InputError(f"manifest {manifest} does not exist")
        try:
            text = manifest.read_text(encoding="utf-8-sig")  # -sig: spreadsheets save CSV with a BOM
        except (OSError, UnicodeDecodeError) as error:
            raise InputError(f"cannot read manifest {manifest}: {error}") from error
        suffix = manifest.suffix.lower()
        kind = "jsonl" if suffix in (".jsonl", ".ndjson", ".json") else "csv" if suffix == ".csv" else _sniff(text)
        source, base = manifest.name, manifest.resolve().parent
    rows = _jsonl_rows(text) if kind == "jsonl" else _csv_rows(text)
    jobs: list[ManifestJob] = []
    problems: list[str] = []
    for line, row in rows:
        if isinstance(row, str):  # the reader could not even split this row
            problems.append(f"{source}:{line}: {row}")
            continue
        job, errors = _validate(row, line, source, base, csv_text=kind == "csv")
        problems.extend(f"{source}:{line}: {message}" for message in errors)
        if job is not None and not errors:
            jobs.append(job)
    if not rows and not problems:
        problems.append(f"{source}: the manifest has no jobs")
    if problems:
        raise ManifestError(problems)
    return jobs


def _sniff(text: str) -> str:
    """JSON Lines when the first non-blank character opens an object, else CSV."""
    stripped = text.lstrip()
    return "jsonl" if stripped.startswith("{") else "csv"


def _csv_rows(text: str) -> list[tuple[int, dict[str, Any] | str]]:
    reader = csv.reader(io.StringIO(text))
    rows: list[tuple[int, dict[str, Any] | str]] = []
    header: list[str] | None = None
    try:
        for record in reader:
            line = reader.line_num  # physical line where this record ends
            if not record or all(not cell.strip() for cell in record):
                continue
            if header is None:
                header = [cell.strip().lower() for cell in record]
                unknown = [name for name in header if name not in KNOWN_FIELDS]
                if unknown:
                    rows.append(
                        (line, f"unknown column(s) {', '.join(map(repr, unknown))} (known: {', '.join(KNOWN_FIELDS)})")
                    )
                if "input" not in header:
                    rows.append((line, "the header has no 'input' column"))
                if len(set(header)) != len(header):
                    rows.append((line, "a column is named twice in the header"))
                if unknown or "input" not in header or len(set(header)) != len(header):
                    return rows
                continue
            if len(record) > len(header):
                rows.append((line, f"{len(record)} fields but the header has {len(header)} columns"))
                continue
            values = {name: cell.strip() for name, cell in zip(header, record) if cell.strip()}
            rows.append((line, values))
    except csv.Error as error:
        rows.append((reader.line_num, f"cannot parse CSV: {error}"))
    return rows


def _jsonl_rows(text: str) -> list[tuple[int, dict[str, Any] | str]]:
    rows: list[tuple[int, dict[str, Any] | str]] = []
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as error:
            rows.append((line, f"not valid JSON ({error.msg} at column {error.colno})"))
            continue
        if not isinstance(value, dict):
            rows.append((line, "each line must be a JSON object"))
            continue
        rows.append((line, {k: v for k, v in value.items() if v is not None and v != "" and v != []}))
    return rows


def _as_list(value: Any, csv_text: bool) -> list[Any]:
    if isinstance(value, str):
        return [part.strip() for part in value.split(";") if part.strip()] if csv_text else [value]
    if isinstance(value, list):
        return value
    return [value]


def _validate(
    row: dict[str, Any], line: int, source: str, base: Path, csv_text: bool
) -> tuple[ManifestJob | None, list[str]]:
    """Check one row; returns the job and the row's problems (all of them, not just the first)."""
    from vosctl.io.prompts import parse_box

    errors: list[str] = []
    unknown = [key for key in row if key not in KNOWN_FIELDS]
    if unknown:
        errors.append(f"unknown key(s) {', '.join(map(repr, unknown))} (known: {', '.join(KNOWN_FIELDS)})")

    def path_of(key: str) -> Path | None:
        value = row.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            errors.append(f"'{key}' must be a path (a string)")
            return None
        return Path(value) if Path(value).is_absolute() else base / value

    input_path = path_of("input")
    if input_path is None and "input" not in row:
        errors.append("no 'input'")
    elif input_path is not None and not input_path.exists():
        errors.append(f"input {input_path} does not exist")
    mask = path_of("mask")
    if mask is not None and not mask.is_file():
        errors.append(f"mask {mask} does not exist")
    output = path_of("output")

    boxes: list[str] = []
    for item in _as_list(row.get("box", []), csv_text):
        text = ",".join(str(v) for v in item) if isinstance(item, list) else str(item)
        try:
            box = parse_box(text)
            if box.w <= 0 or box.h <= 0:
                raise ValueError("width and height must be positive")
            boxes.append(text)
        except (InputError, ValueError) as error:
            errors.append(f"bad box {text!r}: {error}")
    if mask is not None and boxes:
        errors.append("give either 'mask' or 'box', not both")

    start_frame: int | None = None
    if "start_frame" in row:
        value = row["start_frame"]
        try:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            start_frame = int(value)
            if start_frame < 0:
                raise ValueError
        except (TypeError, ValueError):
            errors.append(f"start_frame must be a whole number >= 0, not {value!r}")
            start_frame = None

    flags: dict[str, bool] = {}
    for key in BOOL_FIELDS:
        if key not in row:
            continue
        value = row[key]
        if isinstance(value, bool):
            flags[key] = value
        elif isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            flags[key] = value.lower() in _TRUE
        elif isinstance(value, int) and value in (0, 1):
            flags[key] = bool(value)
        else:
            errors.append(f"{key} must be true or false, not {value!r}")

    alpha_format = row.get("alpha_format")
    if alpha_format is not None and alpha_format not in ALPHA_FORMATS:
        errors.append(f"alpha_format must be one of {', '.join(ALPHA_FORMATS)}, not {alpha_format!r}")
    direction = row.get("direction")
    if direction is not None and direction not in DIRECTIONS:
        errors.append(f"direction must be one of {', '.join(DIRECTIONS)}, not {direction!r}")

    # Same syntax as --mask-at / --box-at (vosctl.prompting); a mask path is relative to the manifest.
    from vosctl.prompting import parse_box_at, parse_mask_at

    mask_at: list[str] = []
    for item in _as_list(row.get("mask_at", []), csv_text):
        try:
            spec = parse_mask_at(str(item))
        except InputError as error:
            errors.append(f"mask_at: {str(error).replace('--mask-at ', '')}")
            continue
        assert spec.path is not None
        path = spec.path if spec.path.is_absolute() else base / spec.path
        if not path.is_file():
            errors.append(f"mask_at mask {path} does not exist")
            continue
        mask_at.append(f"{spec.frame}:{path}")
    box_at: list[str] = []
    for item in _as_list(row.get("box_at", []), csv_text):
        try:
            parse_box_at(str(item))
        except InputError as error:
            errors.append(f"box_at: {str(error).replace('--box-at ', '')}")
            continue
        box_at.append(str(item).strip())

    if input_path is None:
        return None, errors
    job = ManifestJob(
        line=line,
        source=source,
        input=input_path,
        mask=mask,
        boxes=boxes,
        output=output,
        start_frame=start_frame,
        flags=flags,
        alpha_format=alpha_format,
        mask_at=mask_at,
        box_at=box_at,
        direction=direction,
    )
    return job, errors
