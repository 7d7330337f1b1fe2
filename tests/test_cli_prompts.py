"""`vosctl segment` with prompts on several frames and --direction, through the real CLI process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scenes import iou, moving_square, write_mask
from synth import decode_video, run_vosctl, write_frame_folder, write_video

# Keyframes every 5 frames with B-frames: the backward reader has to seek and reorder.
GOP_OPTIONS = {
    "preset": "ultrafast",
    "crf": "12",
    "x264-params": "keyint=5:min-keyint=5:bframes=2:b-adapt=0:scenecut=0",
}


vosctl = run_vosctl


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, list[np.ndarray]]:
    root = tmp_path_factory.mktemp("prompts")
    frames, truth = moving_square(frames=16)
    write_video(root / "square.mp4", frames, options=GOP_OPTIONS)
    for k in (0, 8, 15):
        write_mask(root / f"m{k}.png", truth[k])
    shifted = np.zeros_like(truth[0])
    shifted[170:230, 250:310] = 1  # plain background, far from the square: a prompt that fails
    write_mask(root / "wrong.png", shifted)
    return root, truth


def masks_of(folder: Path) -> dict[int, np.ndarray]:
    return {int(p.stem): np.array(Image.open(p)) for p in sorted(folder.glob("*.png"))}


def track_frames(path: Path) -> list[dict]:
    return json.loads(path.read_text())["frames"]


def test_correction_workflow(clip, tmp_path) -> None:
    root, truth = clip
    out = tmp_path / "out"
    args = ["segment", str(root / "square.mp4"), "--mask", str(root / "wrong.png")]
    run = vosctl(*args, "--mask-at", f"8:{root / 'm8.png'}", "-o", str(out), "--png", "--track-json", "--json")
    assert run.returncode == 0, run.stderr
    masks = masks_of(out / "masks")
    assert sorted(masks) == list(range(16))
    assert max(iou(masks[k] == 1, truth[k] == 1) for k in range(1, 8)) < 0.2  # the forced failure
    assert min(iou(masks[k] == 1, truth[k] == 1) for k in range(8, 16)) >= 0.8
    frames = track_frames(out / "track.json")
    assert [f["frame"] for f in frames] == list(range(16))
    assert {f["direction"] for f in frames} == {"forward"}
    assert [f["frame"] for f in frames if "prompt" in f] == [0, 8] and frames[8]["prompt"] == [1]
    summary = json.loads((out / "track.json").read_text())["objects"]["1"]
    assert summary["prompt_frames"] == [0, 8]


def test_both_directions_from_the_middle_of_a_video(clip, tmp_path) -> None:
    root, truth = clip
    out = tmp_path / "out"
    run = vosctl(
        "segment", str(root / "square.mp4"), "--mask", str(root / "m8.png"), "--start-frame", "8",
        "--direction", "both", "-o", str(out), "--png", "--overlay", "--track-json", "--json",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["frames"] == 16
    masks = masks_of(out / "masks")
    assert sorted(masks) == list(range(16))
    scores = [iou(masks[k] == 1, truth[k] == 1) for k in range(16)]
    assert min(scores) >= 0.8, scores
    frames = track_frames(out / "track.json")
    assert [f["frame"] for f in frames] == list(range(16))  # written in frame order
    assert [f["direction"] for f in frames] == ["backward"] * 8 + ["forward"] * 8
    assert len(decode_video(out / "overlay.mp4")) == 16
    assert not [p for p in tmp_path.rglob(".*tmp*")]


def test_backward_equals_forward_on_a_reversed_copy(tmp_path) -> None:
    frames, truth = moving_square(frames=12)
    write_frame_folder(tmp_path / "clip", frames)
    write_frame_folder(tmp_path / "reversed", frames[::-1])
    write_mask(tmp_path / "last.png", truth[11])
    back = vosctl(
        "segment", str(tmp_path / "clip"), "--mask", str(tmp_path / "last.png"), "--start-frame", "11",
        "--direction", "backward", "-o", str(tmp_path / "b"), "--png", "--track-json",
    )  # fmt: skip
    assert back.returncode == 0, back.stderr
    fwd = vosctl("segment", str(tmp_path / "reversed"), "--mask", str(tmp_path / "last.png"), "-o", str(tmp_path / "f"))
    assert fwd.returncode == 0, fwd.stderr
    backward, forward = masks_of(tmp_path / "b" / "masks"), masks_of(tmp_path / "f" / "masks")
    assert sorted(backward) == sorted(forward) == list(range(12))
    for k in range(12):
        assert np.array_equal(backward[k], forward[11 - k]), k
    assert {f["direction"] for f in track_frames(tmp_path / "b" / "track.json")} == {"backward"}


def test_object_added_by_box_later(clip, tmp_path) -> None:
    root, truth = clip
    out = tmp_path / "out"
    ys, xs = np.nonzero(truth[6])
    box = f"{xs.min() - 2},{ys.min() - 2},{xs.max() - xs.min() + 5},{ys.max() - ys.min() + 5}"
    run = vosctl(
        "segment", str(root / "square.mp4"), "--box", "5,5,30,30", "--box-at", f"6:{box}",
        "-o", str(out), "--png", "--track-json", "--json",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["objects"] == [1, 2]  # the new box got the next free id
    masks = masks_of(out / "masks")
    assert not any((masks[k] == 2).any() for k in range(6))
    assert np.mean([iou(masks[k] == 2, truth[k] == 1) for k in range(7, 16)]) >= 0.7
    frames = track_frames(out / "track.json")
    assert frames[6]["prompt"] == [2] and [o["object_id"] for o in frames[5]["objects"]] == [1]


@pytest.mark.parametrize(
    "case",
    ["beyond_end", "negative", "malformed_mask_at", "malformed_box_at", "wrong_size", "same_frame_and_id",
     "before_start", "bad_direction", "missing_mask_at", "box_id_range"],
)  # fmt: skip
def test_bad_prompts_exit_2_and_nothing_written(clip, tmp_path, case) -> None:
    root, _ = clip
    m8 = root / "m8.png"
    extra, expect = {
        "beyond_end": (["--mask-at", f"40:{m8}"], "beyond the last frame (15)"),
        "negative": ([f"--mask-at=-3:{m8}"], "negative"),
        "malformed_mask_at": (["--mask-at", "eight.png"], "FRAME:PATH"),
        "malformed_box_at": (["--box-at", "4:10,10,20"], "FRAME:X,Y,W,H"),
        "wrong_size": (["--mask-at", f"5:{root / 'small.png'}"], "20x10"),
        "same_frame_and_id": (["--mask-at", f"8:{m8}", "--box-at", "8:10,10,30,30:1"], "two prompts for object 1"),
        "before_start": (["--mask-at", f"2:{m8}", "--start-frame", "4", "--box", "1,1,9,9"], "--direction both"),
        "bad_direction": (["--direction", "sideways"], "sideways"),
        "missing_mask_at": (["--mask-at", f"3:{root / 'none.png'}"], "none.png"),
        "box_id_range": (["--box-at", "3:1,1,9,9:300"], "1..254"),
    }[case]
    Image.fromarray(np.full((10, 20), 255, np.uint8)).save(root / "small.png")
    first = [] if "--box" in extra else ["--mask", str(root / "m0.png")]
    out = tmp_path / "out"
    run = vosctl("segment", str(root / "square.mp4"), *first, *extra, "-o", str(out), "--png", "--track-json")
    assert run.returncode == 2, (run.returncode, run.stderr)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vosctl: error:") and expect in lines[0], run.stderr
    assert not out.exists() or list(out.rglob("*")) == []
    assert not [p for p in tmp_path.rglob(".*tmp*")] and not [p for p in root.rglob(".*tmp*")]
