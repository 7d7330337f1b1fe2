"""Fuzz suite (issue #11): random and mutated inputs through the real CLI and the Python API.

The property is always the same: ``vosctl segment`` either exits 0 with every requested output
complete, or prints exactly one ``vosctl: error:`` line, exits 2 (bad input) or 1 (other failure)
and leaves nothing in the output folder; it never shows a traceback. The API raises
``InputError`` or returns results, nothing else.

Cases run in-process (typer's CliRunner, one loaded model) to stay fast; a few go through a real
``python -m vosctl.cli`` process. CI runs a handful of cases per test (seconds); set
``VOSCTL_FUZZ_CASES=500`` (say) for a longer hunt, ``VOSCTL_FUZZ_SEED`` to explore other cases
(the default is derandomised, so CI is reproducible).
"""

from __future__ import annotations

import functools
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from PIL import Image
from synth import moving_square_frames, moving_square_labels, write_video

from vosctl.errors import InputError

CASES = int(os.environ.get("VOSCTL_FUZZ_CASES", "6"))
SEED = int(os.environ.get("VOSCTL_FUZZ_SEED", "0"))
W, H, N = 64, 48, 6
CONTAINERS = ("mp4", "mkv", "webm", "avi", "mov")
OUTPUT_FLAGS = ("--png", "--overlay", "--alpha", "--track-json", "--track-csv")
OUTPUT_NAMES = {"--png": "masks", "--overlay": "overlay.mp4", "--track-json": "track.json", "--track-csv": "track.csv"}
ALPHA_NAMES = {"prores": "alpha.mov", "webm": "alpha.webm", "png": "alpha", "gray": "alpha.mp4"}

FUZZ = settings(
    max_examples=CASES,
    deadline=None,
    database=None,  # nothing written into the repository
    derandomize=SEED == 0,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
    print_blob=True,
)


def _seeded(test):
    return test if SEED == 0 else seed(SEED)(test)


@functools.cache
def _base() -> Path:
    """Small valid videos (one per container) and a valid mask, built once per session."""
    root = Path(tempfile.mkdtemp(prefix="vosctl-fuzz-base-"))
    frames = moving_square_frames(N, W, H)
    for ext in CONTAINERS:
        write_video(root / f"clip.{ext}", frames)
    Image.fromarray(moving_square_labels(1, W, H)[0] * 255).save(root / "mask.png")
    return root


@contextmanager
def _workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="vosctl-fuzz-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _hidden_temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*") if ".tmp-" in p.name or ".old-" in p.name]


def check_property(run, out: Path, root: Path, args: list[str]) -> dict | None:
    """The fuzz property for one CLI run; returns the JSON summary of a success (with --json)."""
    context = f"args={args}\nstderr={run.stderr}\n{run.crash()}"
    assert run.exception is None, context
    assert "Traceback" not in run.stderr, context
    assert not _hidden_temporaries(root), context
    if run.code == 0:
        return _check_complete(run, out, args, context)
    assert run.code in (1, 2), context
    errors = [line for line in run.error_lines if not line.startswith("vosctl: warning:")]
    assert len(errors) == 1 and errors[0].startswith("vosctl: error: "), context
    assert not out.exists() or not any(out.iterdir()), context
    return None


def _check_complete(run, out: Path, args: list[str], context: str) -> dict | None:
    flags = [a for a in args if a in OUTPUT_FLAGS]
    expected = {OUTPUT_NAMES[f] for f in flags if f in OUTPUT_NAMES}
    if "--alpha" in flags:
        fmt = next((a.split("=", 1)[1] for a in args if a.startswith("--alpha-format=")), "prores")
        expected.add(ALPHA_NAMES[fmt])
    if not flags:
        expected = {"masks", "overlay.mp4"}
    assert {p.name for p in out.iterdir()} == expected, context
    summary = None
    if "--json" in args:
        summary = json.loads(run.stdout.strip().splitlines()[-1])
        frames = summary["frames"]
        assert frames > 0, context
        if "masks" in expected:
            assert len(list((out / "masks").iterdir())) == frames, context
        if "track.json" in expected:
            assert len(json.loads((out / "track.json").read_text())["frames"]) == frames, context
        if not summary["complete"]:
            assert "--allow-partial" in args, context
    for name in expected & {"overlay.mp4", "alpha.mov", "alpha.webm", "alpha.mp4"}:
        assert (out / name).stat().st_size > 0, context
    return summary


# ---------------------------------------------------------------- strategies


@st.composite
def mutated_video(draw) -> tuple[str, bytes]:
    """A real small video with one or two mutations, or plain random bytes."""
    if draw(st.integers(0, 5)) == 0:
        return "bin", draw(st.binary(min_size=0, max_size=4096))
    ext = draw(st.sampled_from(CONTAINERS))
    data = bytearray((_base() / f"clip.{ext}").read_bytes())
    for _ in range(draw(st.integers(1, 2))):
        kind = draw(st.sampled_from(["truncate", "overwrite", "flip", "delete", "duplicate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "truncate":
            del data[at:]
        elif kind == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=4096))
            data[at : at + len(chunk)] = chunk
        elif kind == "flip":
            if data:
                data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 2048))]
        else:
            data[at:at] = data[at : at + draw(st.integers(1, 2048))]
    return ext, bytes(data)


