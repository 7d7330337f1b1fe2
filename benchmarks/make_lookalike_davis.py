"""A look-alike proxy benchmark: DAVIS-2016 sequences where a twin of the target circles behind it.

    python benchmarks/make_lookalike_davis.py --davis ../davis2016 --out ../davis-twins \\
        [--sequences a,b] [--split train] [--distance 0.8] [--context 0.5] \\
        [--second-object] [--partner-offset K]
    vosctl benchmark --davis ../davis-twins --split train [--year 2017] --json twins.json

Spill onto look-alikes is the failure that costs most on sequences nobody here has seen (a dog
onto flowers, a dancer onto the crowd, `flamingo` onto the bird behind), but the training
sequences hardly have any, so a change aimed at it could only be judged on the held-out set. This
makes such sequences from the training ones. In each frame, the same object from half a sequence
later (another pose), scaled to the target's current size, is pasted behind the target. The copy's
centre lies ``--distance`` x the target's longer side from the target's, so the two touch or
overlap, and it circles half a turn over the sequence, starting towards the frame's centre. The
ground truth is unchanged: the twin is background, and it never covers the target. The edges are
feathered (Gaussian, sigma 1 px) so no hard paste edge gives the twin away.

``--context C`` (default 0: the object alone) pastes the twin with its surroundings: the source
frame's window around the object, grown by C x its longer side on each side, feathered over a
third of that margin. With the object alone, the real target is told apart from an exact copy of
itself by the context around it, which the template crop holds (a 0.5 margin): with location and
prior neutral, v6 puts 89 % of its mask on the real object, and 60 % (near chance) when the copy
brings a 0.5 context (round 23, ``paste_bias.py``). Birds of a flock share their context. v6
loses 0.139 J&F on the 24 training sequences with ``--context 0.5`` twins (0.033 with the
object-only ones). Neither proxy predicted that round's held-out verdict on a look-alike fine-tune (both
ranked it above v6; the held-out set, -0.044), so both are diagnostics, not stand-ins for it.

Two options make multi-object proxies (round 27), written as DAVIS-2017 folders:

- ``--second-object``: the pasted object becomes object 2 of the ground truth (its pixels that the
  target does not cover; palette PNGs, ``ImageSets/2017/<split>.txt``), so a tracker follows both:
  a target with a look-alike behind it (``vosctl benchmark --davis OUT --year 2017``).
- ``--partner-offset K``: the pasted object comes from the sequence K places further in the list
  (cyclically) instead of the target's own, i.e. two different objects, the common DAVIS-2017 case.
  Its frame is the same "half a sequence later" index, wrapped to its length.

Without ``--second-object`` the output is a DAVIS-2016 folder (JPEG quality 95) with
``ImageSets/2016/<split>.txt`` listing the sequences. It is written to a temporary name and
renamed when complete; an existing ``--out`` is refused. The twins come from training sequences,
which the shipped models were trained on, so the figures are for comparing trackers, not for
quoting as accuracy. Round 27 measured how noisy the two-object proxies are: single objects swing
by up to +-0.27 J&F between two merge settings, so only large, repeated gains mean anything.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import cv2
import numpy as np

from vosctl.errors import InputError
from vosctl.eval.davis import DavisDataset
from vosctl.io.atomic import atomic_write


def _centre_and_side(mask: np.ndarray) -> tuple[float, float, float] | None:
    """Centroid (x, y) and longer box side of a binary mask; None when empty."""
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return None
    return float(xs.mean()), float(ys.mean()), float(max(np.ptp(xs), np.ptp(ys)) + 1)


def twin_matrix(mask: np.ndarray, twin_mask: np.ndarray, angle: float, distance: float) -> np.ndarray | None:
    """2x3 float32 matrix taking the twin's frame to the target's (see :func:`add_twin`); None when
    either mask is empty."""
    target, source = _centre_and_side(mask), _centre_and_side(twin_mask)
    if target is None or source is None:
        return None
    return _placement(target, source, angle, distance)


def _placement(
    target: tuple[float, float, float], source: tuple[float, float, float], angle: float, distance: float
) -> np.ndarray:
    """:func:`twin_matrix` from the two objects' centroids and longer sides."""
    scale = target[2] / source[2]
    x = target[0] + distance * target[2] * math.cos(angle)
    y = target[1] + distance * target[2] * math.sin(angle)
    return np.array([[scale, 0.0, x - scale * source[0]], [0.0, scale, y - scale * source[1]]], np.float32)


