"""`vosctl benchmark --davis` end to end on tiny synthetic DAVIS folders (no committed data).

Eval-only runs use result masks built so that the expected figures are known by hand; the run
mode is tested with a stand-in segmenter (always) and with the shipped checkpoint (when present).
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from vosctl.cli import app
from vosctl.eval import benchmark as benchmark_module
from vosctl.eval.benchmark import BenchmarkOptions, run_benchmark
from vosctl.eval.measures import db_statistics, f_measure
from vosctl.io.palette import DAVIS_PALETTE_BYTES

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = REPO / "models" / "default.pt"
W, H = 64, 48  # bound_pix = ceil(0.008 * 80) = 1
FRAMES = 6  # frames 1..4 are scored
SIDE = 16


# --------------------------------------------------------------------------- synthetic DAVIS


def square_labels(t: int, objects: list[tuple[int, int, int]], shape: tuple[int, int] = (H, W)) -> np.ndarray:
    """Label map with (id, x, y) squares moving 2 px right per frame."""
    labels = np.zeros(shape, np.uint8)
    for object_id, x, y in objects:
        labels[y : y + SIDE, x + 2 * t : x + 2 * t + SIDE] = object_id
    return labels


def write_png(path: Path, labels: np.ndarray, palette: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(labels.astype(np.uint8))
    if palette:
        image.putpalette(DAVIS_PALETTE_BYTES)
    image.save(path)


def frame_image(labels: np.ndarray, t: int) -> np.ndarray:
    """A textured frame where each object is a distinct colour (for the run-mode tests)."""
    rng = np.random.default_rng(t)
    rgb = rng.integers(60, 120, size=(*labels.shape, 3), dtype=np.uint8)
    rgb[labels == 1] = (230, 40, 40)
    rgb[labels == 2] = (40, 40, 230)
    return rgb


def make_davis(
    root: Path, year: str, sequences: dict[str, list[np.ndarray]], split: list[str], void: dict | None = None
) -> Path:
    """DAVIS layout: ImageSets/<year>/val.txt, JPEGImages/480p, Annotations/480p (2016: 0/255 grey)."""
    (root / "ImageSets" / year).mkdir(parents=True)
    (root / "ImageSets" / year / "val.txt").write_text("\n".join(split) + "\n")
    for name, labels in sequences.items():
        for t, frame in enumerate(labels):
            image_path = root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg"
            image_path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(image_path), cv2.cvtColor(frame_image(frame, t), cv2.COLOR_RGB2BGR))
            gt = frame.copy()
            if year == "2016":
                write_png(root / "Annotations" / "480p" / name / f"{t:05d}.png", (gt > 0) * 255, palette=False)
            else:
                if void and name in void:
                    gt[void[name]] = 255
                write_png(root / "Annotations" / "480p" / name / f"{t:05d}.png", gt)
    return root


def write_results(folder: Path, name: str, labels: list[np.ndarray], frames: range | None = None) -> None:
    for t in frames if frames is not None else range(len(labels)):
        write_png(folder / name / f"{t:05d}.png", labels[t])


def cli(*args: str):
    return CliRunner().invoke(app, ["benchmark", *args])


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


# --------------------------------------------------------------------------- 2016


@pytest.fixture
def davis2016(tmp_path: Path) -> tuple[Path, dict[str, list[np.ndarray]]]:
    sequences = {
        "alpha": [square_labels(t, [(1, 4, 8)]) for t in range(FRAMES)],
        "beta": [square_labels(t, [(1, 10, 20)]) for t in range(FRAMES)],
    }
    root = make_davis(tmp_path / "DAVIS", "2016", sequences, ["alpha", "ghost", "beta"])
    return root, sequences


def test_2016_eval_only_known_figures(davis2016, tmp_path) -> None:
    root, sequences = davis2016
    results = tmp_path / "results"
    write_results(results, "alpha", sequences["alpha"])  # perfect
    shift = 3
    shifted = [np.roll(labels, shift, axis=1) for labels in sequences["beta"]]
    write_results(results, "beta", [labels * 7 for labels in shifted])  # any non-zero value is the object
    out = tmp_path / "out"

    run = cli("--davis", str(root), "--year", "2016", "--results", str(results), "--eval-only",
              "--json", str(out / "davis.json"), "--csv", str(out / "davis.csv"))  # fmt: skip
    assert run.exit_code == 0, run.stderr

    # The sequence listed in the split but absent on disk: one warning line, skipped.
    warnings = [line for line in run.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "ghost" in warnings[0]

    report = json.loads((out / "davis.json").read_text())
    rows = report["sequences"]
    assert list(rows) == ["alpha", "beta"]  # 2016 rows are named after the sequence
    alpha = rows["alpha"]
    assert alpha["J-Mean"] == alpha["F-Mean"] == alpha["J-Recall"] == alpha["F-Recall"] == 1.0
    assert alpha["J-Decay"] == alpha["F-Decay"] == 0.0 and alpha["frames_scored"] == FRAMES - 2

    # A horizontal shift of k px: J = (s - k) s / ((s + k) s) on every frame (the square stays
    # inside the frame). The shift is beyond bound_pix = 1, so F < 1; F per frame from f_measure.
    j_beta = (SIDE - shift) / (SIDE + shift)
    assert rows["beta"]["J-Mean"] == pytest.approx(j_beta)
    assert rows["beta"]["J-Recall"] == 1.0 and rows["beta"]["J-Decay"] == pytest.approx(0.0)
    f_frames = [f_measure(shifted[t] > 0, sequences["beta"][t] > 0) for t in range(1, FRAMES - 1)]
    f_beta = db_statistics(np.array(f_frames))
    assert 0.0 < f_beta.mean < 1.0
    assert rows["beta"]["F-Mean"] == pytest.approx(f_beta.mean)
    assert rows["beta"]["F-Recall"] == pytest.approx(f_beta.recall)
    # The curves behind the rows: one value per scored frame (frames 1..FRAMES-2), 6 decimals.
    curves = report["per_frame"]
    assert list(curves) == ["alpha", "beta"] and curves["alpha"]["first_frame"] == 1
    assert curves["alpha"]["J"] == [1.0] * (FRAMES - 2) == curves["alpha"]["F"]
    assert curves["beta"]["J"] == pytest.approx([j_beta] * (FRAMES - 2), abs=1e-6)
    assert curves["beta"]["F"] == pytest.approx(f_frames, abs=1e-6)

    figures = report["global"]
    assert figures["J-Mean"] == pytest.approx((1.0 + j_beta) / 2)
    assert figures["F-Mean"] == pytest.approx((1.0 + f_beta.mean) / 2)
    assert figures["J&F-Mean"] == pytest.approx((figures["J-Mean"] + figures["F-Mean"]) / 2)
    assert figures["fps"] is None and report["fps_segment"] is None and report["fps_total"] is None
    assert report["model"] is None and report["skipped"] == ["ghost"] and "fps_note" in report

    # CSVs in the official layouts, 3 decimals.
    per_sequence = read_csv(out / "davis.csv")
    assert list(per_sequence[0]) == ["Sequence", "J-Mean", "F-Mean"]
    assert [r["Sequence"] for r in per_sequence] == ["alpha", "beta"]
    assert per_sequence[0]["J-Mean"] == "1.000" and per_sequence[1]["J-Mean"] == f"{j_beta:.3f}"
    global_rows = read_csv(out / "davis_global.csv")
    assert list(global_rows[0]) == ["J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"]
    assert global_rows[0]["J-Mean"] == f"{(1.0 + j_beta) / 2:.3f}"
    assert sorted(p.name for p in out.iterdir()) == ["davis.csv", "davis.json", "davis_global.csv"]  # no temporaries

    # The table on stdout: one row per object and the global row.
    assert "alpha" in run.stdout and "beta" in run.stdout and "Global" in run.stdout
    assert "ghost" not in run.stdout


def test_only_scored_frames_are_needed_and_sequences_subset(davis2016, tmp_path) -> None:
    root, sequences = davis2016
    results = tmp_path / "results"
    # The toolkit reads only the scored frames: no first/last result frame needed.
    write_results(results, "alpha", sequences["alpha"], frames=range(1, FRAMES - 1))
    run = cli("--davis", str(root), "--year", "2016", "--results", str(results), "--eval-only",
              "--sequences", "alpha", "--json", str(tmp_path / "r.json"))  # fmt: skip
    assert run.exit_code == 0, run.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert list(report["sequences"]) == ["alpha"] and report["global"]["J&F-Mean"] == 1.0
    assert "warning" not in run.stderr


def test_missing_result_frame_names_sequence_and_frame(davis2016, tmp_path) -> None:
    root, sequences = davis2016
    results = tmp_path / "results"
    write_results(results, "alpha", sequences["alpha"])
    write_results(results, "beta", sequences["beta"])
    (results / "beta" / "00003.png").unlink()
    run = cli("--davis", str(root), "--year", "2016", "--results", str(results), "--eval-only",
              "--json", str(tmp_path / "r.json"))  # fmt: skip
    assert run.exit_code == 2
    assert "beta" in run.stderr and "00003" in run.stderr
    assert not (tmp_path / "r.json").exists()

    (results / "beta").rename(tmp_path / "elsewhere")
    run = cli("--davis", str(root), "--year", "2016", "--results", str(results), "--eval-only")
    assert run.exit_code == 2 and "no results for sequence beta" in run.stderr


def test_too_short_sequence_is_skipped(tmp_path) -> None:
    sequences = {
        "long": [square_labels(t, [(1, 4, 8)]) for t in range(FRAMES)],
        "short": [square_labels(t, [(1, 4, 8)]) for t in range(2)],  # nothing left once first/last go
    }
    root = make_davis(tmp_path / "DAVIS", "2016", sequences, ["long", "short"])
    results = tmp_path / "results"
    write_results(results, "long", sequences["long"])
    run = cli("--davis", str(root), "--year", "2016", "--results", str(results), "--eval-only",
              "--json", str(tmp_path / "r.json"))  # fmt: skip
    assert run.exit_code == 0, run.stderr
    assert "short has 2 frame(s)" in run.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert list(report["sequences"]) == ["long"] and report["skipped"] == ["short"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--davis", "{tmp}/nowhere"], "does not exist"),
        (["--davis", "{root}", "--split", "test-dev"], "split file"),
        (["--davis", "{root}", "--year", "2018"], "unknown DAVIS year"),
        (["--davis", "{root}", "--year", "2016", "--eval-only"], "--eval-only needs --results"),
        (["--davis", "{root}", "--year", "2016", "--eval-only", "--results", "{tmp}/none"], "does not exist"),
        (["--davis", "{root}", "--year", "2016", "--sequences", "ghost,nope"], "none of the 2 requested"),
        (["--davis", "{root}", "--year", "2016", "--results", "{root}/Annotations/480p"], "inside the DAVIS"),
        (["--davis", "{root}", "--year", "2016", "--set", "memory=1"], "memory is a group"),
        (
            ["--davis", "{root}", "--year", "2016", "--eval-only", "--results", "{tmp}", "--set", "mask_threshold=0.4"],
            "--eval-only only scores",
        ),
    ],
)
def test_bad_input_exits_2(davis2016, tmp_path, args, message) -> None:
    root, _ = davis2016
    run = cli(*(a.format(tmp=tmp_path, root=root) for a in args))
    assert run.exit_code == 2, run.stdout
    assert message in run.stderr and run.stderr.splitlines()[-1].startswith("vosctl: error:")


# --------------------------------------------------------------------------- 2017


@pytest.fixture
def davis2017(tmp_path: Path) -> tuple[Path, dict[str, list[np.ndarray]], np.ndarray]:
    sequences = {
        "duo": [square_labels(t, [(1, 2, 4), (2, 30, 26)]) for t in range(FRAMES)],
        "solo": [square_labels(t, [(1, 6, 10)]) for t in range(FRAMES)],
    }
    void = np.zeros((H, W), bool)
    void[40:48, 50:64] = True  # a void strip in the corner of every "solo" annotation
    root = make_davis(tmp_path / "DAVIS", "2017", sequences, ["duo", "solo", "gone"], void={"solo": void})
    return root, sequences, void


def test_2017_per_object_rows_and_void(davis2017, tmp_path) -> None:
    root, sequences, void = davis2017
    results = tmp_path / "results"
    # duo: object 1 perfect, object 2 never found -> J = F = 0 on every scored frame.
    write_results(results, "duo", [np.where(labels == 2, 0, labels) for labels in sequences["duo"]])
    # solo: perfect, plus a stray blob of id 1 inside the void strip. davis2017-evaluation turns
    # GT void into background and does not mask results (its void mask is computed on the
    # already-binarised GT, so it is empty): the blob counts as a false positive.
    blob = np.zeros((H, W), bool)
    blob[42:46, 56:60] = True
    write_results(results, "solo", [np.where(blob, 1, labels).astype(np.uint8) for labels in sequences["solo"]])

    run = cli("--davis", str(root), "--year", "2017", "--results", str(results), "--eval-only",
              "--json", str(tmp_path / "r.json"), "--csv", str(tmp_path / "rows.csv"))  # fmt: skip
    assert run.exit_code == 0, run.stderr
    assert "gone" in run.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    rows = report["sequences"]
    assert list(rows) == ["duo_1", "duo_2", "solo_1"]
    assert rows["duo_1"]["J-Mean"] == 1.0 and rows["duo_1"]["F-Mean"] == 1.0
    assert rows["duo_2"]["J-Mean"] == 0.0 and rows["duo_2"]["F-Mean"] == 0.0 and rows["duo_2"]["J-Recall"] == 0.0
    assert rows["duo_2"]["object_id"] == 2 and rows["duo_2"]["sequence"] == "duo"
    j_solo = SIDE * SIDE / (SIDE * SIDE + 16)  # the 4x4 blob is outside the square
    assert rows["solo_1"]["J-Mean"] == pytest.approx(j_solo)
    assert rows["solo_1"]["F-Mean"] < 1.0
    assert report["global"]["J-Mean"] == pytest.approx((1.0 + 0.0 + j_solo) / 3)
    assert [r["Sequence"] for r in read_csv(tmp_path / "rows.csv")] == ["duo_1", "duo_2", "solo_1"]
    assert (tmp_path / "rows_global.csv").is_file()


def test_2017_unknown_object_id_in_results(davis2017, tmp_path) -> None:
    root, sequences, _ = davis2017
    results = tmp_path / "results"
    write_results(results, "duo", sequences["duo"])
    bad = [np.where(labels == 1, 3, labels).astype(np.uint8) for labels in sequences["solo"]]
    write_results(results, "solo", bad)
    run = cli("--davis", str(root), "--year", "2017", "--results", str(results), "--eval-only")
    assert run.exit_code == 2
    assert "solo" in run.stderr and "object id 3" in run.stderr


def test_2017_rgb_results_are_mapped_back_to_ids(davis2017, tmp_path) -> None:
    root, sequences, _ = davis2017
    results = tmp_path / "results"
    for name in ("duo", "solo"):
        for t, labels in enumerate(sequences[name]):
            path = results / name / f"{t:05d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            image = Image.fromarray(labels)
            image.putpalette(DAVIS_PALETTE_BYTES)
            image.convert("RGB").save(path)  # a tool that writes colours, not indices
    report = run_benchmark(
        BenchmarkOptions(davis_root=root, year="2017", results=results, eval_only=True, sequences=["duo", "solo"])
    )
    assert report.global_figures()["J&F-Mean"] == 1.0 and len(report.objects) == 3


# --------------------------------------------------------------------------- run mode


@dataclass
class _Result:
    labels: np.ndarray


class OracleSegmenter:
    """Stand-in for vosctl.tracker.Segmenter: returns the ground truth it was built with."""

    device = "cpu"
    model_name = "oracle"

    def __init__(self, truth: dict[tuple[int, int, int], list[np.ndarray]]) -> None:
        self.truth = truth  # keyed by the first frame's object squares (id, top, left)

    def track(self, frames, labels):
        key = tuple(int(v) for v in np.argwhere(labels > 0)[0]) + (int(labels.max()),)
        for t, rgb in enumerate(frames):
            assert rgb.dtype == np.uint8 and rgb.shape == (*labels.shape, 3) and rgb.flags.c_contiguous
            yield _Result(self.truth[key][t])


def _oracle_truth(sequences: dict[str, list[np.ndarray]]) -> dict[tuple[int, ...], list[np.ndarray]]:
    """OracleSegmenter's lookup: each sequence's labels, keyed by its first object pixel and top id."""
    truth = {}
    for labels in sequences.values():
        first = labels[0]
        truth[tuple(int(v) for v in np.argwhere(first > 0)[0]) + (int(first.max()),)] = labels
    return truth


def test_run_mode_with_stand_in_segmenter(davis2017, tmp_path, monkeypatch) -> None:
    root, sequences, _ = davis2017
    truth = _oracle_truth(sequences)
    monkeypatch.setattr(benchmark_module, "_load_segmenter", lambda options: OracleSegmenter(truth))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))

    # Default: masks go to a temporary folder that is removed afterwards.
    run = cli("--davis", str(root), "--year", "2017", "--json", str(tmp_path / "a.json"), "--quiet")
    assert run.exit_code == 0, run.stderr
    assert list(scratch.iterdir()) == []
    report = json.loads((tmp_path / "a.json").read_text())
    assert report["global"]["J&F-Mean"] == 1.0 and report["model"] == "oracle" and report["device"] == "cpu"
    assert report["fps_segment"] > 0 and report["fps_total"] > 0 and report["global"]["fps"] == report["fps_segment"]
    assert report["frames_segmented"] == 2 * FRAMES and report["results"] is None

    # --results: DAVIS result format, every frame, palette PNGs named after the frames.
    results = tmp_path / "results"
    run = cli("--davis", str(root), "--year", "2017", "--results", str(results), "--quiet")
    assert run.exit_code == 0, run.stderr
    written = sorted(p.name for p in (results / "duo").iterdir())
    assert written == [f"{t:05d}.png" for t in range(FRAMES)]
    with Image.open(results / "duo" / "00002.png") as image:
        assert image.mode == "P"
        np.testing.assert_array_equal(np.array(image), sequences["duo"][2])
    assert not [p for p in results.rglob(".*")], "no temporaries may remain"


def test_settings_reach_the_segmenter_and_the_json(davis2017, tmp_path, monkeypatch) -> None:
    root, sequences, _ = davis2017
    truth = _oracle_truth(sequences)
    configs = []

    def load(options: BenchmarkOptions) -> OracleSegmenter:
        configs.append(benchmark_module._segmenter_config(options))
        return OracleSegmenter(truth)

    monkeypatch.setattr(benchmark_module, "_load_segmenter", load)
    run = cli("--davis", str(root), "--year", "2017", "--json", str(tmp_path / "a.json"), "--quiet",
              "--set", "memory.bank_size=0", "--set", "window_influence=0.2")  # fmt: skip
    assert run.exit_code == 0, run.stderr
    assert configs and all(c.memory.bank_size == 0 and c.window_influence == 0.2 for c in configs)
    report = json.loads((tmp_path / "a.json").read_text())
    assert report["settings"] == ["memory.bank_size=0", "window_influence=0.2"] and report["prompt"] == "mask"


@pytest.mark.skipif(not CHECKPOINT.exists(), reason="models/default.pt (the shipped checkpoint) is not there yet")
def test_run_mode_with_shipped_model(tmp_path) -> None:
    sequences = {"walk": [square_labels(t, [(1, 8, 12)], shape=(96, 128)) for t in range(FRAMES)]}
    root = make_davis(tmp_path / "DAVIS", "2016", sequences, ["walk"])
    results = tmp_path / "results"
    run = cli("--davis", str(root), "--year", "2016", "--results", str(results), "--device", "cpu",
              "--json", str(tmp_path / "run.json"), "--quiet")  # fmt: skip
    assert run.exit_code == 0, run.stderr
    report = json.loads((tmp_path / "run.json").read_text())
    assert report["device"] == "cpu" and report["model"]
    assert report["fps_segment"] > 0 and report["fps_total"] > 0
    assert len(list((results / "walk").glob("*.png"))) == FRAMES
    # Scoring the written masks again (eval-only) gives the run's own figures.
    again = cli("--davis", str(root), "--year", "2016", "--results", str(results), "--eval-only",
                "--json", str(tmp_path / "again.json"))  # fmt: skip
    assert again.exit_code == 0, again.stderr
    assert json.loads((tmp_path / "again.json").read_text())["sequences"] == report["sequences"]


def test_eval_only_does_not_import_torch(davis2016, tmp_path) -> None:
    root, sequences = davis2016
    results = tmp_path / "results"
    for name, labels in sequences.items():
        write_results(results, name, labels)
    code = (
        "import sys; from vosctl.eval.benchmark import BenchmarkOptions, run_benchmark; "
        f"run_benchmark(BenchmarkOptions(davis_root={str(root)!r}, year='2016', results={str(results)!r}, "
        "eval_only=True)); assert 'torch' not in sys.modules"
    )
    import subprocess

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr


# --------------------------------------------------------------------------- input-noise replicates


def test_replicate_noise_is_seeded_small_and_different_per_replicate_and_sequence() -> None:
    frame = np.random.default_rng(0).integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    frame[0, :, :] = 0  # clipping at both ends
    frame[1, :, :] = 255
    one = benchmark_module.replicate_noise(frame, 1, "walk", 3)
    assert one.dtype == np.uint8 and one.shape == frame.shape
    np.testing.assert_array_equal(one, benchmark_module.replicate_noise(frame, 1, "walk", 3))  # seeded
    step = one.astype(int) - frame.astype(int)
    assert set(np.unique(step)) == {-1, 0, 1}
    assert one[0].min() == 0 and one[1].max() == 255
    for other in (
        benchmark_module.replicate_noise(frame, 2, "walk", 3),  # another replicate
        benchmark_module.replicate_noise(frame, 1, "run", 3),  # another sequence
        benchmark_module.replicate_noise(frame, 1, "walk", 4),  # another frame
    ):
        assert (other != one).mean() > 0.3


class FrameRecorder(OracleSegmenter):
    """The oracle, also keeping every frame it was given (in order)."""

    def __init__(self, truth) -> None:
        super().__init__(truth)
        self.frames: list[np.ndarray] = []

    def track(self, frames, labels):
        def recorded():
            for rgb in frames:
                self.frames.append(rgb.copy())
                yield rgb

        yield from super().track(recorded(), labels)


def test_replicate_perturbs_the_frames_and_is_recorded(davis2017, tmp_path, monkeypatch) -> None:
    root, sequences, _ = davis2017
    recorders = []

    def load(options: BenchmarkOptions) -> FrameRecorder:
        recorders.append(FrameRecorder(_oracle_truth(sequences)))
        return recorders[-1]

    monkeypatch.setattr(benchmark_module, "_load_segmenter", load)
    for replicate in (0, 2, 2):
        run = cli("--davis", str(root), "--year", "2017", "--replicate", str(replicate), "--quiet",
                  "--json", str(tmp_path / f"r{replicate}.json"))  # fmt: skip
        assert run.exit_code == 0, run.stderr
        assert json.loads((tmp_path / f"r{replicate}.json").read_text())["replicate"] == replicate
    given, noisy, again = (np.stack(r.frames).astype(int) for r in recorders)
    assert np.abs(noisy - given).max() == 1 and (noisy != given).mean() > 0.5
    np.testing.assert_array_equal(noisy, again)  # the same replicate sees the same frames


def test_replicate_errors(davis2016, tmp_path) -> None:
    root, _ = davis2016
    run = cli("--davis", str(root), "--replicate", "-1", "--quiet")
    assert run.exit_code == 2 and "--replicate must be 0 (frames as given) or a positive number, got -1" in run.stderr
    run = cli("--davis", str(root), "--eval-only", "--results", str(tmp_path), "--replicate", "1")
    assert run.exit_code == 2 and "--replicate changes the frames" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_replicate_reaches_the_worker_task(davis2017, monkeypatch) -> None:
    # --workers and --ray run each sequence through segment_and_score_task; run one here, in process.
    from vosctl.eval.davis import DavisDataset
    from vosctl.jobs import pool

    root, sequences, _ = davis2017
    recorder = FrameRecorder(_oracle_truth(sequences))
    monkeypatch.setattr(pool, "_CACHE", {})
    monkeypatch.setattr(benchmark_module, "_load_segmenter", lambda options: recorder)
    dataset = DavisDataset(root, "2017")
    (solo,), _ = dataset.find_sequences("val", ["solo"], need_images=True)
    options = BenchmarkOptions(davis_root=root, year="2017", replicate=3)
    done = benchmark_module.segment_and_score_task(benchmark_module.SequenceTask(options, dataset, solo, None))
    assert "error" not in done
    given = [cv2.cvtColor(cv2.imread(str(solo.image_path(s))), cv2.COLOR_BGR2RGB) for s in solo.frame_stems]
    expected = [benchmark_module.replicate_noise(g, 3, "solo", t) for t, g in enumerate(given)]
    np.testing.assert_array_equal(np.stack(recorder.frames), np.stack(expected))
