"""benchmarks/make_lookalike_davis.py: a twin of the target pasted behind it, ground truth unchanged."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.inproc import load_script
from tests.synth import square_mask, write_davis2016
from vosctl.eval.davis import DavisDataset

W, H, FRAMES = 96, 64, 6


def _script():
    return load_script("benchmarks/make_lookalike_davis.py")


def _square(t: int) -> np.ndarray:
    return square_mask(H, W, 20, 10 + 2 * t, 16)


def _blue_square() -> tuple[np.ndarray, np.ndarray]:
    """A grey frame with a blue 16 px square (BGR) at (20, 20), and the square's mask."""
    mask = square_mask(H, W, 20, 20, 16)
    frame = np.full((H, W, 3), 100, np.uint8)
    frame[mask] = (0, 0, 255)
    return frame, mask


def _moving_square(colour: tuple[int, int, int], down: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """RGB frames of a square of ``colour`` on grey, moving right, ``down`` px below :func:`_square`; its masks."""
    masks = [np.roll(_square(t), down, axis=0) for t in range(FRAMES)]
    frames = []
    for mask in masks:
        frame = np.full((H, W, 3), 100, np.uint8)
        frame[mask] = colour
        frames.append(frame)
    return frames, masks


def _davis(root: Path) -> Path:
    """A DAVIS-2016 folder: one sequence, a red square on a grey background, moving right."""
    return write_davis2016(root, {"sq": _moving_square((230, 40, 40))})


def test_add_twin_pastes_beside_the_target_and_never_over_it() -> None:
    add_twin = _script().add_twin
    frame, mask = _blue_square()
    out = add_twin(frame, mask, frame, mask, angle=0.0, distance=1.0)  # centre 16 px to the right
    assert np.array_equal(out[mask], frame[mask])
    twin = np.zeros((H, W), bool)
    twin[20:36, 36:52] = True
    core = np.zeros((H, W), bool)
    core[22:34, 38:50] = True  # inside the twin, away from its feathered edge
    assert (out[core][:, 2] > 240).all() and (out[core][:, 0] < 15).all()
    far_left = np.zeros((H, W), bool)
    far_left[:, :18] = True  # beyond the feathered edges of both squares
    assert np.array_equal(out[far_left], frame[far_left])
    # An empty mask on either side: the frame is returned as it is.
    empty = np.zeros((H, W), bool)
    assert add_twin(frame, empty, frame, mask, 0.0, 1.0) is frame
    assert add_twin(frame, mask, frame, empty, 0.0, 1.0) is frame
    # Scaled to the target's size, in the direction asked (straight down here).
    small = np.zeros((H, W), bool)
    small[5:13, 5:13] = True
    small_frame = np.full((H, W, 3), 100, np.uint8)
    small_frame[small] = (255, 0, 0)
    down = add_twin(frame, mask, small_frame, small, angle=math.pi / 2, distance=1.0)
    changed = np.any(down != frame, axis=2)
    ys, xs = np.nonzero(changed)
    assert not changed[mask].any() and ys.min() >= 33 and 40 <= ys.mean() <= 47 and 24 <= xs.mean() <= 31


def test_context_brings_the_twins_surroundings_and_never_touches_the_target() -> None:
    add_twin = _script().add_twin
    frame, mask = _blue_square()
    # The source frame: the same square on a green ground (its context).
    source = np.zeros((H, W, 3), np.uint8)
    source[...] = (0, 200, 0)
    source[mask] = (0, 0, 255)
    ring = np.zeros((H, W), bool)
    ring[20:36, 54:57] = True  # right of the twin (x 36..51): inside a 0.5 margin (8 px), beyond its feather
    alone = add_twin(frame, mask, source, mask, angle=0.0, distance=1.0)
    with_context = add_twin(frame, mask, source, mask, angle=0.0, distance=1.0, context=0.5)
    assert np.array_equal(with_context[mask], frame[mask])
    assert np.array_equal(alone[ring], frame[ring])  # the object alone: the ground stays grey
    green = (with_context[..., 1] > 150) & (with_context[..., 0] < 60)
    assert green[ring].mean() > 0.9
    twin_core = np.zeros((H, W), bool)
    twin_core[22:34, 38:50] = True
    assert (with_context[twin_core][:, 2] > 240).all()


def test_writes_a_davis_folder_with_the_ground_truth_unchanged(tmp_path: Path, capsys) -> None:
    source = _davis(tmp_path / "src")
    out = tmp_path / "twins"
    assert _script().main(["--davis", str(source), "--out", str(out)]) == 0
    assert "1 sequences, 6 frames" in capsys.readouterr().out
    dataset = DavisDataset(out, year="2016")
    assert dataset.split_sequences("train") == ["sq"]
    sequence = dataset.sequence("sq", need_images=True)
    assert sequence is not None and len(sequence.frame_stems) == FRAMES
    for t, stem in enumerate(sequence.frame_stems):
        assert np.array_equal(dataset.read_annotation(sequence.annotation_path(stem)) > 0, _square(t))
        image = cv2.imread(str(sequence.image_path(stem)))
        reddish = (image[..., 2] > 180) & (image[..., 0] < 90)
        assert reddish[~_square(t)].sum() > 100  # the twin: red pixels outside the target
    assert not list(tmp_path.glob(".twins*"))  # no temporary left behind
    # A name given twice is written once.
    again = tmp_path / "again"
    assert _script().main(["--davis", str(source), "--out", str(again), "--sequences", "sq,sq"]) == 0
    assert DavisDataset(again, year="2016").split_sequences("train") == ["sq"]


def _two_sequence_davis(root: Path) -> Path:
    """Two sequences: "a", a red square moving right; "b", a blue square moving right lower down."""
    return write_davis2016(root, {"a": _moving_square((230, 40, 40)), "b": _moving_square((40, 40, 230), down=20)})


def test_second_object_writes_a_two_object_davis2017_folder(tmp_path: Path) -> None:
    source = _davis(tmp_path / "src")
    out = tmp_path / "twins2"
    assert _script().main(["--davis", str(source), "--out", str(out), "--second-object"]) == 0
    assert not (out / "ImageSets" / "2016").exists()
    dataset = DavisDataset(out, year="2017")
    assert dataset.split_sequences("train") == ["sq"]
    sequence = dataset.sequence("sq", need_images=True)
    assert sequence is not None
    for t, stem in enumerate(sequence.frame_stems):
        labels = dataset.read_annotation(sequence.annotation_path(stem))
        assert np.array_equal(labels == 1, _square(t))  # the target's ground truth, unchanged
        twin = labels == 2
        image = cv2.imread(str(sequence.image_path(stem)))
        reddish = (image[..., 2] > 180) & (image[..., 0] < 90)
        # Object 2 is the pasted copy: red inside its label (away from the feathered edge), and it
        # holds most of the red outside the target.
        core = cv2.erode(twin.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        assert twin.sum() > 100 and reddish[core].mean() > 0.9
        assert (reddish & ~_square(t) & ~twin).sum() < 0.25 * (reddish & ~_square(t)).sum()
    assert dataset.object_ids(dataset.read_annotation(sequence.annotation_path(sequence.frame_stems[0]))) == [1, 2]


def test_partner_offset_pastes_another_sequences_object(tmp_path: Path) -> None:
    source = _two_sequence_davis(tmp_path / "src")
    out = tmp_path / "others"
    assert _script().main(["--davis", str(source), "--out", str(out), "--partner-offset", "1"]) == 0
    dataset = DavisDataset(out, year="2016")
    assert dataset.split_sequences("train") == ["a", "b"]
    # BGR channels: "a" (red, channel 2) gets b's blue square (channel 0), "b" gets a's red one.
    for name, own, other in (("a", 2, 0), ("b", 0, 2)):
        sequence = dataset.sequence(name, need_images=True)
        assert sequence is not None
        for stem in sequence.frame_stems:
            target = dataset.read_annotation(sequence.annotation_path(stem)) > 0
            image = cv2.imread(str(sequence.image_path(stem)))  # BGR
            outside = image[~target]
            pasted = (outside[:, other] > 180) & (outside[:, own] < 90)
            assert pasted.sum() > 50  # a 16 px square, partly behind the target or off the frame
            assert ((outside[:, own] > 180) & (outside[:, other] < 90)).sum() == 0  # no copy of itself


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sequences", "ghost"], "sequence 'ghost' has no frames"),
        (["--distance", "-1"], "--distance must be >= 0"),
        (["--context", "-0.5"], "--context must be >= 0"),
        (["--partner-offset", "-1"], "--partner-offset must be >= 0"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, capsys, args, message) -> None:
    source = _davis(tmp_path / "src")
    out = tmp_path / "twins"
    assert _script().main(["--davis", str(source), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not out.exists() and not list(tmp_path.glob(".twins*"))


def test_an_existing_output_is_refused(tmp_path: Path, capsys) -> None:
    source = _davis(tmp_path / "src")
    out = tmp_path / "twins"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert _script().main(["--davis", str(source), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"
