"""`vosctl segment` end to end through the real CLI process (exit codes, files, JSON, batch)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scenes import crossing_shapes, iou, moving_square, write_mask
from synth import run_vosctl, write_video

vosctl = run_vosctl


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, Path, list[np.ndarray]]:
    root = tmp_path_factory.mktemp("clip")
    frames, truth = moving_square(frames=12)
    write_video(root / "square.mp4", frames)
    write_mask(root / "square.png", truth[0])
    return root / "square.mp4", root / "square.png", truth


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*"))


def test_segment_default_outputs_and_json(clip, tmp_path) -> None:
    video, mask, truth = clip
    out = tmp_path / "out"
    run = vosctl(
        "segment", str(video), "--mask", str(mask), "-o", str(out), "--json", "--png", "--overlay", "--track-json"
    )
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["frames"] == 12 and summary["objects"] == [1]
    assert set(summary["lost_frames"]) == {"1"}
    names = sorted(p.name for p in out.iterdir())
    assert names == ["masks", "overlay.mp4", "track.json"]
    pngs = sorted((out / "masks").iterdir())
    assert [p.name for p in pngs][:2] == ["00000.png", "00001.png"] and len(pngs) == 12
    last = np.array(Image.open(pngs[-1]))
    assert Image.open(pngs[-1]).mode == "P"
    assert iou(last == 1, truth[-1] == 1) > 0.7
    assert not [p for p in tmp_path.rglob(".*tmp*")], "no temporary files may remain"


def test_default_output_folder_beside_input(clip, tmp_path) -> None:
    video, mask, _ = clip
    local = tmp_path / "clip.mp4"
    local.write_bytes(video.read_bytes())
    run = vosctl("segment", str(local), "--mask", str(mask), "--quiet")
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "clip_vos" / "masks" / "00011.png").is_file()
    assert (tmp_path / "clip_vos" / "overlay.mp4").is_file()


def test_existing_output_refused_then_forced(clip, tmp_path) -> None:
    video, mask, _ = clip
    out = tmp_path / "out"
    assert vosctl("segment", str(video), "--mask", str(mask), "-o", str(out), "--png", "-q").returncode == 0
    before = (out / "masks" / "00000.png").stat().st_mtime_ns
    again = vosctl("segment", str(video), "--mask", str(mask), "-o", str(out), "--png", "-q")
    assert again.returncode == 2
    assert "already exists" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    assert (out / "masks" / "00000.png").stat().st_mtime_ns == before
    forced = vosctl("segment", str(video), "--mask", str(mask), "-o", str(out), "--png", "-q", "--force")
    assert forced.returncode == 0, forced.stderr


@pytest.mark.parametrize(
    "case",
    [
        "missing_input",
        "undecodable",
        "wrong_size_mask",
        "empty_mask",
        "box_off_frame",
        "no_prompt",
        "missing_mask",
        "bad_setting",
    ],
)
def test_bad_input_exit_2_and_nothing_written(clip, tmp_path, case) -> None:
    video, mask, _ = clip
    out = tmp_path / "out"
    args = [str(video), "--mask", str(mask)]
    expect = ""
    if case == "missing_input":
        args, expect = [str(tmp_path / "nope.mp4"), "--mask", str(mask)], "does not exist"
    elif case == "undecodable":
        bad = tmp_path / "bad.mp4"
        bad.write_bytes(os.urandom(4096))
        args, expect = [str(bad), "--mask", str(mask)], "bad.mp4"
    elif case == "wrong_size_mask":
        small = tmp_path / "small.png"
        Image.fromarray(np.full((10, 20), 255, np.uint8)).save(small)
        args, expect = [str(video), "--mask", str(small)], "20x10"
    elif case == "empty_mask":
        empty = tmp_path / "empty.png"
        Image.fromarray(np.zeros((240, 320), np.uint8)).save(empty)
        args, expect = [str(video), "--mask", str(empty)], "object"
    elif case == "box_off_frame":
        args, expect = [str(video), "--box", "1000,1000,20,20"], "1000"
    elif case == "no_prompt":
        args, expect = [str(video)], "--mask"
    elif case == "missing_mask":
        args, expect = [str(video), "--mask", str(tmp_path / "none.png")], "none.png"
    elif case == "bad_setting":
        args, expect = [str(video), "--mask", str(mask), "--set", "memory.trusted_weight=2"], "memory.trusted_weight"
    run = vosctl("segment", *args, "-o", str(out))
    assert run.returncode == 2, (run.returncode, run.stderr)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0], run.stderr
    assert not out.exists() or files_under(out) == []
    assert not [p for p in tmp_path.rglob(".*tmp*")]


def test_never_overwrites_an_input(clip, tmp_path) -> None:
    video, mask, _ = clip
    out = tmp_path / "out"
    out.mkdir()
    victim = out / "overlay.mp4"
    victim.write_bytes(video.read_bytes())
    run = vosctl("segment", str(victim), "--mask", str(mask), "-o", str(out), "--force")
    assert run.returncode == 2 and "input" in run.stderr
    assert victim.read_bytes() == video.read_bytes()


def test_stdin_batch_with_mask_pattern(clip, tmp_path) -> None:
    video, mask, _ = clip
    for name in ("a", "b"):
        (tmp_path / f"{name}.mp4").write_bytes(video.read_bytes())
        (tmp_path / f"{name}.png").write_bytes(mask.read_bytes())
    listing = f"{tmp_path / 'a.mp4'}\n{tmp_path / 'b.mp4'}\n"
    run = vosctl("segment", "-", "--mask-pattern", "{dir}/{stem}.png", "--png", "--json", stdin=listing)
    assert run.returncode == 0, run.stderr
    summaries = [json.loads(line) for line in run.stdout.strip().splitlines()]
    assert [Path(s["input"]).name for s in summaries] == ["a.mp4", "b.mp4"]
    assert (tmp_path / "a_vos" / "masks" / "00011.png").is_file()
    assert (tmp_path / "b_vos" / "masks" / "00011.png").is_file()


def test_batch_continues_past_a_bad_input(clip, tmp_path) -> None:
    video, mask, _ = clip
    good = tmp_path / "good.mp4"
    good.write_bytes(video.read_bytes())
    run = vosctl("segment", str(tmp_path / "missing.mp4"), str(good), "--mask", str(mask), "--png", "--json")
    assert run.returncode == 2
    assert "missing.mp4" in run.stderr
    assert json.loads(run.stdout.strip())["input"] == str(good)


def test_multi_object_palette_ids_kept(tmp_path) -> None:
    frames, truth = crossing_shapes(frames=8)
    labels = truth[0].copy()
    labels[labels == 2] = 7  # ids are the user's, not 1..N
    write_video(tmp_path / "two.mp4", frames)
    write_mask(tmp_path / "two.png", labels)
    run = vosctl("segment", str(tmp_path / "two.mp4"), "--mask", str(tmp_path / "two.png"), "--png", "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["objects"] == [1, 7]
    ids = set(np.unique(np.array(Image.open(tmp_path / "two_vos" / "masks" / "00005.png"))))
    assert ids <= {0, 1, 7} and {1, 7} <= ids


def test_start_frame_keeps_input_frame_numbers(tmp_path) -> None:
    frames, truth = moving_square(frames=12)
    write_video(tmp_path / "v.mp4", frames)
    write_mask(tmp_path / "m4.png", truth[4])  # the prompt belongs to frame 4
    run = vosctl(
        "segment", str(tmp_path / "v.mp4"), "--mask", str(tmp_path / "m4.png"), "--start-frame", "4", "--png", "--json"
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["frames"] == 8
    names = sorted(p.name for p in (tmp_path / "v_vos" / "masks").iterdir())
    assert names[0] == "00004.png" and names[-1] == "00011.png" and len(names) == 8
    last = np.array(Image.open(tmp_path / "v_vos" / "masks" / "00011.png"))
    assert iou(last == 1, truth[11] == 1) > 0.7


def test_search_size_option(clip, tmp_path) -> None:
    """--search-size resamples the same search window: a smaller crop still follows the square."""
    video, mask, truth = clip
    out = tmp_path / "small"
    run = vosctl("segment", str(video), "--mask", str(mask), "-o", str(out), "--png", "--search-size", "192")
    assert run.returncode == 0, run.stderr
    last = np.array(Image.open(sorted((out / "masks").iterdir())[-1]))
    assert iou(last == 1, truth[-1] == 1) > 0.7
    bad = vosctl("segment", str(video), "--mask", str(mask), "-o", str(tmp_path / "bad"), "--search-size", "200")
    assert bad.returncode == 2 and "multiple of 16" in bad.stderr
    assert not (tmp_path / "bad").exists()


def test_set_option_changes_tracker_settings(clip, tmp_path) -> None:
    """--set reaches the tracker (a prompt-heavy memory, a weaker motion penalty) and still follows the square."""
    video, mask, truth = clip
    out = tmp_path / "set"
    run = vosctl("segment", str(video), "--mask", str(mask), "-o", str(out), "--png",
                 "--set", "memory.trusted_weight=0.75", "--set", "window_influence=0.2")  # fmt: skip
    assert run.returncode == 0, run.stderr
    last = np.array(Image.open(sorted((out / "masks").iterdir())[-1]))
    assert iou(last == 1, truth[-1] == 1) > 0.7


def test_bad_setting_refused_before_batch_workers_start(clip, tmp_path) -> None:
    video, mask, _ = clip
    copies = []
    for name in ("a.mp4", "b.mp4"):
        copies.append(tmp_path / name)
        copies[-1].write_bytes(video.read_bytes())
    run = vosctl("segment", *map(str, copies), "--mask", str(mask), "--workers", "2",
                 "--set", "presence.lost_patiense=3")  # fmt: skip
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1, run.stderr  # once, not per job
    assert "presence.lost_patiense" in run.stderr and "presence.lost_patience" in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "b.mp4"]
