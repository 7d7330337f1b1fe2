"""The DAVIS folder layout: splits, frames, ground truth and result masks.

::

    ROOT/ImageSets/<year>/<split>.txt          one sequence name per line
    ROOT/JPEGImages/480p/<seq>/00000.jpg ...   frames
    ROOT/Annotations/480p/<seq>/00000.png ...  ground truth (2016: 0/255 binary, 2017: palette ids)
    RESULTS/<seq>/00000.png ...                results, same names as the annotations

Masks are read as the official toolkits read them (Pillow, palette indices kept):

* 2016: any non-zero pixel is the object (GT and results), one object per sequence.
* 2017: palette ids; 255 in the GT is *void* and is set to background, as davis2017-evaluation
  does. Objects are ids ``1 .. max(first-frame GT)``. Results are read as ids too; an id above the
  number of objects is an error (the toolkit stops there as well).

Nothing here imports torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vosctl.errors import InputError

YEARS = ("2016", "2017")
VOID_LABEL = 255
RESOLUTION = "480p"


@dataclass(frozen=True)
class DavisSequence:
    """One sequence on disk: its name and frame stems (``00000`` ...), from the annotations."""

    name: str
    frame_stems: tuple[str, ...]
    annotation_dir: Path
    image_dir: Path

    def annotation_path(self, stem: str) -> Path:
        return self.annotation_dir / f"{stem}.png"

    def image_path(self, stem: str) -> Path:
        return self.image_dir / f"{stem}.jpg"


@dataclass(frozen=True)
class DavisDataset:
    """A DAVIS root for one year: reads the split and finds the sequences on disk."""

    root: Path
    year: str = "2017"

    def __post_init__(self) -> None:
        if self.year not in YEARS:
            raise InputError(f"unknown DAVIS year '{self.year}' (use {' or '.join(YEARS)})")
        if not self.root.is_dir():
            raise InputError(f"DAVIS root {self.root} does not exist or is not a folder")

    @property
    def binary(self) -> bool:
        """DAVIS 2016 is single-object: every non-zero pixel belongs to the object."""
        return self.year == "2016"

    @property
    def image_root(self) -> Path:
        return self.root / "JPEGImages" / RESOLUTION

    @property
    def annotation_root(self) -> Path:
        return self.root / "Annotations" / RESOLUTION

    def split_file(self, split: str) -> Path:
        return self.root / "ImageSets" / self.year / f"{split}.txt"

    def split_sequences(self, split: str) -> list[str]:
        """Sequence names listed in ``ImageSets/<year>/<split>.txt`` (order kept, duplicates dropped)."""
        path = self.split_file(split)
        if not path.is_file():
            raise InputError(f"split file {path} does not exist (is {self.root} a DAVIS {self.year} folder?)")
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        return list(dict.fromkeys(name for name in names if name))

    def sequence(self, name: str, need_images: bool) -> DavisSequence | None:
        """The sequence if its annotations (and, with ``need_images``, its frames) are on disk."""
        annotation_dir = self.annotation_root / name
        image_dir = self.image_root / name
        stems = _stems(annotation_dir, ".png")
        if not stems:
            return None
        if need_images:
            image_stems = _stems(image_dir, ".jpg")
            if not image_stems:
                return None
            if image_stems != stems:
                # Semi-supervised train/val sets annotate every frame; anything else cannot be scored.
                missing = sorted(set(image_stems) ^ set(stems))[:3]
                raise InputError(
                    f"sequence {name}: {len(image_stems)} frames but {len(stems)} annotations "
                    f"(first differences: {', '.join(missing)})"
                )
        return DavisSequence(name, tuple(stems), annotation_dir, image_dir)

    def find_sequences(
        self, split: str, names: list[str] | None = None, need_images: bool = True
    ) -> tuple[list[DavisSequence], list[str]]:
        """``(present, missing)``: the split's (or the given) sequences found on disk, and the others.

        The split file must exist even when ``names`` narrows the list, so a typo in ROOT or the
        split is caught early; names not listed in the split are still evaluated (as the official
        toolkit allows).
        """
        listed = self.split_sequences(split)
        wanted = list(dict.fromkeys(names)) if names else listed
        present: list[DavisSequence] = []
        missing: list[str] = []
        for name in wanted:
            sequence = self.sequence(name, need_images)
            if sequence is None:
                missing.append(name)
            else:
                present.append(sequence)
        return present, missing

    # ------------------------------------------------------------------ masks

    def read_annotation(self, path: Path) -> np.ndarray:
        """One ground-truth label map (uint8 H x W): 2016 -> 0/1; 2017 -> ids, void (255) -> 0."""
        labels = read_label_png(path)
        if self.binary:
            return (labels > 0).astype(np.uint8)
        labels[labels == VOID_LABEL] = 0
        return labels

    def read_annotations(self, sequence: DavisSequence, stems: list[str] | None = None) -> np.ndarray:
        """``T x H x W`` uint8 ground truth of the given frames (all frames by default)."""
        stems = list(sequence.frame_stems) if stems is None else stems
        first = self.read_annotation(sequence.annotation_path(stems[0]))
        stack = np.empty((len(stems), *first.shape), np.uint8)
        stack[0] = first
        for t, stem in enumerate(stems[1:], start=1):
            labels = self.read_annotation(sequence.annotation_path(stem))
            if labels.shape != first.shape:
                raise InputError(
                    f"sequence {sequence.name}: annotation {stem}.png is {labels.shape[1]}x{labels.shape[0]}, "
                    f"the first one {first.shape[1]}x{first.shape[0]}"
                )
            stack[t] = labels
        return stack

    def first_frame_labels(self, sequence: DavisSequence) -> np.ndarray:
        """The prompt for a tracker: the first annotation as a label map (2016: 0/1, 2017: ids)."""
        return self.read_annotation(sequence.annotation_path(sequence.frame_stems[0]))

    def object_ids(self, first_labels: np.ndarray) -> list[int]:
        """Objects scored for a sequence: ``1 .. max(first-frame GT)`` (2016: ``[1]``).

        Like the toolkit, an id missing from the first frame but below the maximum is still an
        object (it scores J = F = 1 on frames where neither GT nor result has it).
        """
        if self.binary:
            return [1]
        return list(range(1, int(first_labels.max(initial=0)) + 1))

    def check_results(self, results_dir: Path, sequence: DavisSequence, stems: list[str]) -> None:
        """Raise InputError naming the sequence and frame when a result PNG is missing."""
        folder = results_dir / sequence.name
        if not folder.is_dir():
            raise InputError(f"no results for sequence {sequence.name}: folder {folder} does not exist")
        present = set(_stems(folder, ".png"))
        for stem in stems:
            if stem not in present:
                raise InputError(
                    f"results for sequence {sequence.name}: frame {stem} is missing ({folder / (stem + '.png')})"
                )

    def read_results(
        self, results_dir: Path, sequence: DavisSequence, stems: list[str], shape: tuple[int, int], n_objects: int
    ) -> np.ndarray:
        """``T x H x W`` uint8 result label maps of the given frames from ``results_dir/<seq>/``.

        Raises InputError naming the sequence and frame for a missing or unreadable PNG, a size
        different from the annotations, or (2017) an object id the ground truth does not have.
        """
        folder = results_dir / sequence.name
        if not folder.is_dir():
            raise InputError(f"no results for sequence {sequence.name}: folder {folder} does not exist")
        stack = np.empty((len(stems), *shape), np.uint8)
        for t, stem in enumerate(stems):
            path = folder / f"{stem}.png"
            if not path.is_file():
                raise InputError(f"results for sequence {sequence.name}: frame {stem} is missing ({path})")
            labels = read_label_png(path, context=f"results for sequence {sequence.name}: frame {stem}")
            if labels.shape != shape:
                raise InputError(
                    f"results for sequence {sequence.name}: frame {stem} is {labels.shape[1]}x{labels.shape[0]}, "
                    f"the annotation {shape[1]}x{shape[0]}"
                )
            if self.binary:
                labels = (labels > 0).astype(np.uint8)
            else:
                top = int(labels.max(initial=0))
                if top > n_objects:
                    raise InputError(
                        f"results for sequence {sequence.name}: frame {stem} has object id {top} but the "
                        f"first-frame annotation has {n_objects} object(s)"
                    )
            stack[t] = labels
        return stack


def _stems(folder: Path, suffix: str) -> list[str]:
    """Sorted stems of the files with ``suffix`` in ``folder`` ([] when it does not exist)."""
    try:
        with os.scandir(folder) as entries:
            names = [e.name for e in entries if e.name.endswith(suffix) and not e.name.startswith(".")]
    except (FileNotFoundError, NotADirectoryError):
        return []
    # The toolkit sorts the paths (np.sort of glob): plain lexicographic order on the names.
    return [name[: -len(suffix)] for name in sorted(names)]


def read_label_png(path: Path, context: str | None = None) -> np.ndarray:
    """A mask PNG as a uint8 label map, the way the toolkit reads it (``np.array(Image.open())``).

    Palette (P) and grey (L) images give their indices / values. Because other tools write masks
    in other modes, more are accepted: grey/palette + alpha (LA/PA, the first channel; some
    original DAVIS-2016 annotations are LA), 1-bit images (0/1) and RGB(A) images drawn in the
    DAVIS palette (each colour mapped back to its id; black is 0).
    """
    from PIL import Image, UnidentifiedImageError

    what = context or str(path)
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            if mode in ("P", "L"):
                return np.array(image, dtype=np.uint8)
            if mode in ("LA", "PA"):
                # Grey/palette + alpha: a few original DAVIS-2016 annotations (bear/00077.png)
                # are stored like this; the labels are the first channel.
                return np.array(image, dtype=np.uint8)[..., 0].copy()
            if mode == "1":
                return np.array(image, dtype=np.uint8)
            if mode in ("RGB", "RGBA"):
                return _palette_ids(np.asarray(image.convert("RGB")), what)
            if mode in ("I;16", "I", "I;16B", "I;16L"):
                values = np.array(image)
                if values.max(initial=0) > 255:
                    raise InputError(f"{what}: label values above 255 in {path}")
                return values.astype(np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise InputError(f"{what}: cannot read {path} ({error})") from error
    raise InputError(f"{what}: unsupported PNG mode {mode} in {path} (write palette or greyscale masks)")


def _palette_ids(rgb: np.ndarray, what: str) -> np.ndarray:
    """Map an RGB image drawn in the DAVIS palette back to ids (vectorised lookup on packed colours)."""
    from vosctl.io.palette import DAVIS_PALETTE

    packed = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    palette = (DAVIS_PALETTE[:, 0].astype(np.uint32) << 16) | (DAVIS_PALETTE[:, 1].astype(np.uint32) << 8)
    palette |= DAVIS_PALETTE[:, 2]
    colours, inverse = np.unique(packed, return_inverse=True)
    # First id with each colour (the palette has distinct colours, so "first" is "the").
    order = np.argsort(palette, kind="stable")
    pos = np.searchsorted(palette[order], colours)
    pos = np.minimum(pos, len(order) - 1)
    found = palette[order][pos] == colours
    if not found.all():
        bad = int(colours[~found][0])
        raise InputError(
            f"{what}: colour ({bad >> 16}, {(bad >> 8) & 255}, {bad & 255}) is not a DAVIS palette colour "
            "(write palette PNGs)"
        )
    ids = order[pos].astype(np.uint8)
    return ids[inverse.reshape(rgb.shape[:2])]


def write_label_png(path: Path, labels: np.ndarray) -> None:
    """One result mask in DAVIS result format: a palette PNG, ids as indices, DAVIS colours."""
    from PIL import Image

    from vosctl.io.palette import DAVIS_PALETTE_BYTES

    image = Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8))  # mode L
    image.putpalette(DAVIS_PALETTE_BYTES)  # L + palette -> P, indices unchanged
    # Level 1: masks compress well anyway, higher levels cost several times the time.
    image.save(path, format="PNG", compress_level=1)
