"""benchmarks/paste_bias.py: the target beside a pasted copy of itself, crop centred between them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.inproc import load_script
from tests.synth import square_mask, texture, write_davis2016

W, H, FRAMES = 160, 120, 4


def _script():
    return load_script("benchmarks/paste_bias.py")


def _mask(t: int) -> np.ndarray:
    return square_mask(H, W, 50, 60 + 2 * t, 24)


def _frames() -> list[np.ndarray]:
    frames = []
    for t in range(FRAMES):
        frame = texture(3, H, W)
        frame[_mask(t)] = (230, 40, 40)
        frames.append(frame)
    return frames


def test_scene_centres_the_crop_between_target_and_copy() -> None:
    frames = _frames()
    scene = _script().make_scene(frames[0], _mask(0), frames[1], _mask(1), angle=0.0, context=0.0, search_size=96)
    assert scene is not None
    assert not (scene.target & scene.copy).any()
    # The copy sits to the right of the target, and the two are mirror images about the centre.
    target_x = np.nonzero(scene.target)[1].mean()
    copy_x = np.nonzero(scene.copy)[1].mean()
    assert copy_x > target_x and abs((target_x + copy_x) / 2 - 48) < 2
    assert abs(scene.target.sum() - scene.copy.sum()) <= 0.1 * scene.target.sum()
    red = (scene.search[..., 0] > 180) & (scene.search[..., 1] < 90)
    assert red[scene.copy].mean() > 0.8 and red[scene.target].mean() > 0.8
    assert scene.template.shape == (128, 128, 3) and scene.template_mask.max() > 0.5


def test_no_scene_when_the_copy_would_leave_the_frame_or_the_object_is_tiny() -> None:
    frames = _frames()
    edge = np.zeros((H, W), bool)
    edge[50:74, W - 24 :] = True  # at the right edge: a copy to the right falls outside
    assert _script().make_scene(frames[0], _mask(0), frames[1], edge, 0.0, 0.0, 96) is None
    tiny = np.zeros((H, W), bool)
    tiny[50:55, 60:65] = True
    assert _script().make_scene(frames[0], _mask(0), frames[1], tiny, 0.0, 0.0, 96) is None


def test_measures_shares_with_a_real_model(tmp_path: Path, capsys) -> None:
    root = write_davis2016(tmp_path / "davis", {"sq": (_frames(), [_mask(t) for t in range(FRAMES)])})
    args = ["--davis", str(root), "--sequences", "sq", "--scenes", "3", "--search-size", "96", "--model", "default"]
    assert _script().main(args) == 0
    out = capsys.readouterr().out
    assert "3 scenes" in out
    share = float(out.split("share on target ")[1].split()[0])
    assert 0.0 <= share <= 1.0


def test_bad_input_is_one_line(tmp_path: Path, capsys) -> None:
    assert _script().main(["--davis", str(tmp_path / "none"), "--sequences", "sq", "--model", "default"]) == 2
    err = capsys.readouterr().err.strip()
    assert "is not a folder" in err and "\n" not in err
    root = write_davis2016(tmp_path / "davis", {"sq": (_frames(), [_mask(t) for t in range(FRAMES)])})
    args = ["--davis", str(root), "--sequences", "sq", "--scenes", "1", "--search-size", "96"]
    assert _script().main([*args, "--model", str(tmp_path / "missing.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert "missing.pt" in err and "\n" not in err
