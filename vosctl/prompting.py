"""Prompts on any frame: what they are, how the CLI spells them, and when a set of them is valid.

A :class:`Prompt` is what the user says about one frame: a label map (0 background, other values
object ids) and/or boxes by object id. On the tracker's start frame it defines the objects; on a
later frame (in the pass's direction) an id that is already tracked is a *correction* (the object
is tracked on from the given mask and its appearance memory takes that frame as its trusted
template), an id that is not is a *new object*. Ids absent from a prompt keep being tracked.

The CLI spells prompts ``--mask-at FRAME:PATH`` and ``--box-at FRAME:X,Y,W,H[:ID]`` (a box without
an id is a new object: it gets the next id above every id used by any prompt, in the order given).
``--mask``/``--box`` are the prompt of ``--start-frame``. Every check here runs before any frame is
segmented, and every problem is one :class:`InputError` line.

No torch here (the batch manifest reader and the CLI import it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vosctl.errors import InputError

DIRECTIONS = ("forward", "backward", "both")
BoxTuple = tuple[float, float, float, float]


@dataclass
class Prompt:
    """One frame's prompt: ``labels`` (uint8 H x W, ids kept) and/or ``boxes`` (object id -> x, y, w, h)."""

    labels: np.ndarray | None = None
    boxes: dict[int, BoxTuple] = field(default_factory=dict)
    sources: dict[int, str] = field(default_factory=dict)  # object id -> what the user gave (for messages)

    @property
    def ids(self) -> list[int]:
        ids = set(self.boxes)
        if self.labels is not None:
            ids.update(int(v) for v in np.unique(self.labels) if v)
        return sorted(ids)


def as_prompt(value: Any) -> Prompt:
    """A :class:`Prompt` from what the Python API accepts for one frame.

    A 2-D array is a label map; a mapping is boxes by object id; a list of boxes gets ids 1..N
    (as a first-frame ``boxes=`` list does); a :class:`Prompt` is kept.
    """
    if isinstance(value, Prompt):
        return value
    if isinstance(value, np.ndarray):
        return Prompt(labels=value)
    if isinstance(value, Mapping):
        return Prompt(boxes={int(k): _box_tuple(v) for k, v in value.items()})
    if isinstance(value, Sequence) and not isinstance(value, str):
        return Prompt(boxes={i: _box_tuple(v) for i, v in enumerate(value, start=1)})
    raise InputError(f"a prompt is a label map (2-D array) or boxes, not {type(value).__name__}")


def _box_tuple(value: Any) -> BoxTuple:
    try:
        x, y, w, h = (float(v) for v in value)
    except (TypeError, ValueError):
        raise InputError(f"box {value!r} is not (x, y, w, h)") from None
    return x, y, w, h


def normalise_prompts(prompts: Mapping[int, Any] | None) -> dict[int, Prompt]:
    """``{frame: labels | boxes | Prompt}`` -> ``{frame: Prompt}``; frames must be integers >= 0."""
    result: dict[int, Prompt] = {}
    for frame, value in (prompts or {}).items():
        if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)):
            raise InputError(f"prompt frame {frame!r} is not a frame number")
        if frame < 0:
            raise InputError(f"prompt frame {frame} is negative")
        result[int(frame)] = as_prompt(value)
    return result


def check_directions(frames: Iterable[int], start: int, direction: str, total: int | None = None) -> None:
    """Every prompt frame must be reached by a pass from ``start`` in ``direction`` and exist."""
    if direction not in DIRECTIONS:
        raise InputError(f"unknown direction '{direction}' (use {', '.join(DIRECTIONS)})")
    frames = sorted(frames)
    if start not in frames:
        raise InputError(f"no prompt on the start frame {start} (give --mask/--box, or --mask-at {start}:PATH)")
    for frame in frames:
        if total is not None and frame >= total:
            raise InputError(f"prompt at frame {frame} is beyond the last frame ({total - 1})")
        if direction == "forward" and frame < start:
            raise InputError(
                f"prompt at frame {frame} comes before the start frame {start} and is never reached going "
                "forward (use --direction both)"
            )
        if direction == "backward" and frame > start:
            raise InputError(
                f"prompt at frame {frame} comes after the start frame {start} and is never reached going "
                "backward (use --direction both)"
            )


# --------------------------------------------------------------------------- CLI spelling


@dataclass(frozen=True)
class PromptSpec:
    """A parsed ``--mask-at`` / ``--box-at`` (files not read yet)."""

    frame: int
    text: str  # the option value as given, for messages
    path: Path | None = None
    box: BoxTuple | None = None
    object_id: int | None = None  # boxes only; None: a new object


_FRAME = re.compile(r"\s*(-?\d+)\s*:(.*)$", re.S)


