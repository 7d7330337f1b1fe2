"""Frame readers: containers, frame folders, rotation, start frame, bad input."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from synth import moving_square_frames, write_frame_folder, write_video

from vosctl.errors import InputError
from vosctl.io import open_video
from vosctl.io.video import clockwise_rotation, natural_key, rotate_upright

W, H, N = 64, 48, 8


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return moving_square_frames(N, W, H)


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    """Lossy codecs at high quality: the mean error stays small."""
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean()) < 12


@pytest.mark.parametrize(
    ("ext", "fps"),
    [("mp4", Fraction(25)), ("mkv", Fraction(30000, 1001)), ("webm", Fraction(24)), ("avi", Fraction(25)),
     ("mov", Fraction(30))],
)  # fmt: skip
def test_video_containers(tmp_path: Path, frames: list[np.ndarray], ext: str, fps: Fraction) -> None:
    path = write_video(tmp_path / f"clip.{ext}", frames, fps=fps)
    with open_video(path) as source:
        assert source.path == path
        assert source.fps == pytest.approx(float(fps), rel=1e-4)
        assert (source.width, source.height, source.rotation) == (W, H, 0)
        # mp4/mov/avi store the count; mkv/webm only a duration, from which it is estimated.
        assert source.frame_count == N
        got = list(source)
    assert [f.index for f in got] == list(range(N))
    assert [f.timestamp for f in got] == pytest.approx([i / float(fps) for i in range(N)], abs=2e-3)
    for frame, expected in zip(got, frames, strict=True):
        assert frame.rgb.dtype == np.uint8 and frame.rgb.shape == (H, W, 3)
        assert frame.rgb.flags["C_CONTIGUOUS"]
        assert _close(frame.rgb, expected)


def test_video_iterates_again_from_the_start(tmp_path: Path, frames: list[np.ndarray]) -> None:
    path = write_video(tmp_path / "clip.mp4", frames)
    with open_video(path) as source:
        first = [f.rgb for f in source]
        second = [f.rgb for f in source]
    assert len(first) == len(second) == N
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def test_start_frame_skips_but_keeps_indices(tmp_path: Path, frames: list[np.ndarray]) -> None:
    video = write_video(tmp_path / "clip.mp4", frames)
    folder = tmp_path / "frames"
    write_frame_folder(folder, frames)
    for path in (video, folder):
        with open_video(path, start_frame=5) as source:
            got = list(source)
            assert source.frame_count == N  # the whole input, not what is left
        assert [f.index for f in got] == [5, 6, 7]
        assert _close(got[0].rgb, frames[5])


def test_frame_folder_natural_order(tmp_path: Path) -> None:
    # Frame i is a flat grey of brightness 20*i: the order read back is visible in the pixels.
    flats = [np.full((H, W, 3), 20 * i, np.uint8) for i in range(12)]
    names = [f"frame{i}.png" for i in range(11)] + ["frame11.JPG"]
    write_frame_folder(tmp_path, flats, names)
    (tmp_path / "notes.txt").write_text("not a frame")
    (tmp_path / ".hidden.png").write_bytes(b"")
    with open_video(tmp_path, fps=10) as source:
        assert (source.width, source.height, source.frame_count, source.fps) == (W, H, 12, 10.0)
        got = list(source)
    assert [f.index for f in got] == list(range(12))
    assert [int(f.rgb.mean().round()) for f in got] == [20 * i for i in range(12)]
    assert got[3].timestamp == pytest.approx(0.3)
    assert sorted(["f10", "f2", "f1", "F3"], key=natural_key) == ["f1", "f2", "F3", "f10"]


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_metadata_is_applied(tmp_path: Path, rotation: int) -> None:
    # A white marker in the coded frame's top-left corner; after a clockwise turn of 90 it must be
    # top-right, after 180 bottom-right, after 270 bottom-left.
    coded = np.full((H, W, 3), 40, np.uint8)
    coded[:12, :12] = 255
    path = write_video(tmp_path / "phone.mp4", [coded] * 3, rotation=rotation)
    with open_video(path) as source:
        assert source.rotation == rotation
        expected_size = (H, W) if rotation in (90, 270) else (W, H)
        assert (source.width, source.height) == expected_size
        rgb = next(iter(source)).rgb
    assert rgb.shape == (source.height, source.width, 3) and rgb.flags["C_CONTIGUOUS"]
    corners = {"tl": rgb[:6, :6], "tr": rgb[:6, -6:], "br": rgb[-6:, -6:], "bl": rgb[-6:, :6]}
    bright = {name for name, patch in corners.items() if patch.mean() > 200}
    assert bright == {{90: "tr", 180: "br", 270: "bl"}[rotation]}


def test_rotation_conventions() -> None:
    # Display matrix angles are counter-clockwise (FFmpeg); the legacy 'rotate' tag is clockwise.
    assert clockwise_rotation(-90.0) == 90
    assert clockwise_rotation(90.0) == 270
    assert clockwise_rotation(180.0) == 180
    assert clockwise_rotation(0.0, "90") == 90
    assert clockwise_rotation(None, "junk") == 0
    image = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert rotate_upright(image, 90).tolist() == [[3, 0], [4, 1], [5, 2]]


def test_missing_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nope.mp4 does not exist"):
        open_video(tmp_path / "nope.mp4")


def test_undecodable_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(InputError) as info:
        open_video(junk)
    message = str(info.value)
    assert "junk.mp4" in message and "\n" not in message


def test_empty_and_broken_frame_folders(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no .jpg/.jpeg/.png frames"):
        open_video(tmp_path)
    (tmp_path / "00000.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="00000.png"):
        open_video(tmp_path)


def test_frame_folder_size_change(tmp_path: Path) -> None:
    write_frame_folder(tmp_path, [np.zeros((H, W, 3), np.uint8), np.zeros((H, W + 2, 3), np.uint8)])
    with open_video(tmp_path) as source, pytest.raises(InputError, match="00001.png is 66x48"):
        list(source)
