"""Issue #11: bad inputs and hostile conditions through the real CLI: one line, right exit code,
nothing half-written, nothing left behind. One test (or more) per row of the issue's table."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from inproc import leftovers
from PIL import Image
from scenes import moving_square, write_mask
from synth import moving_square_frames, moving_square_labels, write_timed_video, write_video

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("clip")
    frames, truth = moving_square(frames=8)
    write_video(root / "square.mp4", frames)
    write_mask(root / "square.png", truth[0])
    return root / "square.mp4", root / "square.png"


def _subprocess_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def _vosctl(*args: str | Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vosctl.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=_subprocess_env(),
        timeout=300,
        **kwargs,
    )


# ---------------------------------------------------------------- --mask-pattern, created folders


@pytest.mark.parametrize("pattern", ["{nope}.png", "{stem.upper}.png", "{0}.png", "{stem.png", "x}.png"])
def test_mask_pattern_with_unknown_field_is_one_line(cli, clip, tmp_path, pattern) -> None:
    video, _ = clip
    run = cli("segment", video, "--mask-pattern", pattern, "-o", tmp_path / "out")
    assert run.exception is None, run.crash()
    assert run.code == 2
    assert len(run.error_lines) == 1 and run.error_lines[0].startswith("vosctl: error: --mask-pattern")
    assert "{dir}, {stem}, {name}, {path}" in run.error_lines[0]
    assert leftovers(tmp_path) == []


def test_wrong_size_mask_creates_no_output_folders(cli, clip, tmp_path) -> None:
    video, _ = clip
    small = tmp_path / "small.png"
    Image.fromarray(np.full((10, 20), 255, np.uint8)).save(small)
    run = cli("segment", video, "--mask", small, "-o", tmp_path / "a" / "b" / "c" / "out")
    assert run.code == 2 and "20x10" in run.stderr and len(run.error_lines) == 1
    assert leftovers(tmp_path, {small}) == []  # not even a/b/c


# ---------------------------------------------------------------- SIGTERM, stale temporaries


def test_sigterm_cleans_up_like_ctrl_c(tmp_path) -> None:
    frames = moving_square_frames(600, 64, 48)
    video = write_video(tmp_path / "long.mp4", frames)
    mask = tmp_path / "m.png"
    Image.fromarray(moving_square_labels(1, 64, 48)[0] * 255).save(mask)
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "vosctl.cli", "segment", str(video), "--mask", str(mask), "-o", str(out), "--png"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_subprocess_env(),
    )
    staging = tmp_path / f".out.tmp-{process.pid}"
    deadline = time.monotonic() + 120
    while not (staging / f".masks.tmp-{process.pid}").exists() and process.poll() is None:
        assert time.monotonic() < deadline, "the run never started writing"
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before it could be interrupted; make the clip longer"
    time.sleep(0.3)  # some frames written
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, (process.returncode, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "terminated by SIGTERM" in lines[0], stderr
    assert leftovers(tmp_path, {video, mask}) == []


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temporaries_of_dead_runs_are_removed_and_reported(cli, clip, tmp_path) -> None:
    video, mask = clip
    out = tmp_path / "out"
    out.mkdir()
    dead = _dead_pid()
    stale_staging = tmp_path / f".out.tmp-{dead}"
    (stale_staging / "masks").mkdir(parents=True)
    (stale_staging / "masks" / "00000.png").write_bytes(b"half")
    stale_inside = out / f".masks.tmp-{dead}"
    stale_inside.mkdir()
    running = tmp_path / ".out.tmp-1"  # pid 1 runs: another process may be writing it right now
    running.mkdir()
    unrelated = tmp_path / f".other.tmp-{dead}"  # not an output of this run: not ours to judge
    unrelated.mkdir()
    run = cli("segment", video, "--mask", mask, "-o", out, "--png", "-q")
    assert run.code == 0, run.stderr + run.crash()
    assert not stale_staging.exists() and not stale_inside.exists()
    assert running.exists() and unrelated.exists()
    warnings = [line for line in run.error_lines if "warning" in line]
    assert len(warnings) == 2 and all("interrupted run" in w for w in warnings)
    assert sorted(p.name for p in out.iterdir()) == ["masks"]


# ---------------------------------------------------------------- read-only folder, disk full


def test_read_only_output_folder_is_refused_before_any_work(clip, tmp_path) -> None:
    video, mask = clip
    locked = tmp_path / "locked"
    locked.mkdir()
    # A missing checkpoint would be the error if the model were loaded first: the output folder
    # must be checked before any work.
    args = [sys.executable, "-m", "vosctl.cli", "segment", str(video), "--mask", str(mask)]
    args += ["-o", str(locked / "deep" / "out"), "--model", str(tmp_path / "none.pt")]
    if os.geteuid() != 0:
        locked.chmod(0o555)
    elif shutil.which("unshare"):
        # root writes through any permission bits: make the folder a read-only mount instead, in a
        # private mount namespace (nothing changes outside this one command).
        args = ["unshare", "-rm", "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"', str(locked), *args]
    else:
        pytest.skip("running as root without unshare: cannot make a read-only folder")
    try:
        run = subprocess.run(args, capture_output=True, text=True, env=_subprocess_env(), timeout=300)
    finally:
        locked.chmod(0o755)
    if "vosctl:" not in run.stderr:  # unshare or mount refused (no user namespaces here)
        pytest.skip(f"cannot make a read-only mount here: {run.stderr.strip()}")
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and str(locked) in lines[0], run.stderr
    assert "read-only file system" in lines[0] or "not writable" in lines[0], run.stderr
    assert list(locked.iterdir()) == []


def test_disk_full_is_one_line_exit_1_and_nothing_left(clip, tmp_path) -> None:
    video, mask = clip
    out = tmp_path / "out"

    def limit_file_size() -> None:
        # The kernel refuses writes past this size (EFBIG), as a full disk refuses them (ENOSPC).
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    run = _vosctl("segment", video, "--mask", mask, "-o", out, "--overlay", "--png", preexec_fn=limit_file_size)
    assert run.returncode == 1, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vosctl: error: cannot write outputs to"), run.stderr
    assert "Traceback" not in run.stderr
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------- truncated and damaged videos


DAMAGED_FRAMES = 16


def _damaged_videos(root: Path) -> dict[str, Path]:
    frames = moving_square_frames(DAMAGED_FRAMES, 64, 48)
    out = {}
    for name, options in (("clip.mkv", None), ("clip.avi", None), ("fast.mp4", {"movflags": "+faststart"})):
        data = write_video(root / f"good-{name}", frames, container_options=options).read_bytes()
        out[f"truncated {name}"] = root / f"cut-{name}"
        # Cut at 3/4: an AVI cut in half no longer opens (an error today already).
        out[f"truncated {name}"].write_bytes(data[: len(data) * 3 // 4])
    data = bytearray((root / "good-clip.mkv").read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    out["overwritten clip.mkv"] = root / "overwritten-clip.mkv"
    out["overwritten clip.mkv"].write_bytes(bytes(data))
    return out


@pytest.fixture(scope="module")
def damaged(tmp_path_factory) -> tuple[dict[str, Path], Path]:
    root = tmp_path_factory.mktemp("damaged")
    mask = root / "m.png"
    Image.fromarray(moving_square_labels(1, 64, 48)[0] * 255).save(mask)
    return _damaged_videos(root), mask


@pytest.mark.parametrize(
    "case", ["truncated clip.mkv", "truncated clip.avi", "truncated fast.mp4", "overwritten clip.mkv"]
)
def test_damaged_video_same_policy_for_every_container(cli, damaged, tmp_path, case) -> None:
    videos, mask = damaged
    out = tmp_path / "out"
    run = cli("segment", videos[case], "--mask", mask, "-o", out, "--png", "--track-json")
    assert run.exception is None, run.crash()
    assert run.code == 2, (run.code, run.stderr)
    assert len(run.error_lines) == 1 and "truncated or damaged" in run.error_lines[0], run.stderr
    assert leftovers(tmp_path) == []

    partial = cli("segment", videos[case], "--mask", mask, "-o", out, "--png", "--json", "--allow-partial")
    assert partial.code == 0, partial.stderr + partial.crash()
    summary = json.loads(partial.stdout.strip().splitlines()[-1])
    assert summary["complete"] is False and summary["frames_expected"] == DAMAGED_FRAMES
    assert 0 < summary["frames"] < DAMAGED_FRAMES
    assert len(list((out / "masks").iterdir())) == summary["frames"]
    warnings = [line for line in partial.error_lines if line.startswith("vosctl: warning:")]
    assert len(warnings) == 1 and "truncated or damaged" in warnings[0]


def test_complete_video_says_complete(cli, clip, tmp_path) -> None:
    video, mask = clip
    run = cli("segment", video, "--mask", mask, "-o", tmp_path / "out", "--png", "--json")
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["complete"] is True and summary["frames"] == summary["frames_expected"] == 8


# ---------------------------------------------------------------- variable frame rate

VFR_TIMES = [0.0, 0.1, 0.14, 0.3, 0.34, 0.38, 0.6, 0.64]


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_variable_frame_rate_keeps_source_times(cli, tmp_path, ext) -> None:
    import av

    frames, truth = moving_square(frames=len(VFR_TIMES))
    video = write_timed_video(tmp_path / f"vfr.{ext}", frames, VFR_TIMES)
    write_mask(tmp_path / "m.png", truth[0])
    out = tmp_path / "out"
    run = cli("segment", video, "--mask", tmp_path / "m.png", "-o", out, "--overlay", "--track-json", "--track-csv")
    assert run.code == 0, run.stderr + run.crash()
    track = json.loads((out / "track.json").read_text())
    assert [f["time"] for f in track["frames"]] == pytest.approx(VFR_TIMES, abs=1e-3)
    rows = (out / "track.csv").read_text().splitlines()[1:]
    assert [float(r.split(",")[1]) for r in rows] == pytest.approx(VFR_TIMES, abs=1e-3)
    with av.open(str(out / "overlay.mp4")) as container:
        times = [frame.time for frame in container.decode(container.streams.video[0])]
    assert times == pytest.approx(VFR_TIMES, abs=2e-3)


def test_error_line_stays_one_line_with_newlines_in_user_text(cli, clip, tmp_path) -> None:
    video, _ = clip
    run = cli("segment", video, "--box=1,2\n3,4\r", "-o", tmp_path / "out")
    assert run.code == 2 and len(run.error_lines) == 1 and "\\n" in run.error_lines[0], run.stderr


def test_video_with_non_utf8_metadata_is_read(cli, clip, tmp_path) -> None:
    """Found by the fuzz suite: a tag that is not UTF-8 made PyAV raise UnicodeDecodeError."""
    video, mask = clip
    data = video.read_bytes()
    assert b"Lavf" in data  # the encoder tag FFmpeg writes
    odd = tmp_path / "odd.mp4"
    odd.write_bytes(data.replace(b"Lavf", b"\x80avf"))
    run = cli("segment", odd, "--mask", mask, "-o", tmp_path / "out", "--png", "--json")
    assert run.exception is None, run.crash()
    assert run.code == 0 and json.loads(run.stdout.strip().splitlines()[-1])["frames"] == 8, run.stderr