def add_twin(
    frame: np.ndarray,
    mask: np.ndarray,
    twin_frame: np.ndarray,
    twin_mask: np.ndarray,
    angle: float,
    distance: float,
    context: float = 0.0,
) -> np.ndarray:
    """``frame`` with the object of (``twin_frame``, ``twin_mask``) pasted behind the one in ``mask``.

    The twin is scaled to the target's longer side and centred ``distance`` x that side from the
    target's centroid, in direction ``angle`` (radians, image axes). With ``context`` > 0 the
    twin's surroundings come along: its box grown by ``context`` x its longer side on each side,
    feathered over a third of that margin. Pixels of ``mask`` are never changed. Returns a new
    uint8 frame; ``frame`` itself when either mask is empty.
    """
    target, source = _centre_and_side(mask), _centre_and_side(twin_mask)
    if target is None or source is None:
        return frame
    matrix = _placement(target, source, angle, distance)
    height, width = mask.shape
    twin = cv2.warpAffine(twin_frame, matrix, (width, height), flags=cv2.INTER_LINEAR)
    if context > 0:
        ys, xs = np.nonzero(twin_mask)
        grow = context * source[2]
        window = np.zeros(twin_mask.shape, np.float32)
        top, left = max(int(ys.min() - grow), 0), max(int(xs.min() - grow), 0)
        window[top : int(ys.max() + grow) + 1, left : int(xs.max() + grow) + 1] = 1.0
        alpha = cv2.warpAffine(window, matrix, (width, height), flags=cv2.INTER_LINEAR)
        alpha = cv2.GaussianBlur(alpha, (0, 0), max(1.0, context * target[2] / 3))
    else:
        alpha = cv2.warpAffine(twin_mask.astype(np.float32), matrix, (width, height), flags=cv2.INTER_LINEAR)
        alpha = cv2.GaussianBlur(alpha, (5, 5), 1.0)
    alpha[mask.astype(bool)] = 0.0  # behind the target
    blended = frame * (1.0 - alpha[..., None]) + twin * alpha[..., None]
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def read_sequence(dataset: DavisDataset, name: str) -> tuple[list[str], list[np.ndarray], np.ndarray]:
    """A sequence's frame stems, its frames (BGR uint8) and masks ((T, H, W) bool); InputError when
    it is missing or a frame cannot be read."""
    sequence = dataset.sequence(name, need_images=True)
    if sequence is None:
        raise InputError(f"sequence '{name}' has no frames or annotations under {dataset.root}")
    stems = list(sequence.frame_stems)
    frames = []
    for stem in stems:
        image = cv2.imread(str(sequence.image_path(stem)), cv2.IMREAD_COLOR)
        if image is None:
            raise InputError(f"cannot read frame {sequence.image_path(stem)}")
        frames.append(image)
    return stems, frames, dataset.read_annotations(sequence, stems) > 0