MODES = ("L", "P", "RGB", "RGBA", "LA", "1", "I;16", "I", "F")


@st.composite
def mask_file(draw) -> tuple[str, bytes]:
    """A mask image of random mode (dtype), size and content, sometimes not an image at all."""
    if draw(st.integers(0, 7)) == 0:
        return "png", draw(st.binary(max_size=512))
    mode = draw(st.sampled_from(MODES))
    size = draw(st.sampled_from([(W, H), (W, H), (W, H), (H, W), (1, 1), (W + 1, H), (W * 2, H * 2)]))
    content = draw(st.sampled_from(["blob", "zeros", "full", "noise", "ids", "void"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    width, height = size
    values = np.zeros((height, width), np.int64)
    if content == "blob":
        values[height // 4 : height // 2, width // 4 : width // 2] = 255
    elif content == "full":
        values[:] = 255
    elif content == "noise":
        values = rng.integers(0, 256, (height, width))
    elif content == "ids":
        values[: height // 2, : width // 3] = rng.integers(1, 60)
        values[height // 2 :, width // 2 :] = rng.integers(1, 60)
    elif content == "void":
        values[:] = 255
        values[: height // 3] = 0
    if mode in ("RGB", "RGBA"):
        channels = [values] * 3 + ([rng.integers(0, 256, (height, width))] if mode == "RGBA" else [])
        image = Image.fromarray(np.dstack(channels).astype(np.uint8), mode)
    elif mode == "LA":
        image = Image.fromarray(np.dstack([values, values]).astype(np.uint8), "LA")
    elif mode == "P":
        image = Image.fromarray(values.astype(np.uint8), "L").convert("P")
    elif mode == "1":
        image = Image.fromarray(values > 127)
    elif mode == "I;16":
        image = Image.fromarray((values * 257).astype(np.uint16))
    elif mode == "I":
        image = Image.fromarray((values * 1000).astype(np.int32))
    elif mode == "F":
        image = Image.fromarray(values.astype(np.float32) / 255.0)
    else:
        image = Image.fromarray(values.astype(np.uint8), "L")
    fmt = "tiff" if mode in ("I", "F") else draw(st.sampled_from(["png", "png", "bmp", "jpeg", "tiff"]))
    if fmt == "jpeg" and image.mode not in ("L", "RGB"):
        fmt = "png"
    if fmt == "bmp" and image.mode not in ("L", "RGB", "RGBA", "1", "P"):
        fmt = "png"
    buffer = io.BytesIO()
    image.save(buffer, format=fmt.upper())
    return fmt, buffer.getvalue()


number = st.one_of(
    st.integers(-100, 200).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["", " ", "1e400", "-0", "0x10", "1_0", "½", "10px"]),
)
box_text = st.one_of(
    st.lists(number, min_size=4, max_size=4).map(",".join),
    st.lists(number, min_size=0, max_size=6).map(",".join),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30),
)


@st.composite
def options(draw) -> list[str]:
    """A random combination of segment options (valid syntax; values may be bad)."""
    args = [flag for flag in OUTPUT_FLAGS if draw(st.booleans())]
    if draw(st.booleans()):
        fmt = draw(st.sampled_from([*ALPHA_NAMES, *ALPHA_NAMES, "gif", ""]))
        args.append(f"--alpha-format={fmt}")
    if draw(st.integers(0, 3)) == 0:
        args.append(f"--start-frame={draw(st.integers(0, N + 2))}")
    for flag in ("--full-frame", "--force", "--allow-partial", "--quiet"):
        if draw(st.integers(0, 4)) == 0:
            args.append(flag)
    if draw(st.integers(0, 4)) == 0:
        args.append(f"--device={draw(st.sampled_from(['cpu', 'auto', 'tpu', 'cuda:7']))}")
    return [*args, "--json"]


# ---------------------------------------------------------------- CLI properties


@_seeded
@FUZZ
@given(video=mutated_video())
def test_fuzz_video_bytes(cli, video) -> None:
    ext, data = video
    with _workdir() as root:
        path = root / f"input.{ext}"
        path.write_bytes(data)
        out = root / "out"
        args = ["segment", str(path), "--mask", str(_base() / "mask.png"), "-o", str(out), "--png", "--track-json"]
        check_property(cli(*args, "--json"), out, root, [*args, "--json"])
        partial = [*args, "--json", "--allow-partial", "--force"]
        check_property(cli(*partial), out, root, partial)


@_seeded
@FUZZ
@given(mask=mask_file())
def test_fuzz_mask_images(cli, mask) -> None:
    fmt, data = mask
    with _workdir() as root:
        path = root / f"mask.{fmt}"
        path.write_bytes(data)
        out = root / "a" / "b" / "out"
        args = ["segment", str(_base() / "clip.mp4"), "--mask", str(path), "-o", str(out), "--png", "--json"]
        check_property(cli(*args), out, root, args)
        assert not (root / "a").exists() or any((root / "a").rglob("*.png")), "failed runs create no folders"


@_seeded
@FUZZ
@given(boxes=st.lists(box_text, min_size=1, max_size=3))
def test_fuzz_box_strings(cli, boxes) -> None:
    with _workdir() as root:
        out = root / "out"
        args = ["segment", str(_base() / "clip.mkv"), "-o", str(out), "--track-json", "--json"]
        args += [f"--box={b}" for b in boxes]
        check_property(cli(*args), out, root, args)


@_seeded
@FUZZ
@given(opts=options(), ext=st.sampled_from(CONTAINERS), pattern=st.sampled_from([None, "{dir}/mask.png", "{nope}"]))
def test_fuzz_option_combinations(cli, opts, ext, pattern) -> None:
    with _workdir() as root:
        out = root / "out"
        prompt = ["--mask", str(_base() / "mask.png")] if pattern is None else ["--mask-pattern", pattern]
        if pattern == "{dir}/mask.png":
            prompt = ["--mask-pattern", str(_base() / "{stem}.png").replace("{stem}", "mask")]
        args = ["segment", str(_base() / f"clip.{ext}"), *prompt, "-o", str(out), *opts]
        check_property(cli(*args), out, root, args)


def test_fuzz_real_processes() -> None:
    """A few cases through a real process: the exit code and stderr a shell user sees."""
    rng = np.random.default_rng(SEED)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    with _workdir() as root:
        noise = root / "noise.mp4"
        noise.write_bytes(rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
        cut = root / "cut.mkv"
        data = (_base() / "clip.mkv").read_bytes()
        cut.write_bytes(data[: len(data) // 2])
        bad_mask = root / "bad.png"
        bad_mask.write_bytes(b"\x89PNG\r\n\x1a\n" + rng.integers(0, 256, 200, dtype=np.uint8).tobytes())
        mask = str(_base() / "mask.png")
        cases = [
            ([str(noise), "--mask", mask], 2),
            ([str(cut), "--mask", mask], 2),
            ([str(_base() / "clip.mp4"), "--mask", str(bad_mask)], 2),
            ([str(_base() / "clip.mp4"), "--box", "nan,1,2,3"], 2),
        ]
        for args, code in cases[: max(2, min(len(cases), CASES // 3))]:
            out = root / "out"
            run = subprocess.run(
                [sys.executable, "-m", "vosctl.cli", "segment", *args, "-o", str(out)],
                capture_output=True,
                text=True,
                env=env,
                timeout=300,
            )
            lines = run.stderr.strip().splitlines()
            assert run.returncode == code, (args, run.stderr)
            assert len(lines) == 1 and lines[0].startswith("vosctl: error: "), (args, run.stderr)
            assert not out.exists() and not _hidden_temporaries(root), args


# ---------------------------------------------------------------- API properties

DTYPES = (np.uint8, np.uint16, np.int64, np.float32, np.float64, np.bool_)


@st.composite
def arrays(draw, kind: str) -> np.ndarray:
    dtype = draw(st.sampled_from(DTYPES))
    shapes = [(H, W, 3), (H, W), (H, W, 4), (H, W, 1), (H, W, 2), (W, H, 3), (0, W, 3), (3, H, W)]
    if kind == "labels":
        shapes = [(H, W), (H, W), (W, H), (H, W, 3), (1, 1)]
    shape = draw(st.sampled_from(shapes))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "labels":
        values = np.zeros(shape, np.float64)
        if shape and values.size:
            values[(slice(0, max(1, shape[0] // 2)),) * 1] = draw(
                st.sampled_from([0, 1, 3, 254, 255, 256, 300, -1, 0.5])
            )
    else:
        values = rng.uniform(0, 255, shape)
    return values.astype(dtype)


@_seeded
@FUZZ
@given(frame=arrays("frame"), labels=arrays("labels"))
def test_fuzz_api_arrays(frame, labels) -> None:
    from inproc import _shared_model

    segmenter = _shared_model()
    first = moving_square_frames(1, W, H)[0]
    try:
        results = list(segmenter.track([first, frame], labels=labels))
    except InputError as error:
        assert "\n" not in str(error)
        return
    assert len(results) == 2
    assert all(r.labels.dtype == np.uint8 and r.labels.shape == (H, W) for r in results)
    assert set(np.unique(results[0].labels)) <= set(range(255))


@pytest.mark.parametrize("ext", CONTAINERS)
def test_base_videos_are_valid(cli, ext) -> None:
    """The fuzz property's positive side: unmutated inputs succeed with complete outputs."""
    with _workdir() as root:
        out = root / "out"
        args = ["segment", str(_base() / f"clip.{ext}"), "--mask", str(_base() / "mask.png"), "-o", str(out)]
        args += ["--png", "--track-json", "--json"]
        summary = check_property(cli(*args), out, root, args)
        assert summary is not None and summary["complete"] and summary["frames"] == N