def _split_frame(option: str, text: str, form: str) -> tuple[int, str]:
    match = _FRAME.match(str(text))
    if not match or not match.group(2).strip():
        raise InputError(f"{option} '{text}' is not {form}")
    frame = int(match.group(1))
    if frame < 0:
        raise InputError(f"{option} '{text}': frame {frame} is negative")
    return frame, match.group(2)


def parse_mask_at(text: str) -> PromptSpec:
    """``FRAME:PATH`` (the path may itself contain ':')."""
    frame, rest = _split_frame("--mask-at", text, "FRAME:PATH (e.g. 120:fix.png)")
    return PromptSpec(frame, str(text), path=Path(rest))


def parse_box_at(text: str) -> PromptSpec:
    """``FRAME:X,Y,W,H`` (a new object) or ``FRAME:X,Y,W,H:ID`` (that object: a correction or a new id)."""
    from vosctl.io.prompts import parse_box

    form = "FRAME:X,Y,W,H or FRAME:X,Y,W,H:ID (e.g. 120:40,30,64,48:2)"
    frame, rest = _split_frame("--box-at", text, form)
    parts = rest.split(":")
    if len(parts) > 2:
        raise InputError(f"--box-at '{text}' is not {form}")
    object_id = None
    if len(parts) == 2:
        try:
            object_id = int(parts[1])
        except ValueError:
            raise InputError(f"--box-at '{text}': object id '{parts[1]}' is not a number") from None
        if not 1 <= object_id <= 254:
            raise InputError(f"--box-at '{text}': object id {object_id} is not in 1..254")
    try:
        box = parse_box(parts[0])
    except InputError:
        raise InputError(f"--box-at '{text}' is not {form}") from None
    return PromptSpec(frame, str(text), box=(box.x, box.y, box.w, box.h), object_id=object_id)


def parse_prompt_options(mask_at: Sequence[str], box_at: Sequence[str]) -> list[PromptSpec]:
    """All ``--mask-at`` then all ``--box-at`` values, parsed (syntax only)."""
    return [parse_mask_at(t) for t in mask_at] + [parse_box_at(t) for t in box_at]


def load_prompts(
    specs: Sequence[PromptSpec],
    width: int,
    height: int,
    start: int,
    first_labels: np.ndarray | None = None,
    first_boxes: Sequence[BoxTuple] | None = None,
    first_source: str = "--mask",
) -> dict[int, Prompt]:
    """Read the masks, validate the boxes, give id-less boxes new ids; ``{frame: Prompt}``.

    ``first_labels`` / ``first_boxes`` are the ``--mask`` / ``--box`` prompt of ``start`` (boxes
    get ids 1..N). Two prompts for the same object on the same frame are an error.
    """
    from vosctl.io.prompts import boxes_prompt, read_mask_prompt

    prompts: dict[int, Prompt] = {}

    def add_labels(frame: int, labels: np.ndarray, source: str) -> None:
        prompt = prompts.setdefault(frame, Prompt())
        for object_id in (int(v) for v in np.unique(labels) if v):
            _claim(prompt, frame, object_id, source)
        if prompt.labels is None:
            prompt.labels = labels
        else:  # several masks on one frame with different ids: one label map
            prompt.labels = np.where(labels > 0, labels, prompt.labels).astype(np.uint8)

    if first_labels is not None:
        add_labels(start, first_labels, first_source)
    for object_id, box in enumerate(first_boxes or [], start=1):
        _claim(prompts.setdefault(start, Prompt()), start, object_id, f"--box {_fmt_box(box)}")
        prompts[start].boxes[object_id] = box
    for spec in specs:
        if spec.path is not None:
            try:
                labels = read_mask_prompt(spec.path, width, height)
            except InputError as error:  # say which prompt: the same file may serve several frames
                raise InputError(f"--mask-at {spec.text}: {error}") from None
            add_labels(spec.frame, labels, f"--mask-at {spec.text}")
    used = {i for p in prompts.values() for i in p.ids} | {s.object_id for s in specs if s.object_id}
    next_id = max(used, default=0) + 1
    for spec in specs:
        if spec.box is None:
            continue
        box = boxes_prompt([spec.box], width, height)[0]  # clipped; off-frame or empty is an error
        object_id = spec.object_id
        if object_id is None:
            if next_id > 254:
                raise InputError(f"--box-at {spec.text}: no object id left (at most 254 objects)")
            object_id, next_id = next_id, next_id + 1
        prompt = prompts.setdefault(spec.frame, Prompt())
        _claim(prompt, spec.frame, object_id, f"--box-at {spec.text}")
        prompt.boxes[object_id] = (box.x, box.y, box.w, box.h)
    return prompts


def _claim(prompt: Prompt, frame: int, object_id: int, source: str) -> None:
    if object_id in prompt.sources:
        raise InputError(
            f"two prompts for object {object_id} at frame {frame} ({prompt.sources[object_id]} and {source})"
        )
    prompt.sources[object_id] = source


def _fmt_box(box: BoxTuple) -> str:
    return ",".join(f"{v:g}" for v in box)