def write_sequence(
    dataset: DavisDataset,
    name: str,
    out: Path,
    distance: float,
    context: float = 0.0,
    partner: str | None = None,
    second_object: bool = False,
) -> int:
    """One sequence with its twin into ``out`` (DAVIS layout); returns the number of frames.

    ``partner``: the sequence whose object is pasted (default: ``name`` itself, a twin).
    ``second_object``: label the pasted object's visible pixels 2 (palette PNGs, DAVIS-2017).
    """
    stems, frames, masks = read_sequence(dataset, name)
    if partner is None or partner == name:
        partner_frames, partner_masks = frames, masks
    else:
        _, partner_frames, partner_masks = read_sequence(dataset, partner)
    first = _centre_and_side(masks[0])
    if first is None:
        raise InputError(f"sequence '{name}': the first annotation is empty")
    height, width = masks[0].shape
    start = math.atan2(height / 2 - first[1], width / 2 - first[0])  # towards the frame's centre
    image_dir = out / "JPEGImages" / "480p" / name
    annotation_dir = out / "Annotations" / "480p" / name
    image_dir.mkdir(parents=True)
    annotation_dir.mkdir(parents=True)
    count = len(stems)
    for t, stem in enumerate(stems):
        # Half a sequence later (another pose); a partner of another length wraps at its own end.
        source = (t + count // 2) % count % len(partner_frames)
        angle = start + math.pi * t / count
        twin_frame, twin_mask = partner_frames[source], partner_masks[source]
        frame = add_twin(frames[t], masks[t], twin_frame, twin_mask, angle, distance, context)
        cv2.imwrite(str(image_dir / f"{stem}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
        if second_object:
            _write_labels(annotation_dir / f"{stem}.png", _two_object_labels(masks[t], twin_mask, angle, distance))
        else:
            cv2.imwrite(str(annotation_dir / f"{stem}.png"), masks[t].astype(np.uint8) * 255)
    return count


def _two_object_labels(mask: np.ndarray, twin_mask: np.ndarray, angle: float, distance: float) -> np.ndarray:
    """Target 1; the pasted object 2 where it shows (placed as :func:`add_twin` places it, behind the target)."""
    labels = mask.astype(np.uint8)
    matrix = twin_matrix(mask, twin_mask, angle, distance)
    if matrix is not None:
        height, width = mask.shape
        placed = cv2.warpAffine(twin_mask.astype(np.float32), matrix, (width, height), flags=cv2.INTER_LINEAR) > 0.5
        labels[placed & ~mask] = 2
    return labels


def _write_labels(path: Path, labels: np.ndarray) -> None:
    """A DAVIS-2017 palette PNG (ids kept as palette indices)."""
    from PIL import Image

    from vosctl.io.palette import DAVIS_PALETTE_BYTES

    image = Image.fromarray(labels)
    image.putpalette(DAVIS_PALETTE_BYTES)
    image.save(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--davis", type=Path, required=True, help="DAVIS-2016 root to read")
    parser.add_argument("--out", type=Path, required=True, help="new DAVIS-2016 root to write (must not exist)")
    parser.add_argument("--split", default="train", help="split to read the sequences from, and to write")
    parser.add_argument("--sequences", default=None, help="comma-separated names (default: the whole split)")
    parser.add_argument("--distance", type=float, default=0.8, help="twin centre distance / target's longer side")
    parser.add_argument(
        "--context", type=float, default=0.0, help="paste the twin's surroundings too: margin / its longer side"
    )
    parser.add_argument(
        "--second-object", action="store_true", help="label the pasted object 2 and write a DAVIS-2017 folder"
    )
    parser.add_argument(
        "--partner-offset",
        type=int,
        default=0,
        help="paste the object of the sequence this many places further in the list (0: the target's own)",
    )
    args = parser.parse_args(argv)
    try:
        if args.out.exists():
            raise InputError(f"output {args.out} already exists")
        if args.distance < 0:
            raise InputError(f"--distance must be >= 0, got {args.distance}")
        if args.context < 0:
            raise InputError(f"--context must be >= 0, got {args.context}")
        if args.partner_offset < 0:
            raise InputError(f"--partner-offset must be >= 0, got {args.partner_offset}")
        dataset = DavisDataset(args.davis, year="2016")
        # A name given twice is written once (as split_sequences reads a split file).
        if args.sequences:
            names = list(dict.fromkeys(args.sequences.split(",")))
        else:
            names = dataset.split_sequences(args.split)
        if not names:
            raise InputError(f"no sequences to write (split '{args.split}' under {args.davis})")
        year = "2017" if args.second_object else "2016"
        with atomic_write(args.out, folder=True) as tmp:
            frames = sum(
                write_sequence(
                    dataset,
                    name,
                    tmp,
                    args.distance,
                    args.context,
                    partner=names[(i + args.partner_offset) % len(names)],
                    second_object=args.second_object,
                )
                for i, name in enumerate(names)
            )
            (tmp / "ImageSets" / year).mkdir(parents=True)
            (tmp / "ImageSets" / year / f"{args.split}.txt").write_text("\n".join(names) + "\n")
    except InputError as error:
        print(f"make_lookalike_davis: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {len(names)} sequences, {frames} frames with twins, to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
