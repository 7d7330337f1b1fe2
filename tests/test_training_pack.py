"""The device upload's data packing: what goes in comes back in the layouts training reads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from tests.synth import moving_square_frames, moving_square_labels, texture, write_davis2016

ROOT = Path(__file__).resolve().parents[1]


def _davis(root: Path, sequences: dict[str, int]) -> None:
    write_davis2016(
        root,
        {
            seq: (
                moving_square_frames(count, width=128, height=96, seed=seed),
                moving_square_labels(count, width=128, height=96, seed=seed),
            )
            for seed, (seq, count) in enumerate(sequences.items())
        },
    )


def _duts(root: Path, count: int) -> None:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    names = [f"img{i}" for i in range(count)]
    for i, name in enumerate(names):
        height, width = 60 + 10 * i, 90 - 5 * i
        image = np.ascontiguousarray(texture(i, height, width)[:, :, ::-1])
        mask = np.zeros((height, width), np.uint8)
        mask[10:40, 20 : 30 + i] = 255
        cv2.imwrite(str(root / "images" / f"{name}.jpg"), image)
        cv2.imwrite(str(root / "masks" / f"{name}.png"), mask)
    (root / "list.txt").write_text("\n".join(names) + "\n")


def test_pack_and_unpack_round_trip_without_the_held_out_sequences(tmp_path: Path) -> None:
    _davis(tmp_path / "davis", {"kept-a": 6, "held-out": 4, "kept-b": 5})
    _duts(tmp_path / "duts", 3)
    packed, restored = tmp_path / "packed", tmp_path / "restored"
    for command in (
        ["pack_training_data.py", tmp_path / "davis", tmp_path / "duts", packed, "--exclude", "held-out"],
        ["unpack_training_data.py", packed, restored],
    ):
        subprocess.run([sys.executable, ROOT / "scripts" / command[0], *command[1:]], check=True, capture_output=True)

    davis = restored / "davis"
    assert (davis / "ImageSets" / "2016" / "train.txt").read_text().split() == ["kept-a", "kept-b"]
    assert sorted(p.name for p in (packed / "davis" / "masks").iterdir()) == [
        "kept-a.bin",
        "kept-a.txt",
        "kept-b.bin",
        "kept-b.txt",
    ]  # nothing of the held-out sequence is packed
    for seq, count in (("kept-a", 6), ("kept-b", 5)):
        frames = sorted((davis / "JPEGImages" / "480p" / seq).glob("*.jpg"))
        assert len(frames) == count
        for frame in frames:
            original = cv2.imread(str(tmp_path / "davis" / "JPEGImages" / "480p" / seq / frame.name))
            restored_frame = cv2.imread(str(frame))
            assert restored_frame.shape == original.shape
            assert np.abs(restored_frame.astype(int) - original).mean() < 8  # H.264 at CRF 22, then JPEG
            # Masks are lossless (compressed bits): identical after the round trip.
            mask_in = cv2.imread(str(tmp_path / "davis" / "Annotations" / "480p" / seq / f"{frame.stem}.png"), 0)
            mask_out = cv2.imread(str(davis / "Annotations" / "480p" / seq / f"{frame.stem}.png"), 0)
            assert np.array_equal(mask_in > 0, mask_out > 0)

    duts = restored / "duts"
    names = (duts / "list.txt").read_text().split()
    assert names == ["img0", "img1", "img2"]
    for name in names:
        image = cv2.imread(str(duts / "images" / f"{name}.jpg"))
        mask = cv2.imread(str(duts / "masks" / f"{name}.png"), 0)
        original_mask = cv2.imread(str(tmp_path / "duts" / "masks" / f"{name}.png"), 0)
        assert image.shape[:2] == mask.shape == original_mask.shape  # each image cut back to its own size
        original = cv2.imread(str(tmp_path / "duts" / "images" / f"{name}.jpg"))
        assert np.abs(image.astype(int) - original).mean() < 8  # and it is that image, not a neighbour
        assert np.array_equal(mask > 0, original_mask > 0)


def test_an_upload_limit_leaves_the_static_images_what_the_tracked_files_and_sequences_do_not_take(
    tmp_path: Path,
) -> None:
    import pytest

    from tests.inproc import load_script

    pack = load_script("scripts/pack_training_data.py")
    mib = 2**20
    assert pack.static_budget(64 * mib, 18 * mib, 27 * mib, slack=mib) == 18 * mib
    with pytest.raises(SystemExit, match="nothing left for the static images"):
        pack.static_budget(64 * mib, 18 * mib, 46 * mib)
    assert pack.tracked_bytes(ROOT) > 1 * mib  # the shipped models alone are larger

    # Through the command: this repository's tracked files alone exceed a 1 MiB upload.
    _davis(tmp_path / "davis", {"kept": 3})
    _duts(tmp_path / "duts", 2)
    command = [ROOT / "scripts" / "pack_training_data.py", tmp_path / "davis", tmp_path / "duts", tmp_path / "p"]
    result = subprocess.run([sys.executable, *command, "--upload-mib", "1"], capture_output=True, text=True)
    assert result.returncode != 0 and "nothing left for the static images" in result.stderr


def test_a_2017_pack_keeps_the_object_ids_and_void(tmp_path: Path) -> None:
    """``--year 2017``: label maps travel as they are (ids and the 255 void), and training reads them."""
    from tests.synth import write_davis2017
    from vosctl.eval.davis import read_label_png
    from vosctl.train.data import DavisFrames, default_sequences

    sequences = {}
    for seed, (seq, count) in enumerate({"duo": 5, "held-out": 3}.items()):
        frames = moving_square_frames(count, width=128, height=96, seed=seed)
        labels = []
        for square in moving_square_labels(count, width=128, height=96, seed=seed):
            label = square.copy()
            label[80:90, 5:25] = 2  # a second object
            label[0:3, :] = 255  # void
            labels.append(label)
        sequences[seq] = (frames, labels)
    write_davis2017(tmp_path / "davis", sequences)
    _duts(tmp_path / "duts", 2)
    packed, restored = tmp_path / "packed", tmp_path / "restored"
    for command in (
        ["pack_training_data.py", tmp_path / "davis", tmp_path / "duts", packed, "--exclude", "held-out",
         "--year", "2017"],
        ["unpack_training_data.py", packed, restored],
    ):  # fmt: skip
        subprocess.run([sys.executable, ROOT / "scripts" / command[0], *command[1:]], check=True, capture_output=True)

    davis = restored / "davis"
    assert default_sequences(davis, "2017") == ["duo"]
    for t, label in enumerate(sequences["duo"][1]):
        assert np.array_equal(read_label_png(davis / "Annotations" / "480p" / "duo" / f"{t:05d}.png"), label)
    frames = DavisFrames(davis, ["duo"], "2017")
    assert frames.objects == [[1, 2]]
    assert np.array_equal(frames.masks[0][0], np.where(sequences["duo"][1][0] == 255, 0, sequences["duo"][1][0]))
